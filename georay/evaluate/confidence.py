"""Confidence figures of a scored method (issue 20): calibration, selective prediction, top-k.

A user who geotags an archive acts on these: "accept what is right 95% of the time, send the
rest to a person". For every method whose predictions carry ``country_confidence`` /
``city_confidence`` / ``candidates`` / ``abstained``:

* **calibration** per level: expected calibration error (15 equal-mass bins) and Brier score of
  the confidences as given, and after a calibration file when one is given
  (``georay evaluate --calibration``); the reliability bins for ``calibration.png``;
* **selective prediction** (country): rows sorted by confidence, most confident first; the
  precision of the kept rows against the share of the archive kept (``coverage.png``), the area
  under the risk-coverage curve, and the table a user acts on: for each target precision, the
  lowest confidence threshold whose kept rows reach it and the share of the archive it keeps;
* **top-k** from ``candidates``: the truth among the first 1 / 3 / 5 distinct countries, and any
  candidate within 25 km;
* **abstention**: how many rows abstained and how they were counted.

Rows without a confidence (no prediction, an error row) are in every denominator: a threshold
never keeps them, and the risk-coverage curve ranks them last.
"""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from georay.evaluate.score import Scored, _coordinates, _decode
from georay.geo.distance import haversine_km
from georay.geo.gazetteer import Gazetteer
from georay.geo.metrics import country_codes
from georay.protocol.calibration import (
    ECE_BINS,
    Calibration,
    brier_score,
    expected_calibration_error,
    reliability,
)

PRECISION_TARGETS = (0.90, 0.95, 0.99)
COVERAGE_POINTS = (0.5, 0.7, 0.9)
TOP_K = (1, 3, 5)
CANDIDATE_KM = 25.0

CONFIDENCE_CONVENTIONS = {
    "confidence_rows": "calibration figures of a level are over the truth rows that know that "
    "level and whose prediction carries a confidence for it; a row's outcome is whether its "
    "answer is right, whether or not it abstained",
    "ece": f"expected calibration error over {ECE_BINS} equal-mass bins (rows sorted by "
    "confidence, cut into bins of equal count): sum of bin share * |accuracy - mean confidence|",
    "brier": "mean of (confidence - correct)^2 over the same rows",
    "calibrated": "'after' figures apply the calibration file given to --calibration to the "
    "confidences as read (so give it only for predictions made without it)",
    "selective": "country level; the archive is every truth row with a known country; rows kept "
    "at threshold t are those with confidence >= t; precision = right / kept; a target is met "
    "at the lowest threshold whose kept rows reach it (the largest share kept); thresholds and "
    "curves use the calibrated confidence where a calibration is given",
    "aurc": "area under the risk-coverage curve: risk = 1 - precision of the kept rows, "
    "integrated over the share kept in steps of tied confidences; rows without a confidence "
    "come last (lower is better)",
    "precision_at_coverage": "precision of the most confident share c of the archive (ties "
    "broken by row order)",
    "top_k": "truth country among the first k distinct countries of `candidates` (over rows "
    "with a known country); within_25km: any candidate strictly under 25 km from the truth "
    "(over located rows; a candidate without coordinates is placed through its names); rows "
    "without candidates are misses",
    "abstained": "abstained rows keep their answer; --abstained says whether the headline "
    "counts them as answered or unanswered; confidence figures always use their answer",
}


def has_confidence(scored: Scored) -> bool:
    """True where the predictions carried any confidence, candidate or abstention."""
    conf = [scored.country_confidence, scored.city_confidence]
    return (
        any(c is not None and np.isfinite(c).any() for c in conf)
        or (scored.candidates is not None and scored.candidates.null_count < len(scored))
        or (scored.abstained is not None and bool(scored.abstained.any()))
    )


