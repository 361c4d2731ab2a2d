"""Benchmark tables as published are recognised by their columns and read as georay manifests.

The headers are written from the published column lists: OSV-5M's ``test.csv`` (the dataset
card of OpenStreetView-5M), GeoEstimation's ``im2gps3k_places365.csv`` (TIBHannover/
GeoEstimation ``meta/``; MP-16's ``mp16_places365.csv`` has the same header) and YFCC4k's
``IMG_ID, LAT, LON``.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import IM2GPS3K_COLUMNS, OSV5M_COLUMNS, im2gps3k_row, osv5m_row

from georay.data.layouts import (
    LAYOUTS,
    detect_layout,
    parse_mapping,
    read_images_table,
    read_layout,
)
from georay.errors import UserError


def test_osv5m_test_csv(tmp_path):
    (tmp_path / "images" / "test").mkdir(parents=True)
    rows = [osv5m_row("385719827364512", -22.56, 17.08, "NA", "Windhoek"),
            osv5m_row("122", 48.85, 2.35, "FR", "")]  # fmt: skip
    (tmp_path / "test.csv").write_text(OSV5M_COLUMNS + "\n" + "\n".join(rows) + "\n")
    table, detected = read_images_table(str(tmp_path / "test.csv"))
    assert detected.layout.name == "osv5m"
    assert detected.source == {"image_id": "id", "lat": "latitude", "lon": "longitude",
                               "country": "country", "city": "city"}  # fmt: skip
    got = table.select(["image_id", "uri", "lat", "lon", "country", "city"]).to_pylist()
    root = tmp_path / "images" / "test"
    assert got == [
        # A long integer id stays exact text; "NA" is Namibia, not a missing value.
        {"image_id": "385719827364512", "uri": f"{root}/385719827364512.jpg", "lat": -22.56,
         "lon": 17.08, "country": "NA", "city": "Windhoek"},
        {"image_id": "122", "uri": f"{root}/122.jpg", "lat": 48.85, "lon": 2.35,
         "country": "FR", "city": None},  # an empty city is unknown
    ]  # fmt: skip
    assert "sub-region" in table.column_names  # other columns are carried untouched
    assert detected.record()["image_root"] == str(root)


def test_im2gps3k_csv_and_image_root(tmp_path):
    rows = [im2gps3k_row("96244034_3a0ee0b8e8_48_42134048@N00.jpg", 40.7, -74.0),
            im2gps3k_row("nested/2305386563.jpg", 35.68, 139.65)]  # fmt: skip
    csv = tmp_path / "im2gps3k_places365.csv"
    csv.write_text(IM2GPS3K_COLUMNS + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(UserError, match="no image folder at .*--image-root"):
        read_images_table(str(csv))
    photos = tmp_path / "im2gps3ktest"
    photos.mkdir()
    table, detected = read_images_table(str(csv), image_root=str(photos))
    assert detected.layout.name == "im2gps"
    assert table["image_id"].to_pylist() == ["96244034_3a0ee0b8e8_48_42134048@N00",
                                             "nested/2305386563"]  # fmt: skip
    assert table["uri"].to_pylist() == [f"{photos}/96244034_3a0ee0b8e8_48_42134048@N00.jpg",
                                        f"{photos}/nested/2305386563.jpg"]  # fmt: skip
    assert table["country"].null_count == 2  # coordinates only


@pytest.mark.parametrize(
    "header, layout",
    [
        ("image_id,uri,lat,lon", "georay"),
        (OSV5M_COLUMNS, "osv5m"),
        (IM2GPS3K_COLUMNS, "im2gps"),
        ("IMG_ID,AUTHOR,LAT,LON,S3_Label,S16_Label,S365_Label,Prob_indoor,Prob_natural,"
         "Prob_urban", "im2gps"),  # MP-16 (mp16_places365.csv)
        ("IMG_ID,LAT,LON", "yfcc"),
        ("img_id,lat,lon", "yfcc"),  # lower-cased copies match too
    ],
)  # fmt: skip
def test_detect_by_columns(header, layout):
    assert detect_layout(header.split(",")).layout.name == layout


def test_unknown_layout_names_found_columns_and_known_layouts(tmp_path):
    (tmp_path / "t.csv").write_text("photo,y,x\na.jpg,1,2\n")
    with pytest.raises(UserError) as err:
        read_layout(str(tmp_path / "t.csv"), flag="--truth-columns")
    message = str(err.value)
    assert "['photo', 'y', 'x']" in message
    for layout in LAYOUTS:
        assert layout.name in message and ", ".join(layout.required) in message
    assert "--truth-columns id=COL,lat=COL,lon=COL" in message
    table, detected = read_layout(str(tmp_path / "t.csv"), columns="id=photo,lat=y,lon=x")
    assert detected.layout.name == "custom"
    assert table.select(["image_id", "lat", "lon"]).to_pylist() == [
        {"image_id": "a", "lat": 1.0, "lon": 2.0}
    ]


def test_mapping_errors():
    with pytest.raises(UserError, match="ROLE=COLUMN"):
        parse_mapping("id=a,latitude=b", "--truth-columns")
    with pytest.raises(UserError, match="name the id column"):
        parse_mapping("lat=a,lon=b", "--truth-columns")
    with pytest.raises(UserError, match=r"names column\(s\) \['nope'\]"):
        detect_layout(["a", "b"], "id=a,lat=nope", flag="--truth-columns")


def test_country_names_and_codes(tmp_path):
    table = pa.table({"IMG_ID": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"],
                      "LAT": [1.0] * 5, "LON": [2.0] * 5,
                      "country": ["France", "de", "Côte d'Ivoire", "Atlantis", None]})  # fmt: skip
    pq.write_table(table, tmp_path / "t.parquet")
    out, detected = read_layout(str(tmp_path / "t.parquet"))
    assert out["country"].to_pylist() == ["FR", "DE", "CI", None, None]
    assert detected.notes["country_from_names"] == 2  # "de" is a code in lower case
    assert detected.notes["country_unresolved"] == 1
    assert detected.notes["country_unresolved_examples"] == ["Atlantis"]


def test_georay_manifest_is_read_as_before(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "m.csv").write_text("image_id,uri,country\n7,images/7.jpg,ch\n")
    table, detected = read_images_table(str(tmp_path / "m.csv"))
    assert detected.layout.name == "georay"
    assert table.select(["image_id", "uri", "country"]).to_pylist() == [
        {"image_id": "7", "uri": f"{tmp_path}/images/7.jpg", "country": "CH"}
    ]
