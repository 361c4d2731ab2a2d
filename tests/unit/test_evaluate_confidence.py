"""Evaluate's confidence figures on hand-made prediction tables, counted by hand."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from georay.evaluate import EvaluateConfig, evaluate
from georay.evaluate.confidence import precision_at_coverage, risk_coverage, selective_table
from georay.protocol.calibration import Calibration, LevelMap, save_calibration
from georay.protocol.predictions import PREDICTIONS_SCHEMA

NAN = float("nan")


def test_risk_coverage_and_thresholds_by_hand():
    conf = np.array([0.9, 0.8, 0.8, 0.6, NAN])  # the last row has no confidence
    right = np.array([1, 1, 0, 1, 0], bool)
    curve = risk_coverage(conf, right)
    # tie groups, most confident first: .9 (1 of 1), .8 (2 of 3), .6 (3 of 4), none (3 of 5)
    assert curve["kept"].tolist() == [1, 3, 4, 5]
    assert curve["precision"].tolist() == pytest.approx([1, 2 / 3, 3 / 4, 3 / 5])
    assert curve["aurc"] == pytest.approx(0.2 * 0 + 0.4 * (1 / 3) + 0.2 * 0.25 + 0.2 * 0.4)
    table = {r["target_precision"]: r for r in selective_table(curve, (0.7, 0.9, 0.99, 1.0))}
    # 70%: .6 keeps 4 rows at 75% (more than .9's one row); the no-confidence tail never counts
    assert table[0.7]["threshold"] == 0.6 and table[0.7]["kept_share"] == 0.8
    assert table[0.9]["threshold"] == 0.9 and table[0.9]["kept_rows"] == 1
    assert table[1.0]["precision"] == 1.0
    none = selective_table(risk_coverage(np.array([0.5]), np.array([False])), (0.9,))[0]
    assert none["threshold"] is None and none["kept_share"] == 0.0
    assert precision_at_coverage(conf, right, (0.2, 0.6, 1.0)) == {
        "0.2": 1.0, "0.6": pytest.approx(2 / 3), "1": 0.6
    }  # fmt: skip


PLACES = {  # code: (country, city, lat, lon)
    "CH": ("Switzerland", "Zurich", 47.3769, 8.5417),
    "JP": ("Japan", "Tokyo", 35.6762, 139.6503),
    "FR": ("France", "Paris", 48.8566, 2.3522),
    "DE": ("Germany", "Berlin", 52.52, 13.405),
}


def _cand(code: str, p: float, *, coords: bool = True) -> dict:
    country, city, lat, lon = PLACES[code]
    return {"country": country, "country_code": code, "city": city, "probability": p,
            "lat": lat if coords else None, "lon": lon if coords else None}  # fmt: skip


# truth code; prediction code, country confidence, candidates, abstained
ROWS = [
    ("CH", "CH", 0.9, [_cand("CH", 0.8), _cand("FR", 0.1)], False),  # right, top-1
    (
        "JP",
        "FR",
        0.6,
        [_cand("FR", 0.5), _cand("FR", 0.2), _cand("DE", 0.1), _cand("JP", 0.1)],
        False,
    ),  # wrong; JP is the 3rd distinct country (FR twice)
    ("FR", "FR", 0.3, [_cand("FR", 0.3)], True),  # right but abstained
    ("DE", "CH", 0.2, [_cand("CH", 0.2), _cand("DE", 0.1, coords=False)], True),  # wrong,
    # abstained; DE has no coordinates: placed through its names (Berlin), within 25 km
    ("JP", "JP", None, None, False),  # no scores from this method
]


def _write(tmp_path, rows=ROWS, confidence=True) -> tuple[str, str]:
    truth = pa.table({
        "image_id": [f"i{i}" for i in range(len(rows))],
        "lat": [PLACES[r[0]][2] for r in rows], "lon": [PLACES[r[0]][3] for r in rows],
        "country": [r[0] for r in rows], "city": [PLACES[r[0]][1] for r in rows],
    })  # fmt: skip
    preds = []
    for i, (_, code, conf, cands, abst) in enumerate(rows):
        country, city, lat, lon = PLACES[code]
        row = {"image_id": f"i{i}", "uri": f"i{i}.jpg", "country": country, "country_code": code,
               "city": city, "lat": lat, "lon": lon, "answered": True, "status": "ok"}  # fmt: skip
        if confidence:
            row |= {"country_confidence": conf, "city_confidence": conf and conf / 2,
                    "candidates": cands, "abstained": abst}  # fmt: skip
        preds.append(row)
    pq.write_table(pa.Table.from_pylist(preds, schema=PREDICTIONS_SCHEMA), tmp_path / "p.parquet")
    pq.write_table(truth, tmp_path / "t.parquet")
    return str(tmp_path / "p.parquet"), str(tmp_path / "t.parquet")


def _run(tmp_path, pred, truth, **kw) -> dict:
    return evaluate(EvaluateConfig(predictions=pred, truth=truth, output=str(tmp_path / "r"),
                                   **kw))  # fmt: skip


def test_confidence_figures_by_hand(tmp_path):
    pred, truth = _write(tmp_path)
    m = _run(tmp_path, pred, truth)
    c = m["confidence"]
    # rows with a country confidence: 4 (the 5th has none); right: rows 0 and 2
    assert c["country"]["rows"] == 4
    p, y = np.array([0.9, 0.6, 0.3, 0.2]), np.array([1, 0, 1, 0])
    assert c["country"]["as_given"]["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert c["country"]["as_given"]["ece"] == pytest.approx(np.mean(np.abs(p - y)))  # 1 row/bin
    assert "calibrated" not in c["country"] and c["country"]["on"] == "as_given"
    # city: each truth city is the predicted one when the country is right
    assert c["city"]["as_given"]["accuracy"] == 0.5
    # archive = 5 rows; 90% precision: only the 0.9 row -> 20% kept
    sel = {r["target_precision"]: r for r in c["country"]["selective"]}
    assert sel[0.9]["threshold"] == 0.9 and sel[0.9]["kept_share"] == pytest.approx(0.2)
    assert c["top_k"] == {"rows_with_candidates": 4, "country_top1": 0.4, "country_top3": 0.8,
                          "country_top5": 0.8, "within_25km": 0.8}  # fmt: skip
    assert c["abstained"]["rows"] == 2 and c["abstained"]["counted_as"] == "unanswered"
    assert c["abstained"]["kept_country_precision"] == pytest.approx(2 / 3)
    # the headline counts abstained rows as unanswered by default ...
    assert m["country"]["answered"] == 3 and m["country"]["correct"] == 2
    assert {"calibration", "coverage"} <= set(m["figures"])
    report = (tmp_path / "r" / "report.md").read_text()
    assert "at 95% country precision, 20.0% of photos are placed" in report
    assert "![coverage](coverage.png)" in report and "| country top-3 |" in report
    # ... or as the answers they keep
    both = _run(tmp_path, pred, truth, abstained="answered", plots=False)
    assert both["country"]["answered"] == 5 and both["country"]["correct"] == 3
    assert both["confidence"]["country"] == c["country"]  # confidence figures do not change
    json.loads((tmp_path / "r" / "metrics.json").read_text(), parse_constant=pytest.fail)


def test_calibration_before_and_after(tmp_path):
    pred, truth = _write(tmp_path)
    save_calibration(Calibration(methods={"vlm": {"country": LevelMap(
        use="isotonic", isotonic_x=[0.0, 1.0], isotonic_y=[0.5, 0.5])}}), str(tmp_path / "m"))  # fmt: skip
    m = _run(tmp_path, pred, truth, calibration=[str(tmp_path / "m")], plots=False)
    after = m["confidence"]["country"]["calibrated"]
    assert after["brier"] == pytest.approx(0.25) and after["ece"] == pytest.approx(0.5)
    assert m["confidence"]["country"]["on"] == "calibrated"
    assert "calibrated" not in m["confidence"]["city"]  # no city map in the file
    assert "| ECE | ECE calibrated |" in (tmp_path / "r" / "report.md").read_text()


def test_predictions_without_confidence_unchanged(tmp_path):
    pred, truth = _write(tmp_path, confidence=False)
    m = _run(tmp_path, pred, truth)
    assert "confidence" not in m and not {"calibration", "coverage"} & set(m["figures"])
    assert not any(k in m["conventions"] for k in ("ece", "aurc"))
    assert m["country"]["answered"] == 5 and m["country"]["correct"] == 3
    assert "## Confidence" not in (tmp_path / "r" / "report.md").read_text()
    # the same table without the columns at all (today's writers) reads the same
    table = pq.read_table(pred).drop_columns(["country_confidence", "city_confidence",
                                              "candidates", "abstained"])  # fmt: skip
    pq.write_table(table, tmp_path / "old.parquet")
    old = _run(tmp_path, str(tmp_path / "old.parquet"), truth, plots=False)
    assert {k: old[k] for k in ("country", "city", "acc_km")} == {
        k: m[k] for k in ("country", "city", "acc_km")
    }


def test_calibration_flag_errors(tmp_path):
    pred, truth = _write(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no .*calibration.json"):
        _run(tmp_path, pred, truth, calibration=[str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="no predictions named 'knn'"):
        EvaluateConfig(predictions=pred, truth=truth, output="o", calibration=["knn=x"])
    with pytest.raises(ValueError, match="abstained must be one of"):
        EvaluateConfig(predictions=pred, truth=truth, output="o", abstained="maybe")