def _level(scored: Scored, level: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence, correct, known) of every truth row at ``level`` (NaN: no confidence)."""
    conf = getattr(scored, f"{level}_confidence")
    if conf is None:
        conf = np.full(len(scored), np.nan)
    return conf, getattr(scored, f"{level}_correct"), getattr(scored, f"{level}_known")


def calibration_figures(p: np.ndarray, correct: np.ndarray) -> dict:
    """ECE, Brier, mean confidence and accuracy of one set of confidences."""
    return {
        "ece": expected_calibration_error(p, correct),
        "brier": brier_score(p, correct),
        "mean_confidence": float(p.mean()) if len(p) else float("nan"),
        "accuracy": float(correct.mean()) if len(p) else float("nan"),
    }


def risk_coverage(conf: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """The selective-prediction curve over all rows of an archive.

    Parameters
    ----------
    conf : numpy.ndarray
        Confidence per row (NaN: none; such rows come last and no threshold keeps them).
    correct : numpy.ndarray of bool

    Returns
    -------
    dict
        Per group of tied confidences, most confident first: ``threshold`` (the group's
        confidence; NaN for the rows without one), ``kept`` (rows with confidence >= it),
        ``coverage`` (kept / rows), ``precision`` (right / kept); and ``aurc``.
    """
    n = len(conf)
    if not n:
        empty = np.zeros(0)
        return {"threshold": empty, "kept": empty, "coverage": empty, "precision": empty,
                "aurc": float("nan")}  # fmt: skip
    key = np.where(np.isfinite(conf), conf, -np.inf)
    order = np.argsort(-key, kind="stable")
    key, hits = key[order], np.asarray(correct, dtype=float)[order]
    last = np.r_[key[1:] != key[:-1], True]  # the last row of each tie group
    kept = np.flatnonzero(last) + 1
    right = np.cumsum(hits)[last]
    precision = right / kept
    step = np.diff(np.r_[0, kept]) / n
    threshold = np.where(np.isfinite(key[last]), key[last], np.nan)
    return {
        "threshold": threshold,
        "kept": kept,
        "coverage": kept / n,
        "precision": precision,
        "aurc": float(np.sum(step * (1 - precision))),
    }


def selective_table(curve: dict, targets=PRECISION_TARGETS) -> list[dict]:
    """For each target precision: the lowest threshold whose kept rows reach it, the share of
    the archive kept, the rows kept and the precision they have (threshold None, nothing kept,
    where no threshold reaches it)."""
    ok = np.isfinite(curve["threshold"])
    out = []
    for target in targets:
        meets = np.flatnonzero(ok & (curve["precision"] >= target - 1e-12))
        if not len(meets):
            out.append({"target_precision": target, "threshold": None, "kept_share": 0.0,
                        "kept_rows": 0, "precision": None})  # fmt: skip
            continue
        i = meets[np.argmax(curve["kept"][meets])]
        out.append({
            "target_precision": target,
            "threshold": float(curve["threshold"][i]),
            "kept_share": float(curve["coverage"][i]),
            "kept_rows": int(curve["kept"][i]),
            "precision": float(curve["precision"][i]),
        })  # fmt: skip
    return out


def precision_at_coverage(conf: np.ndarray, correct: np.ndarray, shares=COVERAGE_POINTS) -> dict:
    """Precision of the most confident ``share`` of all rows (rows without confidence last)."""
    key = np.where(np.isfinite(conf), conf, -np.inf)
    hits = np.asarray(correct, dtype=float)[np.argsort(-key, kind="stable")]
    out = {}
    for share in shares:
        k = int(np.ceil(share * len(hits)))
        out[f"{share:g}"] = float(hits[:k].mean()) if k else None
    return out


def _candidate_places(scored: Scored, gaz: Gazetteer) -> dict[str, np.ndarray]:
    """Flattened candidates, row-major in list order: row index, ISO code, coordinates."""
    cands = scored.candidates
    flat = pc.list_flatten(cands)
    row = pc.list_parent_indices(cands).to_numpy(zero_copy_only=False)
    name = pc.coalesce(flat.field("country_code"), flat.field("country"))
    code = _decode(name, lambda v: country_codes(v, gaz))
    lat = pc.fill_null(flat.field("lat"), np.nan).to_numpy(zero_copy_only=False).astype(float)
    lon = pc.fill_null(flat.field("lon"), np.nan).to_numpy(zero_copy_only=False).astype(float)
    need = np.flatnonzero(~(np.isfinite(lat) & np.isfinite(lon)))
    if len(need):
        lat[need], lon[need] = _coordinates(gaz, name, flat.field("city"), need)
    return {"row": row, "code": code, "lat": lat, "lon": lon}


def top_k(scored: Scored, gaz: Gazetteer, ks=TOP_K, radius_km: float = CANDIDATE_KM) -> dict:
    """Top-k country accuracy and the share with a candidate within ``radius_km``."""
    n = len(scored)
    c = _candidate_places(scored, gaz)
    row, code = c["row"], c["code"]
    # Distinct countries in candidate order: the first candidate of each (row, country) pair.
    ids = np.unique(np.where(np.equal(code, None), "", code).astype(str), return_inverse=True)[1]
    pair = row.astype(np.int64) * (ids.max(initial=0) + 1) + ids
    _, first_at = np.unique(pair, return_index=True)
    distinct = np.zeros(len(row), bool)
    distinct[first_at] = True
    distinct &= np.not_equal(code, None)
    # Rank among a row's distinct countries (flattened lists keep row-major, rank order).
    cum = np.cumsum(distinct)
    starts = np.r_[True, row[1:] != row[:-1]] if len(row) else np.zeros(0, bool)
    before = (cum - distinct)[starts]
    country_rank = cum - before[np.cumsum(starts) - 1] - 1
    truth = scored.true_country[row]
    right = distinct & np.not_equal(truth, None) & (code == truth)
    known = scored.country_known
    out: dict = {"rows_with_candidates": int(n - scored.candidates.null_count)}
    for k in ks:
        hit = np.zeros(n, bool)
        hit[row[right & (country_rank < k)]] = True
        out[f"country_top{k}"] = float(hit[known].mean()) if known.any() else None
    with np.errstate(invalid="ignore"):
        near = haversine_km(scored.true_lat[row], scored.true_lon[row], c["lat"], c["lon"])
    close = np.zeros(n, bool)
    close[row[near < radius_km]] = True
    located = scored.located
    out[f"within_{radius_km:g}km"] = float(close[located].mean()) if located.any() else None
    return out


def abstention(scored: Scored, counted_as: str) -> dict:
    """Abstained rows and the country precision of the rows kept (not abstained)."""
    abst = scored.abstained
    answered = scored.country_answered
    kept = answered & ~abst
    return {
        "rows": int(abst.sum()),
        "share": float(abst.mean()) if len(abst) else None,
        "counted_as": counted_as,
        "kept_rows": int(kept.sum()),
        "kept_country_precision": float(scored.country_correct[kept].mean())
        if kept.any()
        else None,
        "abstained_country_accuracy": float(scored.country_correct[abst].mean())
        if abst.any()
        else None,
    }


def confidence_metrics(
    scored: Scored,
    gaz: Gazetteer,
    *,
    calibration: Calibration | None = None,
    method: str = "",
    counted_as: str = "unanswered",
) -> tuple[dict, dict]:
    """The ``confidence`` section of a method's metrics, and the curves its figures draw.

    Parameters
    ----------
    scored : Scored
        The method's rows, scored with abstained rows as answered (their answer's outcome).
    calibration : Calibration, optional
        Applied to the confidences as read for the "calibrated" figures.
    method : str
        Which of the calibration's methods to use (the only one when it has one).
    counted_as : str
        How the headline counted abstained rows (recorded).

    Returns
    -------
    (dict, dict)
        metrics.json figures, and per level ``reliability`` bins (as given / calibrated) and
        the country ``curve`` (for :mod:`georay.evaluate.plots`).
    """
    out: dict = {}
    curves: dict = {}
    for level in ("country", "city"):
        conf, correct, known = _level(scored, level)
        rows = known & np.isfinite(conf)
        if not rows.any():
            continue
        p, y = conf[rows], correct[rows]
        fig = {"rows": int(rows.sum()), "as_given": calibration_figures(p, y)}
        curves[level] = {"as_given": reliability(p, y)}
        acted = conf
        level_map = (calibration.get(method) or {}).get(level) if calibration else None
        if level_map is not None:
            after = np.clip(level_map(p), 0.0, 1.0)
            fig["calibrated"] = calibration_figures(after, y)
            curves[level]["calibrated"] = reliability(after, y)
            acted = conf.copy()
            acted[rows] = after
        if level == "country":
            curve = risk_coverage(acted[known], correct[known])
            fig["on"] = "calibrated" if level_map is not None else "as_given"
            fig["aurc"] = curve["aurc"]
            fig["selective"] = selective_table(curve)
            fig["precision_at_coverage"] = precision_at_coverage(acted[known], correct[known])
            fig["accuracy_all_rows"] = float(correct[known].mean())
            curves["curve"] = curve
        out[level] = fig
    if scored.candidates is not None and scored.candidates.null_count < len(scored):
        out["top_k"] = top_k(scored, gaz)
    if scored.abstained is not None:
        out["abstained"] = abstention(scored, counted_as)
    return out, curves


def without_abstained(scored: Scored) -> Scored:
    """``scored`` with abstained rows as unanswered: no country, city or place (the headline
    when ``--abstained unanswered``)."""
    from dataclasses import replace

    if scored.abstained is None or not scored.abstained.any():
        return scored
    keep = ~scored.abstained
    dist = scored.distance_km.copy()
    dist[~keep] = np.nan
    return replace(
        scored,
        country_answered=scored.country_answered & keep,
        country_correct=scored.country_correct & keep,
        city_answered=scored.city_answered & keep,
        city_correct=scored.city_correct & keep,
        distance_km=dist,
    )
