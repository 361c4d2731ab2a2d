"""The reference (per-row) implementation of the evaluation figures: the benchmark's baseline.

``georay evaluate`` computes every figure with the vectorized engine in
:mod:`georay.evaluate.score`. This module computes the same figures the straightforward way,
name by name and row by row, on top of the shared building blocks in :mod:`georay.geo.metrics`.
It is what ``benchmarks/evaluate.py`` compares the engine against (speed), and what
``tests/unit/test_evaluate_reference.py`` checks the engine against (the same numbers). It is not
part of the georay package.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from georay.geo.cells import cell_centroids, latlng_to_cells
from georay.geo.distance import haversine_km
from georay.geo.gazetteer import Gazetteer, get_gazetteer
from georay.geo.metrics import (
    CONVENTIONS,
    country_codes,
    distance_metrics,
    geoscores,
    level_metrics,
)
from georay.geo.names import city_key, normalize_name


def _as_text(values: ArrayLike) -> np.ndarray:
    return np.atleast_1d(np.asarray(values, dtype=object))


def _nonempty(values: np.ndarray) -> np.ndarray:
    return np.array([bool(normalize_name(v)) for v in values], dtype=bool)


def country_matches(
    pred: ArrayLike, true: ArrayLike, gazetteer: Gazetteer | None = None
) -> np.ndarray:
    """True where both name the same country (codes, names and aliases accepted)."""
    p, t = country_codes(pred, gazetteer), country_codes(true, gazetteer)
    return np.array([a is not None and a == b for a, b in zip(p, t, strict=True)], dtype=bool)


def city_matches(
    pred: ArrayLike,
    true: ArrayLike,
    pred_country: ArrayLike | None = None,
    true_country: ArrayLike | None = None,
    gazetteer: Gazetteer | None = None,
) -> np.ndarray:
    """True where the city names are equal ignoring case/diacritics/punctuation and known
    exonyms (`city_key`) and, where the true country is known, the predicted country matches."""
    p, t = _as_text(pred), _as_text(true)
    pn, tn = [city_key(v) for v in p], [city_key(v) for v in t]
    same = np.array([bool(a) and a == b for a, b in zip(pn, tn, strict=True)], dtype=bool)
    if true_country is None:
        return same
    known = country_codes(true_country, gazetteer) != None  # noqa: E711 (elementwise)
    pc = np.full(p.shape, None, dtype=object) if pred_country is None else pred_country
    return same & (~known | country_matches(pc, true_country, gazetteer))


def cell_aggregates(
    true_lat: ArrayLike,
    true_lon: ArrayLike,
    res: int,
    distance_km: ArrayLike | None = None,
    country_correct: ArrayLike | None = None,
) -> dict[str, list]:
    """Per-H3-cell table of the true locations at resolution `res`.

    Returns
    -------
    dict of lists (columns, one entry per cell, most rows first)
        cell, lat, lon (cell centre), n, and where given: country_accuracy (correct / n),
        median_km (None when no row of the cell was located), geoscore (mean over the cell's
        rows). Rows without a true location are left out.
    """
    cells = latlng_to_cells(np.atleast_1d(true_lat), np.atleast_1d(true_lon), res)
    has = np.array([c is not None for c in cells], dtype=bool)
    uniq, inv, counts = np.unique(cells[has].astype(str), return_inverse=True, return_counts=True)
    order = np.lexsort((uniq, -counts))
    lat, lon = cell_centroids(uniq[order].astype(object))
    out: dict[str, list] = {"cell": uniq[order].tolist(), "lat": lat.tolist(), "lon": lon.tolist(),
                            "n": counts[order].tolist()}  # fmt: skip
    # Rows of each cell in one sort (a mask per cell would be O(cells * rows)).
    members = np.split(np.argsort(inv, kind="stable"), np.cumsum(counts)[:-1])
    groups = [members[k] for k in order]
    if country_correct is not None:
        ok = np.atleast_1d(np.asarray(country_correct, dtype=bool))[has]
        out["country_accuracy"] = [float(ok[g].mean()) for g in groups]
    if distance_km is not None:
        d = np.atleast_1d(np.asarray(distance_km, dtype=np.float64))[has]
        s = geoscores(d)
        med = [d[g][np.isfinite(d[g])] for g in groups]
        out["median_km"] = [float(np.median(m)) if len(m) else None for m in med]
        out["geoscore"] = [float(s[g].mean()) for g in groups]
    return out


def summarize(
    true_lat: ArrayLike,
    true_lon: ArrayLike,
    pred_country: ArrayLike,
    pred_city: ArrayLike | None = None,
    pred_lat: ArrayLike | None = None,
    pred_lon: ArrayLike | None = None,
    true_country: ArrayLike | None = None,
    true_city: ArrayLike | None = None,
    answered: ArrayLike | None = None,
    h3_resolutions: Sequence[int] = (3, 5),
    gazetteer: Gazetteer | None = None,
) -> dict[str, object]:
    """Every figure of a run, as one JSON-ready dict.

    Missing true countries are taken from the coordinates (nearest GeoNames place); missing
    predicted coordinates are resolved from the predicted names (see CONVENTIONS). Rows with
    `answered` False count as unanswered at every level and unlocated.

    Returns
    -------
    dict
        country and city (P/R/F1 dicts; city is None without `true_city`), distance
        (`distance_metrics`), cells ({"res3": `cell_aggregates`, ...}), conventions.
    """
    gaz = gazetteer or get_gazetteer()
    tlat = np.atleast_1d(np.asarray(true_lat, dtype=np.float64))
    tlon = np.atleast_1d(np.asarray(true_lon, dtype=np.float64))
    n = len(tlat)

    def col(values: ArrayLike | None) -> np.ndarray:
        return (
            np.full(n, None, dtype=object)
            if values is None
            else np.broadcast_to(_as_text(values), (n,))
        )

    pc, pcity = col(pred_country), col(pred_city)
    flag = np.ones(n, bool) if answered is None else np.asarray(answered, dtype=bool)
    tc = country_codes(col(true_country), gaz)
    need = np.array([c is None for c in tc], dtype=bool)
    if need.any():  # ground truth by coordinates where no country was given
        tc[need] = gaz.reverse(tlat[need], tlon[need]).country_code

    plat = np.full(n, np.nan) if pred_lat is None else np.asarray(pred_lat, dtype=np.float64).copy()
    plon = np.full(n, np.nan) if pred_lon is None else np.asarray(pred_lon, dtype=np.float64).copy()
    miss = ~(np.isfinite(plat) & np.isfinite(plon))
    if miss.any():
        plat[miss], plon[miss] = gaz.coordinates(pc[miss], pcity[miss])
    d = haversine_km(tlat, tlon, plat, plon)
    d[~flag] = np.nan

    c_ok = country_matches(pc, tc, gaz)
    country = level_metrics(c_ok, _nonempty(pc) & flag, known=tc != None)  # noqa: E711
    city = None
    if true_city is not None:
        tcity = col(true_city)
        city_ok = city_matches(pcity, tcity, pc, tc, gaz)
        city = level_metrics(city_ok, _nonempty(pcity) & flag, known=_nonempty(tcity))
    cells = {
        f"res{r}": cell_aggregates(tlat, tlon, r, distance_km=d, country_correct=c_ok & flag)
        for r in h3_resolutions
    }
    return {"country": country, "city": city, "distance": distance_metrics(d), "cells": cells,
            "conventions": dict(CONVENTIONS)}  # fmt: skip
