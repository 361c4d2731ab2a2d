"""Both baselines as bulk jobs on a tiny synthetic world: one row per image, error rows, resume,
the kNN gallery from curate's embeddings, and the two side by side through evaluate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import georay_ok

from georay.baseline import KnnConfig, ZeroShotConfig, knn, zeroshot
from georay.errors import UserError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(ray_session, tmp_path_factory):
    """A 3-country world (one broken file), a tiny curate head, and its scored embeddings."""
    from georay.config import load_preset
    from georay.curate import FitConfig, ScoreConfig, fit, score
    from georay.synth import SynthConfig, generate_world

    root = tmp_path_factory.mktemp("baselines")
    synth = generate_world(SynthConfig(output=str(root / "world"), n=40, countries=3, width=128,
                                       height=96, corrupt=1, workers=1))  # fmt: skip
    manifest = str(root / "world" / "manifest.parquet")
    fit(FitConfig(**{**load_preset("tiny", "georay.curate"), "input": manifest,
                     "output": str(root / "head"), "sample": 30}))  # fmt: skip
    score(ScoreConfig(head=str(root / "head"), input=manifest, output=str(root / "gallery"),
                      embeddings=True))  # fmt: skip
    truth = {r["image_id"]: r for r in pq.read_table(manifest).to_pylist()}
    return {"root": root, "manifest": manifest, "countries": synth["countries"], "truth": truth}


@pytest.fixture(scope="module")
def runs(world):
    """Both baselines run once through the command line; their printed summaries, by name.
    The tests below read these outputs in any order (no test depends on another having run)."""
    root, manifest = world["root"], world["manifest"]
    bulk = ("--block-rows", "8", "--rows-per-part", "8")
    knn_out = georay_ok("baseline", "knn", "--input", manifest, "--output", str(root / "knn"),
                        "--gallery", str(root / "gallery"), "--head", str(root / "head"),
                        "--gallery-split", "train", "--neighbours", "5", *bulk)  # fmt: skip
    zeroshot_out = georay_ok("baseline", "zeroshot", "--input", manifest, "--output",
                             str(root / "zeroshot"), "--countries", *world["countries"],
                             "--cities-per-country", "3", *bulk)  # fmt: skip
    return {"knn": json.loads(knn_out), "zeroshot": json.loads(zeroshot_out)}


def _rows(out: Path) -> dict[str, dict]:
    return {r["image_id"]: r for r in pq.read_table(out / "predictions").to_pylist()}


def test_knn_job(world, runs):
    out = world["root"] / "knn"
    cfg = KnnConfig(input=world["manifest"], output=str(out), gallery=str(world["root"] / "gallery"),
                    head=str(world["root"] / "head"), gallery_split="train", neighbours=5,
                    block_rows=8, rows_per_part=8)  # fmt: skip
    summary = runs["knn"]
    truth = world["truth"]  # the manifest lists the broken file too
    assert summary["rows_in"] == summary["rows_out"] == len(truth)
    assert (summary["error"], summary["answered"]) == (1, len(truth) - 1)
    train = {i for i, r in truth.items() if r["split"] == "train" and r["view"] != "corrupt"}
    assert summary["gallery_rows"] == len(train) and summary["index_type"] == "IndexFlatIP"
    rows = _rows(out)
    assert len(rows) == summary["rows_out"]
    broken = [r for r in rows.values() if r["status"] == "error"]
    assert broken[0]["answered"] is False and broken[0]["error"]
    gallery_places = {(truth[i]["lat"], truth[i]["lon"]) for i in train}
    for image_id, row in rows.items():
        if row["status"] != "ok":
            continue
        neighbours = [n for n, _ in json.loads(row["raw_text"])["neighbours"]]
        assert len(neighbours) == 5 and set(neighbours) <= train and image_id not in neighbours
        assert (row["lat"], row["lon"]) in gallery_places and row["h3"]
        assert row["country_code"] in world["countries"] and row["city"]
    again = knn(cfg)  # resume: everything is committed, nothing to add
    assert again["rows_this_run"] == 0 and len(_rows(out)) == summary["rows_out"]


def test_knn_confidence_then_calibrated_without_a_flag(world, runs, tmp_path):
    from georay.protocol.calibration import load_calibration

    rows = _rows(world["root"] / "knn")
    ok = {i: r for i, r in rows.items() if r["status"] == "ok"}
    for r in ok.values():
        cands = r["candidates"]
        assert 0 < r["city_confidence"] <= r["country_confidence"] <= 1 and not r["abstained"]
        assert (cands[0]["country_code"], cands[0]["city"]) == (r["country_code"], r["city"])
        assert cands[0]["probability"] == pytest.approx(r["city_confidence"])
        assert len({c["country_code"] for c in cands}) == len(cands) <= 5  # one per country
        assert sum(c["probability"] for c in cands) <= 1 + 1e-9
    assert all(r["country_confidence"] is None for r in rows.values() if r["status"] != "ok")
    gallery = tmp_path / "gallery"  # a copy: the module's gallery stays uncalibrated
    shutil.copytree(world["root"] / "gallery", gallery)
    georay_ok("calibrate", "--model", str(gallery), "--input", str(world["root"] / "knn" / "predictions"),
              "--truth", world["manifest"], "--method", "knn", "--min-rows", "10")  # fmt: skip
    calibration = load_calibration(str(gallery))
    out = tmp_path / "calibrated"
    georay_ok("baseline", "knn", "--input", world["manifest"], "--output", str(out), "--gallery",
              str(gallery), "--head", str(world["root"] / "head"), "--gallery-split", "train",
              "--min-confidence", "0.5", "--top-k", "2")  # fmt: skip
    again = _rows(out)
    assert again.keys() == rows.keys()  # abstention keeps every row once
    raw = np.array([r["country_confidence"] for r in ok.values()])
    assert np.abs(calibration.apply(raw, "knn", "country") - raw).max() > 1e-3  # not identity
    for i, r in ok.items():
        want = float(calibration.apply(r["country_confidence"], "knn", "country"))
        assert again[i]["country_confidence"] == pytest.approx(want)
        assert again[i]["abstained"] == (want < 0.5) and again[i]["country"] == r["country"]
        assert len(again[i]["candidates"]) <= 2
    job = json.loads((out / "job.json").read_text())
    assert job["calibration"].startswith(f"{gallery / 'calibration.json'} sha256:")


def test_knn_refuses_a_gallery_of_another_encoder(world, tmp_path):
    gallery = tmp_path / "gallery"
    shutil.copytree(world["root"] / "gallery", gallery)
    job = json.loads((gallery / "job.json").read_text())
    (gallery / "job.json").write_text(json.dumps({**job, "model": "open_clip:ViT-B-32:x"}))
    cfg = KnnConfig(input=world["manifest"], output=str(tmp_path / "o"), gallery=str(gallery),
                    head=str(world["root"] / "head"))  # fmt: skip
    with pytest.raises(UserError, match="embedded by 'open_clip:ViT-B-32:x', not by --head's"):
        knn(cfg)


def test_zeroshot_job_and_side_by_side(world, runs):
    out = world["root"] / "zeroshot"
    cfg = ZeroShotConfig(input=world["manifest"], output=str(out), countries=world["countries"],
                         cities_per_country=3, block_rows=8, rows_per_part=8)  # fmt: skip
    summary = runs["zeroshot"]
    assert summary["rows_out"] == len(world["truth"]) and summary["error"] == 1
    for row in _rows(out).values():
        if row["status"] == "ok":
            assert row["country_code"] in world["countries"] and row["resolution"] == "city"
            assert json.loads(row["raw_text"])["country"] == row["country"]
    again = zeroshot(cfg)
    assert again["rows_this_run"] == 0 and len(_rows(out)) == summary["rows_out"]

    from georay.evaluate import EvaluateConfig, evaluate

    knn_out = world["root"] / "knn"
    m = evaluate(EvaluateConfig(
        predictions=[f"zeroshot={out / 'predictions'}", f"knn={knn_out / 'predictions'}"],
        truth=world["manifest"], split="test", output=str(world["root"] / "report"), plots=False,
    ))  # fmt: skip
    n_test = sum(r["split"] == "test" for r in world["truth"].values())
    assert n_test > 0
    assert [m["methods"][k]["n"] for k in ("zeroshot", "knn")] == [n_test, n_test]
    assert m["methods"]["knn"]["inputs"]["truth_without_prediction"] == 0
