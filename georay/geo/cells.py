"""H3 cells of points (h3 v4 API), vectorized over arrays and NaN-safe.

Cells are H3 index strings ("851f8edbfffffff") in object arrays; None marks a missing point.
"""

from __future__ import annotations

import h3
import numpy as np
from numpy.typing import ArrayLike


def _check_res(res: int) -> int:
    if not isinstance(res, (int, np.integer)) or not 0 <= res <= 15:
        raise ValueError(f"H3 resolution must be an integer in 0..15, got {res!r}")
    return int(res)


def latlng_to_cells(lat: ArrayLike, lon: ArrayLike, res: int) -> np.ndarray:
    """H3 cell of each point (WGS84 degrees, broadcast together) at ``res`` (3 is ~12,000
    km^2 per cell, 5 ~250 km^2): an object array, None where a point is not finite or its
    latitude is outside [-90, 90]."""
    res = _check_res(res)
    la, lo = np.broadcast_arrays(
        np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    )
    out = np.full(la.shape, None, dtype=object)
    ok = np.isfinite(la) & np.isfinite(lo) & (np.abs(la) <= 90)
    out[ok] = [
        h3.latlng_to_cell(a, b, res) for a, b in zip(la[ok].tolist(), lo[ok].tolist(), strict=True)
    ]
    return out


def cell_parents(cells: ArrayLike, res: int) -> np.ndarray:
    """Parent cell of each cell at the coarser resolution `res` (None stays None).

    Raises
    ------
    ValueError
        If `res` is invalid, finer than a cell's own resolution, or a cell is not valid H3.
    """
    res = _check_res(res)
    arr = np.asarray(cells, dtype=object)
    out = np.full(arr.shape, None, dtype=object)
    for i, c in enumerate(arr.flat):
        if c is None:
            continue
        if not h3.is_valid_cell(c) or h3.get_resolution(c) < res:
            raise ValueError(f"cannot take the res-{res} parent of {c!r}")
        out.flat[i] = h3.cell_to_parent(c, res)
    return out


def cell_centroids(cells: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Centre (lat, lon) of each cell; NaN for None or invalid cells."""
    arr = np.asarray(cells, dtype=object)
    lat = np.full(arr.shape, np.nan)
    lon = np.full(arr.shape, np.nan)
    for i, c in enumerate(arr.flat):
        if isinstance(c, str) and h3.is_valid_cell(c):
            lat.flat[i], lon.flat[i] = h3.cell_to_latlng(c)
    return lat, lon


def cell_boundary(cell: str) -> list[tuple[float, float]]:
    """Vertices ``(lat, lon)`` of an H3 cell, in order, for drawing it (``ValueError`` for an
    invalid index). Longitudes are unwrapped along the ring (a cell across the antimeridian goes
    past +-180 instead of jumping 360 degrees), so a polygon drawn from them stays small."""
    if not isinstance(cell, str) or not h3.is_valid_cell(cell):
        raise ValueError(f"not an H3 cell: {cell!r}")
    ring = h3.cell_to_boundary(cell)
    out, prev = [], ring[0][1]
    for lat, lon in ring:
        lon += 360.0 * round((prev - lon) / 360.0)
        out.append((lat, lon))
        prev = lon
    return out
