"""Evaluation throughput: the vectorized core on 1M rows, against the per-row reference.

Baseline: ``benchmarks.evaluate_reference.summarize``, the straightforward implementation of the same
figures that normalizes and resolves names row by row, on the same 100K rows. Also times a full
``georay evaluate`` (read Parquet, score, tables, plots, report) on 1M rows. Writes the
``evaluate`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import median_s, run_rows
from benchmarks.evaluate_reference import summarize
from georay.evaluate import EvaluateConfig, evaluate
from georay.evaluate.evaluator import cell_table, country_table, headline
from georay.evaluate.score import score
from georay.geo.gazetteer import get_gazetteer

AREA = "evaluate"
# How it was measured: the sentence after the conditions line.
METHOD = (
    "Core figures are medians of 3 runs (baseline: 1 run); the baseline runs in the same process, "
    "on the same rows. Name-only predictions, so every row goes through name resolution."
)


def world(n: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """Truth near the 3,000 most populous places; name-only predictions, 30% wrong, 5% unanswered."""
    gaz = get_gazetteer()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 3000, n)
    pidx = np.where(rng.random(n) < 0.3, rng.integers(0, 3000, n), idx)
    names = {c: gaz.country_name(c) for c in set(gaz.codes[:3000])}
    ids = pa.array(np.char.add("img", np.arange(n).astype(str)))
    truth = pa.table({"image_id": ids,
                      "lat": gaz.lat[idx] + rng.normal(0, 0.05, n),
                      "lon": gaz.lon[idx] + rng.normal(0, 0.05, n),
                      "country": pa.array(gaz.codes[idx].astype(str)),
                      "city": pa.array(gaz.names[idx].astype(str))})  # fmt: skip
    country = np.vectorize(names.get, otypes=[object])(gaz.codes[pidx])
    pred = pa.table({"image_id": ids, "lat": pa.nulls(n, pa.float64()),
                     "lon": pa.nulls(n, pa.float64()), "country": pa.array(country, pa.string()),
                     "city": pa.array(gaz.names[pidx].astype(str)),
                     "country_code": pa.nulls(n, pa.string()),
                     "answered": pa.array(rng.random(n) > 0.05), "status": pa.nulls(n, pa.string())})  # fmt: skip
    return truth, pred


def core(truth: pa.Table, pred: pa.Table) -> dict:
    scored, _ = score(truth, pred, get_gazetteer(), [3, 5])
    country_table(scored), cell_table(scored, 3), cell_table(scored, 5)
    return headline(scored)


def reference(truth: pa.Table, pred: pa.Table) -> dict:
    col = lambda t, c: t[c].to_numpy(zero_copy_only=False)  # noqa: E731
    return summarize(col(truth, "lat"), col(truth, "lon"), col(pred, "country"),
                     col(pred, "city"), true_country=col(truth, "country"),
                     true_city=col(truth, "city"), answered=col(pred, "answered"))  # fmt: skip


def run() -> list[tuple[str, str]]:
    get_gazetteer().city("warm-up")  # build the name index outside the timings
    small_truth, small_pred = world(100_000, seed=1)
    ours = median_s(lambda: core(small_truth, small_pred), 3)
    base = median_s(lambda: reference(small_truth, small_pred), 1)
    mine, ref = core(small_truth, small_pred), reference(small_truth, small_pred)
    assert mine["country"]["correct"] == ref["country"]["correct"], "core and reference disagree"
    assert abs(mine["geoscore"] - ref["distance"]["geoscore"]) < 1e-6 * ref["distance"]["geoscore"]
    truth, pred = world(1_000_000)
    big = median_s(lambda: core(truth, pred), 3)
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(truth, f"{tmp}/truth.parquet")
        pq.write_table(pred, f"{tmp}/pred.parquet")
        t = time.perf_counter()
        evaluate(EvaluateConfig(predictions=f"{tmp}/pred.parquet", truth=f"{tmp}/truth.parquet",
                                output=f"{tmp}/report"))  # fmt: skip
        full = time.perf_counter() - t
    return [
        ("metric core, 100K rows (score + country/cell tables at res 3, 5)", f"{ours:.2f} s"),
        (
            "baseline: evaluate_reference.summarize (per-row names), same 100K rows",
            f"{base:.2f} s ({base / ours:.1f}x slower)",
        ),  # fmt: skip
        ("metric core, 1M rows", f"{big:.2f} s ({1e6 / big:,.0f} rows/s)"),
        (
            "`georay evaluate` end to end, 1M rows (Parquet in, tables, 3 plots, report; 1 run)",
            f"{full:.1f} s",
        ),  # fmt: skip
    ]


def main() -> None:
    run_rows(AREA, METHOD, "time", run)


if __name__ == "__main__":
    main()
