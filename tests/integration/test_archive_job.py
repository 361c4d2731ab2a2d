"""``georay predict --gallery`` and ``--gallery-from-exif`` (issue 21) on a small, partly
geotagged synthetic archive: every row once, EXIF photos never asked, a planted exact neighbour
moves the answer, reruns resume, bad galleries refused in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import georay_argv, georay_ok

from georay.geo.distance import haversine_km

BULK = ("--block-rows", "8", "--rows-per-part", "8", "--max-new-tokens", "8", "--batch-size", "4")


@pytest.fixture(scope="module")
def archive(ray_session, tmp_path_factory):
    """A 3-country world, 30% of views with EXIF GPS, one broken file; a tiny curate head, its
    scored embeddings (the gallery), and the tiny VLM."""
    from georay.config import load_preset
    from georay.curate import FitConfig, ScoreConfig, fit, score
    from georay.models.vlm import TINY_MAX_PIXELS, tiny_qwen2vl
    from georay.synth import SynthConfig, generate_world

    root = tmp_path_factory.mktemp("archive")
    generate_world(SynthConfig(output=str(root / "world"), n=30, countries=3, width=128,
                               height=96, corrupt=1, exif_share=0.3, workers=1))  # fmt: skip
    manifest = str(root / "world" / "manifest.parquet")
    fit(FitConfig(**{**load_preset("tiny", "georay.curate"), "input": manifest,
                     "output": str(root / "head"), "sample": 20}))  # fmt: skip
    score(ScoreConfig(head=str(root / "head"), input=manifest, output=str(root / "gallery"),
                      embeddings=True))  # fmt: skip
    tiny_qwen2vl(save_dir=root / "vlm")
    truth = {r["image_id"]: r for r in pq.read_table(manifest).to_pylist()}
    model = ("--model", str(root / "vlm"), "--max-pixels", str(TINY_MAX_PIXELS))
    return {"root": root, "manifest": manifest, "truth": truth, "model": model}


def _rows(out: Path) -> dict[str, dict]:
    return {r["image_id"]: r for r in pq.read_table(out / "predictions").to_pylist()}


def test_gallery_from_exif_places_tagged_photos_by_exif_and_fuses_the_rest(archive):
    root, truth = archive["root"], archive["truth"]
    out = root / "from-exif"
    argv = ("predict", "--input", archive["manifest"], "--output", str(out), *archive["model"],
            "--gallery-from-exif", "--head", str(root / "head"), *BULK)  # fmt: skip
    summary = json.loads(georay_ok(*argv))
    tagged = {i for i, r in truth.items() if r["exif_gps"]}
    assert summary["rows_in"] == summary["rows_out"] == len(truth)  # every row once
    assert summary["gallery_rows"] == len(tagged) == 9 and summary["gallery_cached"] is False
    assert summary["methods"] == {"exif": 9, "fused": len(truth) - 9}
    rows = _rows(out)
    assert set(rows) == set(truth)
    gallery_points = {(truth[i]["lat"], truth[i]["lon"]) for i in tagged}
    for image_id, row in rows.items():
        if image_id in tagged:  # never asked: placed at its own EXIF point
            assert row["method"] == "exif" and row["raw_text"] is None and row["answered"]
            assert abs(row["lat"] - truth[image_id]["lat"]) < 1e-6
        elif row["status"] == "ok":
            assert row["method"] == "fused" and row["model"].startswith("fused:")
            # A point the gallery gave lies among its EXIF points (a same-scene photo's point,
            # or the centre of the city the neighbours named), not somewhere else.
            if row["reasons"].startswith(("fused (scene)", "fused (knn)")):
                near = min(haversine_km(row["lat"], row["lon"], a, b) for a, b in gallery_points)
                assert near < 30
        else:
            assert truth[image_id]["view"] == "corrupt" and row["method"] == "fused"
    again = json.loads(georay_ok(*argv))  # rerun: nothing to do, the gallery from its cache
    assert again["rows_this_run"] == 0 and again["gallery_cached"] is True
    assert len(_rows(out)) == len(truth)


def test_a_planted_exact_neighbour_moves_the_answer_to_it(archive):
    root, truth = archive["root"], archive["truth"]

    def run(name: str, *extra: str) -> dict[str, dict]:
        georay_ok("predict", "--input", archive["manifest"], "--output", str(root / name),
                  *archive["model"], "--gallery", str(root / "gallery"), "--head",
                  str(root / "head"), "--neighbours", "1", "--temperature", "0.001",
                  "--vote-temperature", "0.001", "--fusion-vlm-weight", "0.5",
                  # the random-init encoder puts distinct views at cosine ~0.99 (curate dedup)
                  "--same-scene-similarity", "0.9999", *extra, *BULK)  # fmt: skip
        return _rows(root / name)

    planted = run("planted", "--no-exclude-self")  # each photo finds itself in the gallery
    others = run("others")  # the same gallery, its own copy left out
    moved = 0
    for image_id, row in planted.items():
        if row["status"] != "ok" or truth[image_id]["view"] == "corrupt":
            continue
        own = (truth[image_id]["lat"], truth[image_id]["lon"])
        assert row["method"] == "fused"
        # The planted neighbour's point.
        assert row["lat"] == pytest.approx(own[0], abs=1e-6), row["reasons"]
        assert row["lon"] == pytest.approx(own[1], abs=1e-6), row["reasons"]
        other = others[image_id]
        moved += other["lat"] is None or haversine_km(other["lat"], other["lon"], *own) > 1e-3
    assert moved > 0  # without the planted copy the answers differ


def _one_error_line(argv) -> str:
    done = subprocess.run(georay_argv(*argv), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()  # INFO logs of what was read may come first
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == lines[-1:] and lines[-1].startswith("georay predict: error: "), lines
    return lines[-1]


def test_a_bad_gallery_is_one_error_line(archive, tmp_path):
    root = archive["root"]
    base = ("predict", "--input", archive["manifest"], "--output", str(tmp_path / "o"),
            *archive["model"], "--head", str(root / "head"))  # fmt: skip
    other = tmp_path / "other-encoder"
    shutil.copytree(root / "gallery", other)
    job = json.loads((other / "job.json").read_text())
    (other / "job.json").write_text(json.dumps({**job, "model": "open_clip:ViT-B-32:x"}))
    assert "was embedded by 'open_clip:ViT-B-32:x'" in _one_error_line(
        (*base, "--gallery", str(other)))  # fmt: skip
    bare = tmp_path / "no-embeddings"
    shutil.copytree(root / "gallery", bare)
    shutil.rmtree(bare / "embeddings")
    assert "no embeddings/" in _one_error_line((*base, "--gallery", str(bare)))
    labels = tmp_path / "labels.parquet"
    ids = pq.read_table(archive["manifest"])["image_id"]
    pq.write_table(pa.table({"image_id": ids, "lat": pa.nulls(len(ids), pa.float64()),
                             "lon": pa.nulls(len(ids), pa.float64())}), labels)  # fmt: skip
    line = _one_error_line((*base, "--gallery", str(root / "gallery"), "--gallery-labels",
                            str(labels)))  # fmt: skip
    assert "no embedded image has a location" in line
    assert "--head" in _one_error_line(base[:-2] + ("--gallery", str(root / "gallery")))
