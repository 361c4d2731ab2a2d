"""Storage and manifests on S3 (a moto server on loopback, reached via AWS_ENDPOINT_URL)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from georay.data.exif import inspect_image
from georay.data.images import decode_image
from georay.data.manifest import read_manifest, write_manifest
from georay.data.storage import list_files, read_bytes, write_bytes


def test_bytes_round_trip_and_listing(s3_bucket):
    write_bytes(f"s3://{s3_bucket}/imgs/a.jpg", b"abc")
    write_bytes(f"s3://{s3_bucket}/imgs/sub/b.PNG", b"de")
    write_bytes(f"s3://{s3_bucket}/imgs/notes.txt", b"x")
    assert read_bytes(f"s3://{s3_bucket}/imgs/a.jpg") == b"abc"
    assert list_files(f"s3://{s3_bucket}/imgs", (".jpg", ".png")) == [
        f"s3://{s3_bucket}/imgs/a.jpg",
        f"s3://{s3_bucket}/imgs/sub/b.PNG",
    ]
    with pytest.raises(FileNotFoundError):
        read_bytes(f"s3://{s3_bucket}/imgs/missing.jpg")


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_manifest_round_trip(s3_bucket, suffix):
    table = pa.table(
        {
            "image_id": ["a", "b"],
            "uri": ["images/a.jpg", "s3://other/b.jpg"],
            "lat": [1.5, None],
            "lon": [2.5, None],
            "country": ["FR", None],
        }
    )
    uri = f"s3://{s3_bucket}/w/manifest{suffix}"
    write_manifest(table, uri)
    back = read_manifest(uri)
    assert back.column("uri").to_pylist() == [
        f"s3://{s3_bucket}/w/images/a.jpg",
        "s3://other/b.jpg",
    ]
    assert back.column("lat").to_pylist() == [1.5, None]


def test_photo_on_s3_decodes_and_inspects(s3_bucket, shared_data):
    data = (shared_data / "photos" / "npm-exif_test1.jpg").read_bytes()
    uri = f"s3://{s3_bucket}/p/npm-exif_test1.jpg"
    write_bytes(uri, data)
    assert decode_image(read_bytes(uri), (32, 24)).shape == (24, 32, 3)
    assert inspect_image(uri)["lon"] == pytest.approx(-122.6225, abs=1e-4)


def test_synth_world_on_s3(s3_bucket):
    from georay.synth.world import SynthConfig, generate_world

    out = f"s3://{s3_bucket}/world"
    generate_world(SynthConfig(output=out, n=4, countries=2, seed=3, corrupt=1, workers=1))
    table = read_manifest(f"{out}/manifest.parquet")
    assert table.num_rows == 5
    first = table.column("uri")[0].as_py()
    assert first.startswith(f"s3://{s3_bucket}/world/images/")
    assert decode_image(read_bytes(first)).shape == (480, 640, 3)
    assert len(read_bytes(f"{out}/clues.jsonl").splitlines()) == 4


def test_export_command_writes_the_merged_checkpoint_to_s3(s3_bucket, tmp_path):
    """`georay export --output s3://...`: exported locally, uploaded, paths rewritten to S3."""
    import json

    import boto3
    from support import georay_ok, two_stage_artifact_at

    art = two_stage_artifact_at(tmp_path, "Which country and city is the image located?")
    out = f"s3://{s3_bucket}/models/merged"
    info = json.loads(georay_ok("export", "--model", str(art), "--output", out, "--lora-adapter"))
    assert (info["merged"], info["base"], info["adapter"]) == (out, f"{out}/base",
                                                               f"{out}/adapter")  # fmt: skip
    listed = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="models/merged/")
    keys = {o["Key"].removeprefix("models/merged/") for o in listed["Contents"]}
    assert {"config.json", "georay.json", "base/georay.json", "adapter/georay.json"} <= keys
    record = json.loads(read_bytes(f"{out}/georay.json"))
    assert [s["stage"] for s in record["stages"]] == ["reasoning", "location"]
