"""georay.pipeline on a local Ray: every input kind, every bad-input kind, resumable parts."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from georay import pipeline as pl
from georay.data.manifest import write_manifest

SIDE = 32
SCHEMA = pa.schema(
    [("image_id", pa.string()), ("status", pa.string()), ("error", pa.string()), ("mean", "f4")]
)


def _jpeg(seed: int, size=(64, 48)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def bad_inputs() -> dict[str, bytes]:
    """One file per bad-input kind (name -> bytes); ``big`` exceeds max_image_pixels=10_000."""
    good = _jpeg(99)
    return {
        "zero": b"",
        "text": b"this is not an image\n",
        "truncated": good[: len(good) // 2],
        "corrupt": good[:20] + bytes(np.random.default_rng(1).integers(0, 255, 400, np.uint8)),
        "big": _jpeg(7, size=(200, 100)),
    }


def _run(src, out, **read_kwargs) -> pl.PartWriter:
    def _mean(batch: dict) -> dict:
        """A stand-in model stage (nested: Ray workers cannot import test modules)."""
        ok = pl.ok_mask(batch)
        means = np.full(len(ok), np.nan, "f4")
        means[ok] = [im.mean() for im in pl.images_of(batch, np.flatnonzero(ok))]
        return {"image_id": batch["image_id"], "status": batch["status"],
                "error": batch["error"], "mean": means}  # fmt: skip

    writer = pl.PartWriter(out, tables=("scores",)).open()
    ds = pl.read_input(str(src), done_ids=writer.done_ids(), block_rows=4, **read_kwargs).ds
    load = {"side": SIDE, "max_image_pixels": 10_000, "sha256": True}
    ds = ds.map_batches(pl.load_images, fn_kwargs=load)
    ds = ds.map_batches(_mean, batch_size=8)
    pl.stream_to_parts(ds, writer, lambda t: {"scores": pl.conform(t, SCHEMA)}, rows_per_part=5)
    return writer


@pytest.fixture
def image_dir(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        (root / ("sub" if i % 2 else "") / f"good{i}.jpg").write_bytes(_jpeg(i))
    for name, data in bad_inputs().items():
        (root / f"{name}.jpg").write_bytes(data)
    return root


def test_directory_input_marks_each_bad_kind(ray_session, image_dir, tmp_path):
    assert pl.detect_kind(str(image_dir)) == "images"
    rows = _run(image_dir, tmp_path / "out").read().to_pandas().set_index("image_id")
    assert len(rows) == 11 and rows.index.is_unique
    assert set(rows.index) >= {"sub/good1", "good0", "zero"}
    ok = rows[rows.status == "ok"]
    assert len(ok) == 6 and ok["mean"].between(60, 200).all()
    err = rows[rows.status == "error"]["error"]
    assert err["zero"].startswith("empty file")
    assert err["text"].startswith("not an image")
    assert err["big"].startswith("too many pixels")
    assert "truncated" in err["truncated"] or "corrupt" in err["truncated"]
    assert set(err.index) == set(bad_inputs())


def test_manifest_missing_file_and_resume(ray_session, image_dir, tmp_path):
    ids = ["good0", "good2", "gone"]
    uris = [str(image_dir / "good0.jpg"), str(image_dir / "good2.jpg"), str(image_dir / "no.jpg")]
    table = pa.table({"image_id": ids, "uri": uris, "lat": [1.0, 2.0, 3.0]})
    manifest = tmp_path / "m.parquet"
    write_manifest(table, str(manifest))
    out = tmp_path / "out"
    # A committed part from an earlier, killed run, plus a temp file it left behind.
    writer = pl.PartWriter(str(out)).open()
    writer.write_part({"scores": pl.conform(pa.table({"image_id": ["good0"], "status": ["ok"]}),
                                            SCHEMA)})  # fmt: skip
    (out / "scores" / ".part-x.parquet.tmp").write_bytes(b"partial")
    rows = _run(manifest, out).read().to_pandas()
    assert sorted(rows.image_id) == sorted(ids)  # good0 not redone, nothing twice
    gone = rows.set_index("image_id").loc["gone"]
    assert gone.status == "error" and gone.error.startswith("missing file")
    assert not (out / "scores" / ".part-x.parquet.tmp").exists()
    counts = pl.status_counts(pl.PartWriter(str(out)).read(["status", "error"]))
    assert (counts["rows"], counts["ok"], counts["error"]) == (3, 2, 1)


def test_uncommitted_side_parts_are_dropped(tmp_path):
    writer = pl.PartWriter(str(tmp_path), tables=("scores", "curated")).open()
    t = pl.conform(pa.table({"image_id": ["a"], "status": ["ok"]}), SCHEMA)
    writer.write_part({"scores": t, "curated": t})
    (tmp_path / "curated" / "part-orphan.parquet").write_bytes(b"x")  # driver died before commit
    again = pl.PartWriter(str(tmp_path), tables=("scores", "curated")).open()
    assert len(again.files("curated")) == 1
    assert not (tmp_path / "curated" / "part-orphan.parquet").exists()
    assert again.done_ids().to_pylist() == ["a"]


def _tar(path, samples: dict[str, dict[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_webdataset_input(ray_session, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    _tar(shards / "000.tar", {f"{i:04d}": {"jpg": _jpeg(i), "json": b"{}"} for i in range(5)})
    _tar(shards / "001.tar", {"0100": {"png": b"not png"}, "0101": {"txt": b"caption only"}})
    assert pl.detect_kind(str(shards)) == "webdataset"
    rows = _run(shards, tmp_path / "out").read().to_pandas().set_index("image_id")
    assert len(rows) == 7
    assert rows.loc[f"{shards}/000.tar#0003", "status"] == "ok"
    assert rows.loc[f"{shards}/001.tar#0100", "error"].startswith("not an image")
    assert rows.loc[f"{shards}/001.tar#0101", "error"].startswith("no image member")


def test_a_column_null_in_one_block_keeps_its_type(ray_session, image_dir, tmp_path):
    """Two numpy stages turn an all-null string column into float NaN; the skeleton restores it."""
    import pyarrow.parquet as pq

    ids = [f"good{i}" for i in range(6)]
    uris = [str(image_dir / ("sub" if i % 2 else "") / f"good{i}.jpg") for i in range(6)]
    note = [None, None, None, None, "copy of good0", None]  # null throughout the first block
    manifest = tmp_path / "m.parquet"
    write_manifest(pa.table({"image_id": ids, "uri": uris, "note": note}), str(manifest))

    def mark(batch: dict) -> dict:  # a second numpy stage, as a model stage is
        batch["mean"] = np.zeros(len(batch["image_id"]), "f4")
        return batch

    def stages(ds):
        ds = pl.load_stage(ds, cfg, side=SIDE)
        return ds.map_batches(mark, batch_format="numpy").drop_columns(["pixels"])

    schema = pa.schema([("image_id", pa.string()), ("note", pa.string()), ("status", pa.string()),
                        ("error", pa.string()), ("mean", pa.float32())])  # fmt: skip
    cfg = pl.BulkSettings(input=str(manifest), output=str(tmp_path / "out"), block_rows=4)
    job = pl.BulkJob(name="test", settings=cfg, identity={}, tables=("rows",),
                     outputs=lambda _: {"rows": schema}, stages=stages)  # fmt: skip
    assert pl.run_bulk_job(job)["rows_out"] == 6
    rows = pq.read_table(tmp_path / "out" / "rows").to_pydict()
    assert sorted(n for n in rows["note"] if n) == ["copy of good0"]
    assert rows["note"].count(None) == 5


def test_a_job_that_loses_rows_fails_and_says_why(ray_session, image_dir, tmp_path):
    """Rows out != rows in (here a stage that drops a row) fails the job: summary.json says why."""
    import json

    from georay.errors import JobFailed

    def stages(ds):
        ds = pl.load_stage(ds, cfg, side=SIDE).drop_columns(["pixels"])
        return ds.filter(lambda row: row["image_id"] != "good0")

    schema = pa.schema([("image_id", pa.string()), ("status", pa.string()),
                        ("error", pa.string())])  # fmt: skip
    cfg = pl.BulkSettings(input=str(image_dir), output=str(tmp_path / "out"), block_rows=4)
    job = pl.BulkJob(name="test", settings=cfg, identity={}, tables=("rows",),
                     outputs=lambda _: {"rows": schema}, stages=stages)  # fmt: skip
    with pytest.raises(JobFailed, match="11 input rows but 10 output rows"):
        pl.run_bulk_job(job)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["failed"].startswith("11 input rows but 10 output rows")
    assert summary["rows_in"] == 11 and summary["rows_out"] == 10
