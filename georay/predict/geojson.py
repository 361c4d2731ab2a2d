"""``georay export-geo``: predictions as a GeoJSON FeatureCollection (RFC 7946).

One Feature per answered row, a Point at (``lon``, ``lat``) in WGS84 (RFC 7946 allows no other
CRS), its properties the row's columns (``candidates`` as a list of objects; the WKB
``geometry`` column is the Feature's geometry, so it is not repeated). Unanswered and error rows
have no point and are left out; the summary says how many. No Ray here.
"""

from __future__ import annotations

import json
import math

import pyarrow as pa

from georay.data.storage import join_uri, write_bytes
from georay.data.tables import is_folder, read_table
from georay.errors import UserError
from georay.predict.config import ExportGeoConfig
from georay.protocol.geoparquet import GEOMETRY


def _predictions_uri(uri: str) -> str:
    """A job's output folder means its predictions/ table."""
    inner = join_uri(uri, "predictions")
    return inner if is_folder(uri) and is_folder(inner) else uri


def _number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def features(table: pa.Table) -> list[dict]:
    """The GeoJSON Features of ``table``'s answered rows with a point."""
    missing = {"lat", "lon"} - set(table.column_names)
    if missing:
        raise UserError(f"--predictions has no {', '.join(sorted(missing))} column")
    out = []
    for row in table.to_pylist():
        lat, lon = _number(row.get("lat")), _number(row.get("lon"))
        if lat is None or lon is None or row.get("answered") is False:
            continue
        props = {k: _number(v) for k, v in row.items() if k != GEOMETRY}
        out.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                    "properties": props})  # fmt: skip
    return out


def export_geo(cfg: ExportGeoConfig) -> dict:
    """Write ``cfg.output`` (a FeatureCollection); returns the counts."""
    table = read_table(_predictions_uri(cfg.predictions))
    found = features(table)
    collection = {"type": "FeatureCollection", "features": found}
    text = json.dumps(collection, ensure_ascii=False, default=str, allow_nan=False)
    write_bytes(cfg.output, text.encode())
    return {"output": cfg.output, "rows": table.num_rows, "features": len(found),
            "left_out": table.num_rows - len(found)}  # fmt: skip
