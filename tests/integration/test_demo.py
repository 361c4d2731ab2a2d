"""`georay demo` end to end, checked against figures recomputed here without georay.evaluate."""

import json
from pathlib import Path

import h3
import numpy as np
import pyarrow.parquet as pq
import pytest
from support import georay_ok

from georay.demo import DemoConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(ray_session, tmp_path_factory):
    """`georay demo` through the command line, once; (its config, its summary.json, what it
    printed)."""
    cfg = DemoConfig(output=str(tmp_path_factory.mktemp("demo") / "run"))
    shown = georay_ok("demo", "--output", cfg.output)
    out = json.loads(Path(cfg.output, "summary.json").read_text())
    return cfg, out | {"shown": shown}


def _test_rows(run):
    truth = pq.read_table(f"{run}/world/manifest.parquet").to_pandas()
    truth = truth[truth["split"] == "test"].set_index("image_id")
    pred = pq.read_table(f"{run}/predict/predictions").to_pandas().set_index("image_id")
    return truth, pred


def test_every_row_is_accounted_for(demo):
    cfg, out = demo
    score, predict = out["curate_score"], out["predict"]
    rows = cfg.n + cfg.duplicates + cfg.corrupt
    assert score["rows_in"] == rows == score["ok"] + score["error"]
    assert score["error"] == cfg.corrupt
    dedup, balance = out["curate_dedup"], out["curate_balance"]
    assert dedup["rows"] == rows == dedup["kept"] + dedup["exact"] + dedup["near"] + dedup["error"]
    assert dedup["exact"] + dedup["near"] >= cfg.duplicates // 2  # planted copies, mostly found
    assert balance["rows"] == score["kept"]
    assert balance["rows"] == balance["kept"] + balance["duplicate"] + balance["cell_cap"]
    assert balance["largest_cell"]["after"] <= balance["max_per_cell"]
    assert predict["rows_out"] == predict["ok"] + predict["error"]
    assert predict["error"] >= 1  # the broken files in the held-out input are recorded


def test_country_accuracy_recomputed_independently_beats_chance(demo):
    cfg, out = demo
    truth, pred = _test_rows(out["run"])
    world = json.loads(Path(out["run"], "world", "world.json").read_text())
    code_of = {c["name"]: c["code"] for c in world["countries"]}
    joined = truth.join(pred[["country", "status"]], rsuffix="_pred", how="left")
    predicted = joined["country_pred"].map(code_of)
    accuracy = float((predicted == joined["country"]).mean())
    metrics = json.loads(Path(out["run"], "report", "metrics.json").read_text())
    assert metrics["n"] == len(truth)
    assert metrics["country"]["correct"] / metrics["n"] == pytest.approx(accuracy)
    assert accuracy > 3 / cfg.countries  # the bar: 3x chance


def test_km_accuracy_matches_h3_great_circle_distance(demo):
    _, out = demo
    truth, pred = _test_rows(out["run"])
    joined = truth.join(pred[["lat", "lon"]], rsuffix="_pred", how="left")
    d = np.array(
        [
            h3.great_circle_distance((a, b), (c, e), unit="km")
            if not (np.isnan(c) or np.isnan(e))
            else np.inf
            for a, b, c, e in joined[["lat", "lon", "lat_pred", "lon_pred"]].to_numpy(float)
        ]
    )
    metrics = json.loads(Path(out["run"], "report", "metrics.json").read_text())
    for r in (25, 750, 2500):
        assert metrics["acc_km"][str(r)] == pytest.approx(float(np.mean(d < r)), abs=1e-9)


def test_report_and_summary(demo):
    cfg, out = demo
    run = out["run"]
    report = Path(run, "report", "report.md").read_text()
    assert "country" in report.lower()
    assert list(Path(run, "report").glob("*.png"))
    table = out["shown"]  # what `georay demo` printed
    for stage in ("synth", "curate_score", "curate_dedup", "curate_balance", "predict"):
        assert stage in table
    assert f"{run}/report/report.md" in table


def test_baselines_side_by_side(demo):
    cfg, out = demo
    metrics = json.loads(Path(out["run"], "report", "metrics.json").read_text())
    assert list(metrics["methods"]) == ["vlm", "zeroshot", "knn", "fused"]
    assert {m["n"] for m in metrics["methods"].values()} == {metrics["n"]}  # the same rows
    knn = metrics["methods"]["knn"]
    assert knn["country"]["correct"] / knn["n"] > 3 / cfg.countries  # retrieval beats chance
    fused = metrics["methods"]["fused"]  # issue 21: the VLM with the gallery, a fourth column
    assert fused["country"]["correct"] / fused["n"] > 3 / cfg.countries
    assert out["predict_fused"]["methods"] == {"fused": out["predict_fused"]["rows_out"]}
    header = "| figure | vlm | zeroshot | knn | fused |"
    assert header in Path(out["run"], "report", "report.md").read_text()
    assert header in out["shown"]
    assert out["baseline_knn"]["gallery_split"] == "train"


def test_confidence_calibrated_on_val_and_shown_per_method(demo):
    _, out = demo
    run = Path(out["run"])
    truth = pq.read_table(run / "world" / "manifest.parquet").to_pandas()
    val = set(truth.loc[(truth["split"] == "val") & (truth["view"] != "corrupt"), "image_id"])
    assert out["synth"]["val"] >= 50 and val
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    for name, home in (("knn", run / "curate"), ("zeroshot", run / "zeroshot")):
        assert (home / "calibration.json").is_file()
        assert out[f"calibrate_{name}"]["levels"]["country"]["rows"] == len(val)
        country = metrics["methods"][name]["confidence"]["country"]
        # Measured on the test rows (the broken files among them have no confidence), not val.
        assert metrics["n"] - 4 <= country["rows"] <= metrics["n"]
        assert {"as_given", "calibrated", "selective"} <= set(country)
    zeroshot = metrics["methods"]["zeroshot"]["confidence"]["country"]
    # A random-init CLIP's softmax is sure of near-chance answers; calibration says so.
    assert zeroshot["calibrated"]["ece"] < zeroshot["as_given"]["ece"] / 2
    shown = out["shown"]
    assert "| country ECE calibrated |" in shown and "| kept at 95% country precision |" in shown
    assert "knn: at 95% country precision, " in shown
    # The VLM (its token probabilities) and the fused method carry confidences too.
    for name in ("vlm", "fused"):
        assert out[f"calibrate_{name}"]["levels"]["country"]["rows"] >= len(val) - 4
        assert f"{name}: at 95% country precision, " in shown
    row = next(line for line in shown.splitlines() if line.startswith("| country ECE |"))
    assert "-" not in [c.strip() for c in row.split("|")[1:-1]]


def test_demo_prints_one_line_per_claim(demo):
    _, out = demo
    claims = [line for line in out["shown"].splitlines() if line.startswith("claim ")]
    assert [line.split(",")[0] for line in claims] == ["claim 1", "claim 2"]
    assert f"{out['curate_balance']['kept']} views curation kept" in claims[0]
    assert all("benchmarks.claims" in line for line in claims)
