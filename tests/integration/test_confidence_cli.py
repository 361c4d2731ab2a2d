"""`georay calibrate` then `georay evaluate --calibration`, as a user types them: fit on the
validation split, measure on the test split, one error line for predictions without scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from support import georay_ok

from georay.protocol.calibration import apply_temperature
from georay.protocol.predictions import PREDICTIONS_SCHEMA

REPO = Path(__file__).resolve().parents[2]
PLACES = [("CH", "Switzerland", "Zurich", 47.3769, 8.5417),
          ("JP", "Japan", "Tokyo", 35.6762, 139.6503),
          ("FR", "France", "Paris", 48.8566, 2.3522),
          ("BR", "Brazil", "Sao Paulo", -23.5505, -46.6333),
          ("DE", "Germany", "Berlin", 52.52, 13.405)]  # fmt: skip


def _georay(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "georay.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _world(tmp: Path, n: int = 800) -> tuple[str, str, str]:
    """Truth with val/test splits; predictions right with probability q whose confidence is
    over-confident (log-odds 2.5 times q's); a second method with no confidence columns."""
    rng = np.random.default_rng(0)
    true = rng.integers(0, len(PLACES), n)
    q = rng.beta(4, 1.5, n)
    right = rng.random(n) < q
    said = np.where(right, true, (true + rng.integers(1, len(PLACES), n)) % len(PLACES))
    conf = apply_temperature(q, 1 / 2.5)
    truth = pa.table({
        "image_id": [f"i{i}" for i in range(n)],
        "lat": [PLACES[t][3] for t in true], "lon": [PLACES[t][4] for t in true],
        "country": [PLACES[t][0] for t in true], "split": ["val", "test"] * (n // 2),
    })  # fmt: skip
    rows, plain = [], []
    for i in range(n):
        code, country, city, lat, lon = PLACES[said[i]]
        row = {"image_id": f"i{i}", "uri": f"i{i}.jpg", "country": country, "country_code": code,
               "city": city, "lat": lat, "lon": lon, "answered": True, "status": "ok"}  # fmt: skip
        plain.append(dict(row))
        row |= {"country_confidence": float(conf[i]), "city_confidence": float(conf[i]) / 2,
                "candidates": [{"country": country, "country_code": code, "city": city,
                                "lat": lat, "lon": lon, "probability": float(conf[i]) / 2}]}  # fmt: skip
        rows.append(row)
    pq.write_table(truth, tmp / "truth.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=PREDICTIONS_SCHEMA), tmp / "vlm.parquet")
    pq.write_table(pa.Table.from_pylist(plain), tmp / "plain.parquet")
    return str(tmp / "truth.parquet"), str(tmp / "vlm.parquet"), str(tmp / "plain.parquet")


def test_calibrate_then_evaluate(tmp_path):
    truth, vlm, plain = _world(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    shown = json.loads(georay_ok("calibrate", "--model", str(model), "--input", vlm, "--truth",
                                 truth, "--split", "val", "--method", "vlm"))  # fmt: skip
    assert shown["calibration"] == str(model / "calibration.json")
    assert shown["levels"]["country"]["rows"] == 400
    assert shown["levels"]["country"]["ece_after"] < shown["levels"]["country"]["ece_before"]
    out = tmp_path / "report"
    run = _georay("evaluate", "--truth", truth, "--split", "test", "--output", str(out),
                  "--predictions", f"vlm={vlm}", f"plain={plain}",
                  "--calibration", f"vlm={model}")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "| country ECE calibrated |" in run.stdout
    assert "| kept at 95% country precision |" in run.stdout
    m = json.loads((out / "metrics.json").read_text())
    country = m["methods"]["vlm"]["confidence"]["country"]
    assert country["rows"] == 400  # the test split only
    assert country["as_given"]["ece"] > 0.08 and country["calibrated"]["ece"] < 0.05
    assert country["calibrated"]["brier"] < country["as_given"]["brier"]
    assert "confidence" not in m["methods"]["plain"]
    assert (out / "calibration.png").stat().st_size > 10_000
    assert (out / "coverage.png").read_bytes()[:4] == b"\x89PNG"
    # the same predictions with no scores cannot be calibrated: one error line, status 2
    bad = _georay("calibrate", "--output", str(tmp_path / "c.json"), "--input", plain,
                  "--truth", truth)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("georay calibrate: error: ")
    assert "nothing to calibrate" in bad.stderr and not (tmp_path / "c.json").exists()
