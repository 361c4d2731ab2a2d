"""A folder of Parquet parts (what every stage writes) reads as one manifest."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from georay.data.manifest import ManifestError, read_manifest


def test_folder_of_parquet_parts_reads_as_one_manifest(tmp_path):
    parts = tmp_path / "curated"
    parts.mkdir()
    for i in range(3):
        rows = {"image_id": [f"a{i}", f"b{i}"], "uri": [f"/x/a{i}.jpg", f"/x/b{i}.jpg"]}
        pq.write_table(pa.table(rows), parts / f"part-{i}.parquet")
    table = read_manifest(str(parts))
    assert sorted(table["image_id"].to_pylist()) == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_folder_parts_are_validated_together(tmp_path):
    parts = tmp_path / "scores"
    parts.mkdir()
    for i in range(2):  # the same image_id in two parts is a duplicate
        pq.write_table(
            pa.table({"image_id": ["same"], "uri": [f"/x/{i}.jpg"]}), parts / f"p{i}.parquet"
        )
    with pytest.raises(ManifestError, match="duplicate"):
        read_manifest(str(parts))
