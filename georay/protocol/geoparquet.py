"""GeoParquet 1.1 for predictions: a WKB point ``geometry`` column and the ``geo`` file metadata.

With both, ``geopandas.read_parquet``, QGIS, DuckDB spatial and GDAL open a predictions part as
points with no options. The WKB is written here (21 bytes per point: byte order, type 1, x, y),
so writing GeoParquet needs neither geopandas nor shapely at run time.

Conventions (GeoParquet 1.1 spec):

* ``geometry`` is the row's answered place (``lon``, ``lat``), null where the row has no point
  (error rows, unanswered rows); a null geometry is allowed by the spec;
* ``crs`` is omitted: the spec's default is ``OGC:CRS84``, i.e. WGS84 (EPSG:4326) with
  longitude first, which is how the points are written;
* ``bbox`` (file level, ``[xmin, ymin, xmax, ymax]``) of the part's points; absent when the part
  has none.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

GEOMETRY = "geometry"
GEOPARQUET_VERSION = "1.1.0"
# Little-endian WKB point: byte order 1, geometry type 1 (Point), then x and y.
_WKB_POINT = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])


def wkb_points(lon: np.ndarray, lat: np.ndarray) -> list[bytes | None]:
    """WKB points of ``(lon, lat)`` pairs; None where either coordinate is NaN."""
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    packed = np.zeros(len(lon), dtype=_WKB_POINT)
    packed["order"], packed["type"], packed["x"], packed["y"] = 1, 1, lon, lat
    raw = packed.tobytes()
    size = _WKB_POINT.itemsize
    ok = np.isfinite(lon) & np.isfinite(lat)
    return [raw[i * size : (i + 1) * size] if ok[i] else None for i in range(len(lon))]


def geo_metadata(lon: np.ndarray, lat: np.ndarray) -> dict:
    """The ``geo`` file metadata of a table whose points are ``(lon, lat)`` (NaN: no point)."""
    column: dict = {"encoding": "WKB", "geometry_types": ["Point"]}
    ok = np.isfinite(lon) & np.isfinite(lat)
    if ok.any():
        column["bbox"] = [float(lon[ok].min()), float(lat[ok].min()),
                          float(lon[ok].max()), float(lat[ok].max())]  # fmt: skip
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": GEOMETRY,
        "columns": {GEOMETRY: column},
    }


def _coordinates(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(table[name].cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def with_geometry(table: pa.Table) -> pa.Table:
    """``table`` (with ``lat``, ``lon``) with its ``geometry`` column set from them and the
    ``geo`` metadata added: a GeoParquet 1.1 table once written."""
    lat, lon = _coordinates(table, "lat"), _coordinates(table, "lon")
    geometry = pa.array(wkb_points(lon, lat), pa.binary())
    if GEOMETRY in table.column_names:
        table = table.set_column(table.schema.get_field_index(GEOMETRY), GEOMETRY, geometry)
    else:
        table = table.append_column(GEOMETRY, geometry)
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = json.dumps(geo_metadata(lon, lat)).encode()
    return table.replace_schema_metadata(meta)
