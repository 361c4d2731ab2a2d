"""``georay synth --exif-share``: a partly geotagged archive, with real EXIF GPS bytes that
``georay inspect`` (and every job's EXIF reader) reads back (issue 21)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import georay_ok

from georay.data.images import decode_image
from georay.synth.config import SynthConfig

SMALL = ["--n", "20", "--countries", "2", "--width", "64", "--height", "48", "--workers", "1"]


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("exif")
    georay_ok("synth", "--output", str(root / "tagged"), "--exif-share", "0.3", "--duplicates",
              "4", "--corrupt", "1", *SMALL)  # fmt: skip
    georay_ok("synth", "--output", str(root / "plain"), "--duplicates", "4", "--corrupt", "1",
              *SMALL)  # fmt: skip
    return root / "tagged", root / "plain"


def test_the_share_of_views_carries_the_gps_of_where_it_was_taken(worlds):
    tagged, _ = worlds
    manifest = pq.read_table(tagged / "manifest.parquet").to_pylist()
    drawn = [r for r in manifest if r["view"] in ("street", "low_locatability")]
    assert sum(r["exif_gps"] for r in drawn) == 6  # round(0.3 * 20)
    images = [str(tagged / r["uri"]) for r in manifest]
    found = [json.loads(line) for line in georay_ok("inspect", *images).splitlines()]
    for row, info in zip(manifest, found, strict=True):
        if row["exif_gps"]:
            assert abs(info["lat"] - row["lat"]) < 1e-6 and abs(info["lon"] - row["lon"]) < 1e-6
        elif "error" not in info and info.get("format"):
            assert info["lat"] is None and info["lon"] is None, row["image_id"]


def test_tagging_leaves_the_pixels_and_the_other_files_alone(worlds):
    tagged, plain = worlds
    manifest = pq.read_table(tagged / "manifest.parquet")
    assert manifest.drop_columns(["exif_gps"]).equals(pq.read_table(plain / "manifest.parquet"))
    for row in manifest.to_pylist():
        if row["exif_gps"]:
            a = decode_image((tagged / row["uri"]).read_bytes())
            b = decode_image((plain / row["uri"]).read_bytes())
            assert np.array_equal(a, b)
    # No tagging asked: no column, the world's bytes as before (its manifest has no exif_gps).
    assert "exif_gps" not in pq.read_schema(plain / "manifest.parquet").names


def test_exif_share_is_a_share():
    with pytest.raises(ValueError, match="exif_share must be in"):
        SynthConfig(output="w", exif_share=1.5)
