"""Calibration maps and measures against hand-computed values, and a fit on one split that
improves calibration on another; the confidence fields of the predictions contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from georay.protocol.calibration import (
    Calibration,
    LevelMap,
    apply_isotonic,
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_isotonic,
    fit_level,
    fit_temperature,
    load_calibration,
    save_calibration,
)
from georay.protocol.predictions import (
    PREDICTIONS_SCHEMA,
    Resolved,
    abstain,
    answer_row,
    candidate,
    error_row,
    with_confidence,
)

PARIS = Resolved("France", "FR", "Paris", 48.8566, 2.3522, "city")
LYON = Resolved("France", "FR", "Lyon", 45.764, 4.8357, "city")
BERN = Resolved("Switzerland", "CH", None, 46.948, 7.4474, "country")


def test_ece_and_brier_by_hand():
    p = [0.1, 0.2, 0.5, 0.6, 0.9, 1.0]
    y = [0, 0, 1, 0, 1, 1]
    # 3 equal-mass bins: {.1,.2} acc 0 conf .15; {.5,.6} acc .5 conf .55; {.9,1} acc 1 conf .95
    assert expected_calibration_error(p, y, bins=3) == pytest.approx((0.15 + 0.05 + 0.05) / 3)
    assert brier_score(p, y) == pytest.approx((0.01 + 0.04 + 0.25 + 0.36 + 0.01 + 0) / 6)
    # 15 bins over 6 rows: one row a bin, so ECE is the mean absolute error
    assert expected_calibration_error(p, y) == pytest.approx(np.mean(np.abs(np.subtract(p, y))))
    assert math.isnan(expected_calibration_error([], []))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        brier_score([1.2], [1])


def test_temperature_by_hand():
    # One distinct confidence 0.8 (log-odds ln 4), right 7 times in 10. Platt's targets are
    # 8/9 for a right row and 1/5 for a wrong one, so the best map gives their mean
    # q = (7 * 8/9 + 3 * 1/5) / 10, i.e. sigmoid(ln 4 / T) = q -> T = ln 4 / ln(q / (1 - q)).
    p, y = np.full(10, 0.8), np.r_[np.ones(7), np.zeros(3)]
    q = (7 * 8 / 9 + 3 / 5) / 10
    t = fit_temperature(p, y)
    assert t == pytest.approx(math.log(4) / math.log(q / (1 - q)), rel=1e-6)
    assert apply_temperature(0.8, t) == pytest.approx(q, rel=1e-6)
    # all right: T stays finite (targets 4/5, not 1) and keeps the order of rows
    t = fit_temperature([0.3, 0.6, 0.9], [1, 1, 1])
    assert 0.01 < t < 100 and 0.05 < apply_temperature(0.3, t) < apply_temperature(0.6, t) < 0.95
    assert apply_temperature(np.array([0.3, 0.5]), 1.0).tolist() == [0.3, 0.5]  # identity
    # An over-confident model (log-odds doubled) is found out: T ~ 2.
    rng = np.random.default_rng(0)
    q = rng.uniform(0.05, 0.95, 20_000)
    raw = apply_temperature(q, 0.5)
    assert fit_temperature(raw, rng.random(len(q)) < q) == pytest.approx(2.0, rel=0.05)


def test_isotonic_by_hand():
    x, v = fit_isotonic([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 1])
    # .1 (1) and .2 (0) violate order: pooled at 0.5; .3 and .4 stay at 1
    assert x.tolist() == [0.1, 0.2, 0.3, 0.4] and v.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert apply_isotonic([0.0, 0.15, 0.25, 0.9], x, v).tolist() == [0.5, 0.5, 0.75, 1.0]
    x, v = fit_isotonic([0.5, 0.5, 0.7], [1, 0, 1])  # equal confidences pooled first
    assert x.tolist() == [0.5, 0.7] and v.tolist() == [0.5, 1.0]


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidences whose log-odds are 2.5 times the truth's, and outcomes drawn from the truth."""
    rng = np.random.default_rng(seed)
    q = rng.beta(4, 1.5, n)  # mostly right, as a geolocator on its own world
    return apply_temperature(q, 1 / 2.5), rng.random(n) < q


@pytest.mark.parametrize("use", ["temperature", "isotonic", "auto"])
def test_fit_on_one_split_improves_another(use):
    fit_p, fit_y = _overconfident(1500, seed=1)
    test_p, test_y = _overconfident(1500, seed=2)
    level = fit_level(fit_p, fit_y, use)
    before = expected_calibration_error(test_p, test_y)
    after = expected_calibration_error(level(test_p), test_y)
    assert before > 0.08 and after < 0.04 and after < before / 2
    assert brier_score(level(test_p), test_y) < brier_score(test_p, test_y)
    assert level.rows == 1500 and level.correct == int(fit_y.sum())
    assert use == "auto" or level.use == use


def test_auto_chooses_the_same_map_whatever_order_the_rows_come_in():
    p, y = _overconfident(200, seed=3)
    first = fit_level(p, y, "auto")
    for seed in range(5):  # a bulk job's parts come back in any order
        order = np.random.default_rng(seed).permutation(len(p))
        again = fit_level(p[order], y[order], "auto")
        assert again.use == first.use and again.fit["cv_brier"] == pytest.approx(
            first.fit["cv_brier"]
        )


