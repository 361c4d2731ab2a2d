"""GIS-ready predictions: GeoParquet 1.1 parts that geopandas opens as points with no options,
and ``georay export-geo`` GeoJSON (issue 21)."""

from __future__ import annotations

import json
import math

import geopandas as gpd  # dev extra, never skipped: the runtime writes WKB itself
import jsonschema
import numpy as np
import pyarrow.parquet as pq
import shapely
from support import georay_ok

from georay.predict.rows import geoparquet_parts, predictions_table, rows_of
from georay.protocol.geoparquet import wkb_points
from georay.protocol.predictions import Resolved, add_cells, answer_row, candidate


def _table():
    """Four rows: a VLM answer with candidates, a read error, an EXIF photo, a refusal."""
    batch = {
        "image_id": np.array(["a", "b", "c", "d"], dtype=object),
        "uri": np.array([f"/x/{i}.jpg" for i in "abcd"], dtype=object),
        "status": np.array(["ok", "error", "ok", "ok"], dtype=object),
        "error": np.array([None, "missing file: /x/b.jpg", None, None], dtype=object),
        "exif_lat": np.array([math.nan, math.nan, -33.45, math.nan]),
        "exif_lon": np.array([math.nan, math.nan, -70.66, math.nan]),
    }
    zurich = Resolved("Switzerland", "CH", "Zurich", 47.37, 8.54, "city")
    paris = Resolved("France", "FR", "Paris", 48.86, 2.35, "city")
    a = answer_row(zurich, "m", method="vlm")
    a.update(candidates=[candidate(zurich, 0.7), candidate(paris, 0.2)])
    d = answer_row(Resolved(None, None, None, None, None, None), "m", answered=False,
                   answer_error="refused", method="vlm")  # fmt: skip
    answers = dict(enumerate(add_cells([a], 5))) | {3: add_cells([d], 5)[0]}
    table = predictions_table(rows_of(batch), answers, "m", method="vlm")
    return geoparquet_parts({"predictions": table})["predictions"]


def test_wkb_points_are_what_shapely_reads():
    wkb = wkb_points(np.array([8.54, math.nan]), np.array([47.37, 1.0]))
    point = shapely.from_wkb(wkb[0])
    assert (point.x, point.y) == (8.54, 47.37) and wkb[1] is None


def test_geoparquet_round_trip_through_geopandas(tmp_path):
    table = _table()
    pq.write_table(table, tmp_path / "part.parquet")
    frame = gpd.read_parquet(tmp_path / "part.parquet")  # no options: GeoParquet metadata
    # crs omitted = the spec's default OGC:CRS84: WGS84 (EPSG:4326's datum), longitude first.
    assert frame.geometry.name == "geometry" and frame.crs.equals("OGC:CRS84")
    assert frame.crs.ellipsoid.name == "WGS 84" and frame.crs.axis_info[0].abbrev == "Lon"
    points = dict(zip(frame["image_id"], frame.geometry, strict=True))
    assert (points["a"].x, points["a"].y) == (8.54, 47.37)
    assert (points["c"].x, points["c"].y) == (-70.66, -33.45)  # the EXIF point, kept
    assert points["b"] is None and points["d"] is None  # no point: null geometry
    geo = json.loads(pq.read_schema(tmp_path / "part.parquet").metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert geo["columns"]["geometry"]["geometry_types"] == ["Point"]
    assert geo["columns"]["geometry"]["bbox"] == [-70.66, -33.45, 8.54, 47.37]


def test_exif_row_is_placed_at_its_point_by_method_exif():
    rows = {r["image_id"]: r for r in _table().to_pylist()}
    c = rows["c"]
    assert (c["method"], c["answered"], c["lat"], c["lon"]) == ("exif", True, -33.45, -70.66)
    assert c["country_code"] == "CL" and c["country_confidence"] == 1.0 and c["h3"]
    assert (rows["a"]["method"], rows["b"]["method"]) == ("vlm", "vlm")


def test_export_geo_writes_one_feature_per_answered_row(tmp_path):
    out = tmp_path / "run"
    (out / "predictions").mkdir(parents=True)
    pq.write_table(_table(), out / "predictions" / "part-0.parquet")
    target = tmp_path / "map.geojson"
    result = json.loads(georay_ok("export-geo", "--predictions", str(out), "--output",
                                  str(target)))  # fmt: skip
    assert (result["rows"], result["features"], result["left_out"]) == (4, 2, 2)
    collection = json.loads(target.read_text())
    jsonschema.validate(collection, FEATURE_COLLECTION)
    assert len(collection["features"]) == 2
    a = next(f for f in collection["features"] if f["properties"]["image_id"] == "a")
    assert a["geometry"]["coordinates"] == [8.54, 47.37]
    assert [c["city"] for c in a["properties"]["candidates"]] == ["Zurich", "Paris"]
    frame = gpd.read_file(target)  # GDAL's GeoJSON driver reads it too
    assert len(frame) == 2 and set(frame["method"]) == {"vlm", "exif"}


# RFC 7946 FeatureCollection of Points (the parts of the GeoJSON schema this export writes).
_POSITION = {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"}}
FEATURE_COLLECTION = {
    "type": "object",
    "required": ["type", "features"],
    "properties": {
        "type": {"const": "FeatureCollection"},
        "features": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "geometry", "properties"],
                "properties": {
                    "type": {"const": "Feature"},
                    "geometry": {
                        "type": "object",
                        "required": ["type", "coordinates"],
                        "properties": {"type": {"const": "Point"}, "coordinates": _POSITION},
                    },
                    "properties": {"type": ["object", "null"]},
                },
            },
        },
    },
}
