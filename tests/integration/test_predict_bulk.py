"""The bulk job on a tiny world with corrupt files: exactly-once rows, EXIF GPS, resume, S3."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from georay.data.images import encode_jpeg
from georay.predict.bulk import PredictConfig, predict
from georay.predict.rows import SKIPPED_EXIF
from georay.protocol.predictions import PREDICTIONS_SCHEMA

GOOD = 7
# name -> the start of the error reason its row must carry
CORRUPT = {"zero": "empty file", "text": "not an image", "truncated": "unreadable image header"}


def _world(root: Path) -> tuple[Path, dict[str, bytes]]:
    """Images (varied sizes), one with EXIF GPS, corrupt files, and a manifest with a missing
    file too. Returns (manifest path, image_id -> bytes of the good images)."""
    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    good = {}
    for i in range(GOOD):
        shape = [(120, 160), (90, 90), (200, 100)][i % 3]
        good[f"img{i}"] = encode_jpeg(rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (47.0, 22.0, 12.0), 3: "E", 4: (8.0, 32.0, 0.0)}
    pil = Image.fromarray(rng.integers(0, 255, (100, 140, 3), dtype=np.uint8))
    pil.save(images / "gps.jpg", exif=exif)
    good["gps"] = (images / "gps.jpg").read_bytes()
    for name, data in good.items():
        (images / f"{name}.jpg").write_bytes(data)
    (images / "zero.jpg").write_bytes(b"")
    (images / "text.jpg").write_bytes(b"hello, not a jpeg")
    (images / "truncated.jpg").write_bytes(good["img0"][:300])
    ids = [*good, *CORRUPT, "missing"]
    uris = [str(images / f"{i}.jpg") for i in ids]
    manifest = root / "manifest.parquet"
    pq.write_table(pa.table({"image_id": ids, "uri": uris}), manifest)
    return manifest, good


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    from georay.models.vlm import tiny_qwen2vl

    path = tmp_path_factory.mktemp("tiny")
    tiny_qwen2vl(save_dir=path)
    return str(path)


def _config(tiny_model, **kw) -> PredictConfig:
    from georay.models.vlm import TINY_MAX_PIXELS

    # Decode at the model's size so the job sees the same pixels as Predictor.load_image.
    return PredictConfig(
        model=tiny_model, max_new_tokens=8, batch_size=4, max_pixels=TINY_MAX_PIXELS, **kw
    )


def _read(out) -> pa.Table:
    return pq.read_table(Path(out) / "predictions")


def test_manifest_job_exactly_once_then_resume(ray_session, tmp_path, tiny_model):
    manifest, good = _world(tmp_path / "world")
    out = tmp_path / "out"
    cfg = _config(tiny_model, input=str(manifest), output=str(out), skip_exif_gps=True,
                  block_rows=4, rows_per_part=3)  # fmt: skip
    summary = predict(cfg)
    total = len(good) + len(CORRUPT) + 1
    assert (summary["rows_out"], summary["ok"], summary["error"]) == (total, len(good), 4)
    assert summary["rows_this_run"] == total and summary["skipped_exif"] == 1
    assert json.loads((out / "summary.json").read_text())["rows_out"] == total

    table = _read(out)
    assert table.schema.names == PREDICTIONS_SCHEMA.names
    # GeoParquet: geopandas opens the job's output as points, no options.
    frame = __import__("geopandas").read_parquet(out / "predictions")
    placed = frame[frame["answered"]]
    assert len(frame) == total and (placed.geometry.y == placed["lat"]).all()
    rows = {r["image_id"]: r for r in table.to_pylist()}
    assert len(rows) == table.num_rows == total
    for name, reason in CORRUPT.items():
        assert rows[name]["status"] == "error" and rows[name]["error"].startswith(reason)
        assert rows[name]["answered"] is False
    assert rows["missing"]["error"].startswith("missing file")
    gps = rows["gps"]
    assert (round(gps["exif_lat"], 2), round(gps["exif_lon"], 2)) == (47.37, 8.53)
    # Not asked: placed at its own EXIF point (method exif), and a GeoParquet point there.
    assert gps["status"] == "ok" and gps["method"] == "exif" and gps["answered"]
    assert (gps["lat"], gps["lon"]) == (gps["exif_lat"], gps["exif_lon"])
    assert gps["raw_text"] is None and gps["answer_error"] != SKIPPED_EXIF
    assert {r["method"] for n, r in rows.items() if n != "gps"} == {"vlm"}
    for name in good:
        if name != "gps":
            assert rows[name]["status"] == "ok" and rows[name]["error"] is None
            assert isinstance(rows[name]["raw_text"], str) and rows[name]["exif_lat"] is None

    # The job's answers are the Predictor's answers for the same bytes.
    from georay.predict.config import ModelSettings
    from georay.predict.predictor import Predictor

    direct = Predictor(ModelSettings.of(vars(cfg)))
    sample = ["img0", "img1", "img2"]
    texts = [r["raw_text"] for r in direct.predict_bytes([good[n] for n in sample])]
    assert texts == [rows[n]["raw_text"] for n in sample]

    # Resume: a run killed before committing two parts (and leaving a temp file) is rerun.
    parts = sorted((out / "predictions").glob("part-*.parquet"))
    assert len(parts) == total // 4  # one part per block of 4 rows
    lost = pq.read_table(parts[0]).num_rows + pq.read_table(parts[-1]).num_rows
    parts[0].unlink()
    parts[-1].unlink()
    (out / "predictions" / ".part-stale.parquet.tmp").write_bytes(b"half written")
    again = predict(cfg)
    assert again["rows_this_run"] == lost
    assert (again["rows_out"], again["ok"], again["error"]) == (total, len(good), 4)
    after = _read(out)
    assert sorted(after["image_id"].to_pylist()) == sorted(rows)
    assert not list((out / "predictions").glob(".*"))
    # A third run finds nothing left to do.
    assert predict(cfg)["rows_this_run"] == 0


def test_s3_folder_input_and_output(ray_session, tmp_path, tiny_model, s3_bucket):
    import boto3

    _, good = _world(tmp_path / "world")
    s3 = boto3.client("s3")
    for name, data in good.items():
        s3.put_object(Bucket=s3_bucket, Key=f"photos/{name}.jpg", Body=data)
    s3.put_object(Bucket=s3_bucket, Key="photos/broken.jpg", Body=b"\xff\xd8\xff\xe0 broken")
    out = f"s3://{s3_bucket}/runs/predict"
    summary = predict(_config(tiny_model, input=f"s3://{s3_bucket}/photos", output=out))
    assert (summary["rows_out"], summary["ok"], summary["error"]) == (len(good) + 1, len(good), 1)
    assert summary["skipped_exif"] == 0
    body = s3.get_object(Bucket=s3_bucket, Key="runs/predict/summary.json")["Body"].read()
    assert json.loads(body)["rows_out"] == len(good) + 1
    from georay.pipeline import PartWriter

    table = PartWriter(out, tables=("predictions",)).read()
    rows = {r["image_id"]: r for r in table.to_pylist()}
    assert set(rows) == {*good, "broken"}
    assert rows["gps"]["exif_lat"] is not None and isinstance(rows["gps"]["raw_text"], str)
    assert rows["img0"]["uri"] == f"s3://{s3_bucket}/photos/img0.jpg"


def test_output_of_another_model_or_input_is_refused(ray_session, tmp_path, tiny_model):
    from georay.cli import main
    from georay.errors import UserError
    from georay.models.vlm import tiny_qwen2vl

    manifest, good = _world(tmp_path / "world")
    out = tmp_path / "out"
    first = predict(_config(tiny_model, input=str(manifest), output=str(out)))
    before = sorted(_read(out)["image_id"].to_pylist())
    other = tmp_path / "other-model"
    tiny_qwen2vl(save_dir=other, seed=1)
    with pytest.raises(UserError) as refused:
        predict(_config(str(other), input=str(manifest), output=str(out)))
    assert f"model={tiny_model!r}" in str(refused.value) and str(other) in str(refused.value)
    with pytest.raises(UserError, match="input="):
        predict(_config(tiny_model, input=str(tmp_path / "world" / "images"), output=str(out)))
    # The same mistake at the command line: one error line naming both models, status 2.
    argv = ["predict", "--input", str(manifest), "--model", str(other), "--output", str(out)]
    assert main(argv) == 2
    assert sorted(_read(out)["image_id"].to_pylist()) == before  # nothing was written
    assert first["rows_out"] == len(before)


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_phone_archive_folder(ray_session, tmp_path, tiny_model):
    """A folder as copied off phones and cameras: one row per image (HEIC, AVIF, WebP, DNG),
    its EXIF GPS, the photo turned upright; the clutter counted, not rowed; an unreadable RAW
    kind named."""
    from support import ARCHIVE, phone_archive

    from georay.data.images import decode_image
    from georay.predict.config import ModelSettings
    from georay.predict.predictor import Predictor

    archive = phone_archive(tmp_path / "archive")
    cfg = _config(tiny_model, input=str(archive), output=str(tmp_path / "out"))
    summary = predict(cfg)
    images = {k.rsplit(".", 1)[0]: v for k, v in ARCHIVE.items() if v is not None}
    assert (summary["rows_out"], summary["ok"], summary["error"]) == (len(images), 6, 1)
    assert summary["skipped_files"] == 4
    assert sum(summary["input_layout"]["skipped_reasons"].values()) == 4
    rows = {r["image_id"]: r for r in _read(tmp_path / "out").to_pylist()}
    assert set(rows) == set(images)
    direct = Predictor(ModelSettings.of(vars(cfg)))
    turned = 0
    for image_id, (fmt, gps, _) in images.items():
        row = rows[image_id]
        if fmt == "X3F":
            assert row["error"].startswith("RAW format X3F not supported"), row
            continue
        assert row["status"] == "ok", row
        got = (row["exif_lat"], row["exif_lon"])
        assert got == pytest.approx(gps, abs=1e-4) if gps else got == (None, None)
        if fmt in ("HEIF", "AVIF", "WEBP"):  # decoded without JPEG draft: the same pixels
            data = (archive / next(k for k in ARCHIVE if k.startswith(image_id + "."))).read_bytes()
            upright = decode_image(data)
            want, sideways = (r["raw_text"] for r in direct.predict_bytes(
                [_png(upright), _png(np.rot90(upright, 1))]))  # fmt: skip
            assert row["raw_text"] == want, image_id  # the model saw the upright photo
            turned += want != sideways
    assert turned, "the model's answers do not depend on the orientation: the check is void"
