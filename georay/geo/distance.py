"""Great-circle distances on a spherical Earth (radius 6371.0 km, the field's convention)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

EARTH_RADIUS_KM = 6371.0


def haversine_km(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> np.ndarray:
    """Great-circle distance in km between points given in WGS84 degrees, broadcast against
    each other (0-d for scalar input); NaN wherever any input is NaN."""
    p1, l1, p2, l2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (lat1, lon1, lat2, lon2))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    # Clip guards arcsin against a rounding error pushing sqrt(a) just above 1 (antipodes).
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


def unit_vectors(lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
    """3-D unit vectors (..., 3) of points on the sphere.

    Nearest neighbours in this space are nearest on the sphere, across the antimeridian and
    the poles, unlike a K-D tree on raw (lat, lon).
    """
    p = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    return np.stack([np.cos(p) * np.cos(lam), np.cos(p) * np.sin(lam), np.sin(p)], axis=-1)


def chord_to_km(chord: ArrayLike) -> np.ndarray:
    """Convert a straight-line distance between unit vectors into great-circle km."""
    half = np.clip(np.asarray(chord, dtype=np.float64) / 2, 0.0, 1.0)
    return 2 * EARTH_RADIUS_KM * np.arcsin(half)