def test_file_round_trip_and_merge(tmp_path):
    p, y = _overconfident(400, seed=3)
    cal = Calibration(methods={"vlm": {"country": fit_level(p, y, "temperature")}})
    uri = save_calibration(cal, str(tmp_path))
    assert uri == str(tmp_path / "calibration.json")
    back = load_calibration(str(tmp_path))
    assert back.get("vlm")["country"] == cal.methods["vlm"]["country"]
    assert back.get("anything")["country"].use == "temperature"  # one method serves any name
    back.methods["knn"] = {
        "city": LevelMap(use="isotonic", isotonic_x=[0, 1], isotonic_y=[0.2, 0.9])
    }
    save_calibration(back, str(tmp_path / "calibration.json"))
    both = load_calibration(str(tmp_path))
    assert set(both.methods) == {"vlm", "knn"} and both.get("other") is None
    assert both.apply([0.5], "knn", "city").tolist() == [pytest.approx(0.55)]
    assert both.apply([0.5], "knn", "country").tolist() == [0.5]  # no map: unchanged
    assert load_calibration(str(tmp_path / "nothing")) is None
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a georay-calibration v1 file"):
        load_calibration(str(tmp_path / "bad.json"))


def test_apply_row_keeps_candidates_a_distribution():
    cal = Calibration(methods={"vlm": {
        "country": LevelMap(use="temperature", temperature=3.0),
        "city": LevelMap(use="temperature", temperature=3.0),
    }})  # fmt: skip
    row = with_confidence(
        answer_row(PARIS, "m"),
        country=0.95, city=0.6,
        candidates=[candidate(PARIS, 0.6), candidate(LYON, 0.3), candidate(BERN, 0.05)],
        calibration=cal, method="vlm",
    )  # fmt: skip
    # T = 3 pulls every probability towards 1/2: the raw alternatives would sum past 1
    assert row["country_confidence"] == pytest.approx(apply_temperature(0.95, 3.0))
    assert row["city_confidence"] == pytest.approx(apply_temperature(0.6, 3.0))
    probs = [c["probability"] for c in row["candidates"]]
    assert probs[0] == row["city_confidence"]  # the answer is the first candidate
    assert sum(probs) <= 1 + 1e-12 and probs == sorted(probs, reverse=True)
    assert [c["city"] for c in row["candidates"]] == ["Paris", "Lyon", None]


def test_with_confidence_orders_cuts_and_validates():
    row = with_confidence(
        answer_row(PARIS, "m"), country=0.9, city=0.5,
        candidates=[candidate(PARIS, 0.5), candidate(BERN, 0.05), candidate(LYON, 0.3)], top_k=2,
    )  # fmt: skip
    assert [c["city"] for c in row["candidates"]] == ["Paris", "Lyon"]  # answer first, then best
    assert row["abstained"] is False
    with pytest.raises(ValueError, match="sum to"):
        with_confidence(answer_row(PARIS, "m"), country=0.9,
                        candidates=[candidate(PARIS, 0.7), candidate(LYON, 0.5)])  # fmt: skip
    with pytest.raises(ValueError, match="country_confidence"):
        with_confidence(answer_row(PARIS, "m"), country=1.5)
    with pytest.raises(ValueError, match="min_confidence"):
        abstain(answer_row(PARIS, "m"), 2.0)


def test_abstention_keeps_every_row_once():
    rows = [
        with_confidence(answer_row(PARIS, "m"), country=0.95, min_confidence=0.8),
        with_confidence(answer_row(LYON, "m"), country=0.4, min_confidence=0.8),
        with_confidence(answer_row(BERN, "m"), country=None, min_confidence=0.8),  # no score
        with_confidence(error_row("bad image", "m"), country=0.9, min_confidence=0.8),
        answer_row(PARIS, "m"),  # a producer that gives no confidence at all
    ]
    assert [r["abstained"] for r in rows] == [False, True, False, None, False]
    assert rows[1]["city"] == "Lyon" and rows[1]["answered"]  # keeps its answer
    assert rows[3]["country_confidence"] is None and rows[3]["candidates"] is None
    ids = [f"i{i}" for i in range(len(rows))]
    table = pa.Table.from_pylist([{"image_id": i, "uri": i, **r} for i, r in zip(ids, rows,
                                  strict=True)], schema=PREDICTIONS_SCHEMA)  # fmt: skip
    assert table["image_id"].to_pylist() == ids
    assert table["candidates"].type.value_type.names == [
        "country",
        "country_code",
        "city",
        "lat",
        "lon",
        "probability",
    ]


def test_auto_keeps_confidences_that_are_already_calibrated(tmp_path):
    # Outcomes drawn from the confidences themselves: no map can help, and a fitted one only
    # adds the noise of its fit (the demo's kNN vote on 140 val rows: temperature made test ECE
    # 0.043 -> 0.065). auto keeps the raw scores and says so.
    rng = np.random.default_rng(7)
    p = rng.beta(4, 1.5, 140)
    level = fit_level(p, rng.random(140) < p, "auto")
    assert level.use == "none"
    assert level.fit["cv_brier"]["none"] < min(
        level.fit["cv_brier"]["temperature"], level.fit["cv_brier"]["isotonic"]
    )
    assert np.array_equal(level(p), p)
    save_calibration(Calibration(methods={"knn": {"country": level}}), str(tmp_path))
    back = load_calibration(str(tmp_path)).get("knn")["country"]
    assert back.use == "none" and np.array_equal(back(p), p)
