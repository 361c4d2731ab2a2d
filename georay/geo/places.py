"""The city a coordinate is in, for ground truth given only as coordinates.

The gazetteer's nearest-place rule (``Gazetteer.reverse``) is right for the *country* but not
for the *city*: GeoNames lists city districts as places of their own, so a point in central
Zürich is nearest to "Zürich (Kreis 1) / Lindenhof" and a model answering "Zurich" would be
marked wrong. Here the city of a point is the **most populous place within ``radius_km``**
(the city whose area it is in), falling back to the nearest place when nothing lies that close.
Used by evaluation (truth without a city) and by the knowledge stage (stage-2 targets from
coordinates), so training targets and scoring agree.
"""

from __future__ import annotations

import numpy as np

from georay.geo.distance import EARTH_RADIUS_KM, unit_vectors
from georay.geo.gazetteer import Gazetteer

CITY_RADIUS_KM = 10.0
_NEIGHBOURS = 32  # places looked at around each point (dense suburbs have many)
_CHUNK = 65_536  # points per query: bounds the (chunk, 32) neighbour arrays


def city_of_coordinates(
    gazetteer: Gazetteer, lat: np.ndarray, lon: np.ndarray, radius_km: float = CITY_RADIUS_KM
) -> tuple[np.ndarray, np.ndarray]:
    """(city name, ISO country code) of each point; None where the point is NaN.

    The gazetteer keeps places most populous first, so the most populous neighbour is the one
    with the smallest index: a vectorized k-nearest query, no Python loop per point.
    """
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    names = np.full(len(lat), None, dtype=object)
    codes = np.full(len(lat), None, dtype=object)
    ok = np.flatnonzero(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90))
    chord = 2 * np.sin(radius_km / EARTH_RADIUS_KM / 2)
    tree, n_places = gazetteer.tree, len(gazetteer.names)
    for start in range(0, len(ok), _CHUNK):
        rows = ok[start : start + _CHUNK]
        xyz = unit_vectors(lat[rows], lon[rows])
        _, near = tree.query(xyz, k=_NEIGHBOURS, distance_upper_bound=chord)
        best = near.min(axis=1)  # missing neighbours are n_places: never the minimum
        far = best >= n_places
        if far.any():
            best[far] = tree.query(xyz[far], k=1)[1]
        names[rows] = gazetteer.names[best]
        codes[rows] = gazetteer.codes[best]
    return names, codes
