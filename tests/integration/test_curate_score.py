"""curate fit + score on a local Ray: inputs, bad inputs, actor and driver failures, S3."""

from __future__ import annotations

import gc
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from georay.curate import FitConfig, ScoreConfig, fit, score
from georay.data.ade20k import class_id
from georay.data.manifest import read_manifest, write_manifest

W, H = 96, 72
CLASSES = ["sky", "road", "building", "tree", "signboard"]
COLOURS = {"sky": (135, 190, 235), "road": (90, 90, 90), "building": (180, 120, 90),
           "tree": (40, 140, 50), "signboard": (230, 200, 30)}  # fmt: skip


def make_world(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` street-like views with exact ADE20K fractions; returns the manifest path."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        lab = np.full((H, W), class_id("sky"))
        horizon = int(H * rng.uniform(0.2, 0.8))
        lab[horizon:] = class_id("road")
        for _ in range(rng.integers(0, 4)):
            x0, bw = rng.integers(0, W - 10), rng.integers(8, 40)
            lab[rng.integers(0, horizon) : horizon, x0 : x0 + bw] = class_id(
                rng.choice(["building", "tree", "signboard"])
            )
        palette = np.zeros((150, 3), np.uint8)
        for name, rgb in COLOURS.items():
            palette[class_id(name)] = rgb
        image_id = f"v{i:04d}"
        Image.fromarray(palette[lab]).save(root / "images" / f"{image_id}.jpg", quality=90)
        fractions = np.bincount(lab.ravel(), minlength=150) / lab.size
        rows.append({"image_id": image_id, "uri": f"images/{image_id}.jpg", "lat": i / 10,
                     "lon": 2.0, "ade20k_fractions": fractions.astype(np.float32).tolist()})  # fmt: skip
    table = pa.Table.from_pylist(rows)
    manifest = root / "manifest.parquet"
    write_manifest(table.cast(table.schema.set(4, pa.field("ade20k_fractions",
                                                           pa.list_(pa.float32())))), str(manifest))  # fmt: skip
    return manifest


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), 120)


@pytest.fixture(scope="module")
def head(ray_session, world, tmp_path_factory):
    out = tmp_path_factory.mktemp("head")
    info = fit(FitConfig(input=str(world), output=str(out), sample=120, batch_size=32))
    return out, info


def _scores(out) -> pa.Table:
    return pq.read_table(Path(out) / "scores")


def test_fit_records_encoder_threshold_and_quality(head):
    out, info = head
    saved = json.loads((out / "head.json").read_text())
    assert saved["encoder"]["id"] == "open_clip:tiny:random"
    assert saved["embedding_dim"] == 256 and saved["threshold"] == 0.4
    assert (out / "encoder.pt").exists()
    # Small-scale quality check (the 1,000-view figure is in BENCHMARKS.md).
    assert saved["metrics"]["holdout"]["spearman"] >= 0.6, saved["metrics"]


def test_score_manifest_with_bad_rows(ray_session, world, head, tmp_path):
    root = world.parent
    bad = {
        "zero": b"",
        "text": b"plain text",
        "trunc": (root / "images/v0000.jpg").read_bytes()[:300],
    }
    for name, data in bad.items():
        (root / f"{name}.jpg").write_bytes(data)
    Image.new("RGB", (400, 300)).save(root / "big.jpg")
    ids = ["v0001", "v0002", *bad, "big", "gone"]
    table = pa.table({"image_id": ids, "uri": [str(root / f"images/{i}.jpg") for i in ids[:2]]
                      + [str(root / f"{i}.jpg") for i in ids[2:]]})  # fmt: skip
    manifest = tmp_path / "m.csv"
    write_manifest(table, str(manifest))
    cfg = ScoreConfig(input=str(manifest), head=str(head[0]), output=str(tmp_path / "o"),
                      max_image_pixels=100_000, sha256=True, phash=True, embeddings=True)  # fmt: skip
    summary = score(cfg)
    assert summary["rows_in"] == 7 == summary["ok"] + summary["error"]
    assert summary["ok"] == 2
    rows = _scores(tmp_path / "o").to_pandas().set_index("image_id")
    assert rows.loc["zero", "error"].startswith("empty file")
    assert rows.loc["text", "error"].startswith("not an image")
    assert rows.loc["big", "error"].startswith("too many pixels")
    assert rows.loc["gone", "error"].startswith("missing file")
    assert "truncated" in rows.loc["trunc", "error"].lower()
    assert rows.loc[["v0001", "v0002"], "locatability"].between(0, 1).all()
    assert rows.loc[rows.status == "error", "locatability"].isna().all()
    assert len(rows.loc["v0001", "sha256"]) == 64
    assert (
        len(rows.loc["v0001", "phash"]) == 16
        and rows.loc["v0001", "phash"] != rows.loc["v0002", "phash"]
    )
    assert rows.loc[rows.status == "error", "phash"].isna().all()
    emb = pq.read_table(tmp_path / "o" / "embeddings")
    assert sorted(emb["image_id"].to_pylist()) == ["v0001", "v0002"]
    assert emb.schema.field("embedding").type.list_size == 256
    saved = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert saved["kept"] == len(pq.read_table(tmp_path / "o" / "curated"))
    assert sum(saved["histogram"]["counts"]) == 2


def test_rows_out_not_rows_in_fails_the_command(ray_session, world, head, tmp_path, capsys):
    """A resumed run whose input lost rows since the first one: the output holds rows that are
    not in the input, so the job fails (one error line, exit 1) and summary.json says why."""
    from georay.cli import main

    table = read_manifest(str(world)).slice(0, 6).select(["image_id", "uri"])
    uris = [str(world.parent / u) for u in table["uri"].to_pylist()]
    table = table.set_column(1, "uri", pa.array(uris))
    manifest, out = tmp_path / "m.parquet", tmp_path / "o"
    write_manifest(table, str(manifest))
    args = ["curate", "score", "--input", str(manifest), "--head", str(head[0]),
            "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    write_manifest(table.slice(0, 4), str(manifest))
    capsys.readouterr()
    assert main(args) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error:" in line]
    assert len(errors) == 1
    assert errors[0].startswith("georay curate score: error: 4 input rows but 6 output rows")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"].startswith("4 input rows but 6 output rows")
    assert summary["rows_in"] == 4 and summary["rows_out"] == 6


def test_decode_in_the_actor_gives_the_same_rows(ray_session, world, head, tmp_path):
    """--decode actor moves fetch and decode into the encoder actors: same rows, same scores;
    and the summary says where the time went."""
    common = {"input": str(world), "head": str(head[0]), "sha256": True}
    tasks = score(ScoreConfig(output=str(tmp_path / "t"), decode="tasks", **common))
    actor = score(ScoreConfig(output=str(tmp_path / "a"), decode="actor", **common))
    assert [k for k in tasks["stages"] if "load_images" in k]
    assert not [k for k in actor["stages"] if "load_images" in k]
    assert next(v for k, v in actor["stages"].items() if "Embedder" in k)["rows"] == 120
    a = _scores(tmp_path / "t").sort_by("image_id").to_pandas()
    b = _scores(tmp_path / "a").sort_by("image_id").to_pandas()
    assert (a.image_id == b.image_id).all() and (a.sha256 == b.sha256).all()
    assert np.allclose(a.locatability, b.locatability, atol=1e-5)


def test_score_directory_and_webdataset(ray_session, world, head, tmp_path):
    images = world.parent / "images"
    summary = score(ScoreConfig(input=str(images), head=str(head[0]), output=str(tmp_path / "d")))
    assert summary["rows_in"] == summary["ok"] == 120
    rows = _scores(tmp_path / "d")
    assert rows["image_id"].to_pylist()[:1] != [] and "v0000" in rows["image_id"].to_pylist()
    tar = tmp_path / "shard-000.tar"
    with tarfile.open(tar, "w") as t:
        for i in range(10):
            data = (images / f"v{i:04d}.jpg").read_bytes()
            info = tarfile.TarInfo(f"k{i:03d}.jpg")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    summary = score(ScoreConfig(input=str(tar), head=str(head[0]), output=str(tmp_path / "w")))
    assert summary["rows_in"] == summary["ok"] == 10
    ids = _scores(tmp_path / "w")["image_id"].to_pylist()
    assert sorted(ids) == [f"{tar}#k{i:03d}" for i in range(10)]


def test_scoring_actor_killed_mid_job(ray_session, world, head, tmp_path):
    """ray.kill on a scoring actor: Ray Data restarts it and retries; every row once."""
    import ray

    cfg = ScoreConfig(input=str(world), head=str(head[0]), output=str(tmp_path / "k"),
                      batch_size=4, block_rows=8, rows_per_part=8)  # fmt: skip
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(score(cfg)))
    job.start()
    killed = 0
    deadline = time.monotonic() + 120
    while not killed and job.is_alive() and time.monotonic() < deadline:
        parts = list((tmp_path / "k" / "scores").glob("part-*"))
        actors = [o for o in gc.get_objects() if isinstance(o, ray.actor.ActorHandle)
                  and "MapWorker" in o._ray_actor_creation_function_descriptor.class_name]  # fmt: skip
        if parts and actors:
            ray.kill(actors[0], no_restart=False)
            killed += 1
        time.sleep(0.2)
    job.join(timeout=240)
    assert killed == 1, "the job ended before an actor could be killed"
    assert result["rows_in"] == result["ok"] == 120
    ids = _scores(tmp_path / "k")["image_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 120


@pytest.mark.slow  # two Ray start-ups in subprocesses
def test_driver_killed_and_rerun(world, head, tmp_path):
    """Kill the `georay curate score` process after some parts, rerun: one row per image_id."""
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "georay.cli", "curate", "score", "--input", str(world),
           "--head", str(head[0]), "--output", str(out), "--rows-per-part", "10",
           "--block-rows", "10", "--batch-size", "10"]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": "local"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "scores").glob("part-*"))) >= 2:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    proc.wait()
    first = len(pq.read_table(out / "scores"))
    assert 0 < first < 120, "kill the driver mid-job"
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ids = _scores(out)["image_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 120
    assert json.loads((out / "summary.json").read_text())["rows_in"] == 120


def test_s3_input_and_output(ray_session, s3_bucket, world, head, tmp_path):
    from georay.data.storage import read_bytes, write_bytes

    base = f"s3://{s3_bucket}"
    for i in range(12):
        write_bytes(
            f"{base}/world/images/v{i:04d}.jpg",
            (world.parent / f"images/v{i:04d}.jpg").read_bytes(),
        )
    table = pa.table({"image_id": [f"v{i:04d}" for i in range(13)],
                      "uri": [f"{base}/world/images/v{i:04d}.jpg" for i in range(13)]})  # fmt: skip
    write_manifest(table, f"{base}/world/manifest.parquet")
    for name in ("head.json", "head.npz", "encoder.pt"):
        write_bytes(f"{base}/head/{name}", (head[0] / name).read_bytes())
    summary = score(ScoreConfig(input=f"{base}/world/manifest.parquet", head=f"{base}/head",
                                output=f"{base}/out"))  # fmt: skip
    assert (summary["rows_in"], summary["ok"], summary["error"]) == (13, 12, 1)
    assert json.loads(read_bytes(f"{base}/out/summary.json"))["ok"] == 12
    again = score(ScoreConfig(input=f"{base}/world/images", head=f"{base}/head",
                              output=f"{base}/out-dir"))  # fmt: skip
    assert again["ok"] == 12


def test_fit_with_a_segmenter_teacher(ray_session, world, tmp_path):
    """No fractions in the manifest: a (tiny, random) ADE20K segmenter labels the sample."""
    from georay.models.segmenter import tiny_segformer

    tiny_segformer(str(tmp_path / "seg"))
    table = read_manifest(str(world)).drop_columns(["ade20k_fractions"]).slice(0, 40)
    write_manifest(table, str(tmp_path / "m.parquet"))
    cfg = FitConfig(input=str(tmp_path / "m.parquet"), output=str(tmp_path / "h"), sample=40,
                    segmenter=str(tmp_path / "seg"), teacher_side=64, batch_size=20)  # fmt: skip
    info = fit(cfg)
    assert info["teacher"] == f"segmenter:{tmp_path / 'seg'}"
    assert info["metrics"]["holdout"]["n"] + info["metrics"]["train"]["n"] == 40


def test_score_a_phone_archive_folder(ray_session, head, tmp_path):
    """HEIC, AVIF, WebP and DNG are scored; an unreadable RAW kind is an error row that names
    it; AppleDouble files, .DS_Store, Thumbs.db and notes are counted as skipped, not rowed."""
    from support import ARCHIVE, phone_archive

    archive = phone_archive(tmp_path / "archive")
    out = tmp_path / "o"
    summary = score(ScoreConfig(input=str(archive), head=str(head[0]), output=str(out),
                                sha256=True))  # fmt: skip
    images = [k.rsplit(".", 1)[0] for k, v in ARCHIVE.items() if v is not None]
    assert (summary["rows_in"], summary["ok"], summary["error"]) == (len(images), 6, 1)
    assert summary["skipped_files"] == 4
    assert json.loads((out / "summary.json").read_text())["skipped_files"] == 4
    rows = _scores(out).to_pandas().set_index("image_id")
    assert sorted(rows.index) == sorted(images)
    assert rows.loc["2023/09/SDIM0004", "error"].startswith("RAW format X3F not supported")
    assert rows.loc[rows.status == "ok", "locatability"].between(0, 1).all()
