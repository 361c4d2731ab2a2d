"""Manifest validation errors and format round trips (local files)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from georay.data.manifest import ManifestError, read_manifest, validate_manifest, write_manifest
from georay.data.storage import list_files, read_bytes, write_bytes


def _table(**overrides) -> pa.Table:
    cols = {
        "image_id": ["a", "b", "c"],
        "uri": ["/x/a.jpg", "/x/b.jpg", "/x/c.jpg"],
        "lat": [47.37, -33.45, None],
        "lon": [8.54, -70.67, None],
        "country": ["CH", "cl", None],
        "city": ["Zurich", "Santiago", None],
        "source": ["t", "t", "t"],
    }
    cols.update(overrides)
    return pa.table({k: v for k, v in cols.items() if v is not None})


def test_valid_manifest_is_normalised():
    table = validate_manifest(_table())
    assert table.column("country").to_pylist() == ["CH", "CL", None]
    assert table.schema.field("lat").type == pa.float64()


def test_optional_columns_are_added_and_ids_become_strings():
    table = validate_manifest(pa.table({"image_id": [1, 2], "uri": ["a.jpg", "b.jpg"]}))
    assert table.column("image_id").to_pylist() == ["1", "2"]
    assert table.column("lat").null_count == 2 and "source" in table.column_names


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"uri": None}, "missing required column(s) ['uri']"),
        (
            {"lat": [47.0, 91.0, None]},
            "column 'lat': 1 value(s) outside [-90, 90]: row 1 (image_id='b')",
        ),
        (
            {"lon": [-181.0, 0.0, 0.0]},
            "column 'lon': 1 value(s) outside [-180, 180]: row 0 (image_id='a')",
        ),
        (
            {"image_id": ["a", "b", "a"]},
            "column 'image_id': 1 duplicated id(s): row 0 (image_id='a')",
        ),
        ({"country": ["CH", "Chile", None]}, "column 'country': 1 value(s) not an ISO"),
        ({"uri": ["a", None, "c"]}, "column 'uri': 1 null value(s) at rows [1]"),
    ],
)
def test_validation_errors_name_column_and_rows(overrides, needle):
    with pytest.raises(ManifestError) as info:
        validate_manifest(_table(**overrides))
    assert needle in str(info.value)


def test_many_offenders_are_summarised():
    n = 20
    table = pa.table(
        {"image_id": [f"i{k}" for k in range(n)], "uri": ["u"] * n, "lat": [100.0] * n}
    )
    with pytest.raises(ManifestError, match=r"\(20 in all\)"):
        validate_manifest(table)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl", ".csv.gz"])
def test_round_trip(tmp_path, suffix):
    uri = str(tmp_path / f"m{suffix}")
    write_manifest(_table(), uri)
    back = read_manifest(uri)
    expected = validate_manifest(_table())
    assert back.select(expected.column_names).to_pylist() == expected.to_pylist()


def test_relative_uris_resolve_against_manifest_folder(tmp_path):
    uri = str(tmp_path / "sub" / "m.parquet")
    write_manifest(_table(uri=["images/a.jpg", "/abs/b.jpg", "s3://bk/c.jpg"]), uri)
    got = read_manifest(uri).column("uri").to_pylist()
    assert got == [str(tmp_path / "sub" / "images" / "a.jpg"), "/abs/b.jpg", "s3://bk/c.jpg"]
    assert read_manifest(uri, resolve_uris=False).column("uri")[0].as_py() == "images/a.jpg"


def test_parquet_write_is_deterministic(tmp_path):
    write_manifest(_table(), str(tmp_path / "a.parquet"))
    write_manifest(_table(), str(tmp_path / "b.parquet"))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_bad_inputs(tmp_path):
    with pytest.raises(ManifestError, match="unknown manifest format"):
        read_manifest(str(tmp_path / "m.txt"))
    with pytest.raises(FileNotFoundError):
        read_manifest(str(tmp_path / "missing.parquet"))
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ManifestError, match="cannot parse"):
        read_manifest(str(tmp_path / "bad.jsonl"))
    with pytest.raises(ManifestError, match="CSV cannot hold"):
        write_manifest(_table().append_column("v", pa.array([[1.0]] * 3)), str(tmp_path / "m.csv"))


def test_local_storage(tmp_path):
    write_bytes(str(tmp_path / "d" / "x.JPG"), b"1")
    write_bytes(str(tmp_path / "d" / "e" / "y.png"), b"22")
    write_bytes(str(tmp_path / "d" / "z.txt"), b"3")
    files = list_files(str(tmp_path / "d"), (".jpg", ".png"))
    assert files == [str(tmp_path / "d" / "e" / "y.png"), str(tmp_path / "d" / "x.JPG")]
    assert read_bytes(f"file://{tmp_path}/d/e/y.png") == b"22"


def test_minimal_csv_keeps_ids_as_strings(tmp_path):
    (tmp_path / "m.csv").write_text("image_id,uri\n001,a.jpg\n002,s3://b/c.jpg\n")
    table = read_manifest(str(tmp_path / "m.csv"))
    assert table.column("image_id").to_pylist() == ["001", "002"]
    assert table.column("lat").null_count == 2
