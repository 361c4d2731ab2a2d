"""Confidence you can act on (issue 20), the accuracy part: per method on the demo world.

For each method of a ``georay demo`` run (the VLM, kNN, zero-shot): country ECE (15 equal-mass
bins) of its held-out test rows before and after the calibration the demo fitted on the val
views (``georay calibrate``: labelled views no model trained on, disjoint from test); the
rows kept and their country precision when keeping the most confident 70% (by threshold: the
smallest set of whole confidence ties holding at least 70% of the rows, on the calibrated
confidence); and top-5 country accuracy from ``candidates``. Targets (issue 20): ECE after
<= 0.05 (VLM, kNN), precision >= 0.98 at 70% kept, top-5 >= 0.98.

The figures come from :func:`georay.evaluate.confidence.confidence_metrics`, what ``georay
evaluate`` reports, on the run's own files. The cost of confidence (images/s with it on vs
off) is ``benchmarks/confidence_cost.py``, in the same BENCHMARKS.md section.

    .venv/bin/python -m benchmarks.confidence                  # runs `georay demo` first
    .venv/bin/python -m benchmarks.confidence --demo-run RUN   # reads a finished demo run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import Conditions, write_part

AREA = "confidence"
PARTS = ("accuracy", "cost")
KEEP = 0.70
TARGETS = {"ece": 0.05, "precision": 0.98, "top5": 0.98}


def _kept(curve: dict, share: float) -> tuple[float, float, float | None]:
    """(share kept, precision, threshold) of the smallest confidence threshold keeping at
    least ``share`` of the rows (whole ties: a threshold cannot split them)."""
    at = np.flatnonzero(curve["coverage"] >= share - 1e-12)
    if not len(at):
        return float("nan"), float("nan"), None
    i = int(at[0])
    t = curve["threshold"][i]
    return float(curve["coverage"][i]), float(curve["precision"][i]), (
        None if np.isnan(t) else float(t))  # fmt: skip


def measure(run: Path) -> dict[str, dict | None]:
    """Per method of a demo run: its confidence figures on the test split (None: the method's
    predictions carry no confidence)."""
    from georay.demo.run import method_paths
    from georay.evaluate.confidence import confidence_metrics, has_confidence, risk_coverage
    from georay.evaluate.inputs import PREDICTION_COLUMNS, read_columns, read_truth
    from georay.evaluate.score import prepare_truth, score
    from georay.geo.gazetteer import get_gazetteer
    from georay.protocol.calibration import load_calibration

    gaz = get_gazetteer()
    truth, _, _ = read_truth(str(run / "world" / "manifest.parquet"), split="test")
    prepared = prepare_truth(truth, gaz, [])
    out: dict[str, dict | None] = {}
    for name, (predictions, home) in method_paths(run).items():
        table, _ = read_columns(str(predictions), PREDICTION_COLUMNS, flag="--predictions")
        scored, _ = score(prepared, table, gaz)
        if not has_confidence(scored):
            out[name] = None
            continue
        calibration = load_calibration(str(home))
        figures, curves = confidence_metrics(scored, gaz, calibration=calibration, method=name)
        country = figures["country"]
        kept, precision, threshold = _kept(curves["curve"], KEEP)
        known = scored.country_known
        raw = risk_coverage(scored.country_confidence[known], scored.country_correct[known])
        raw_kept, raw_precision, _ = _kept(raw, KEEP)
        out[name] = {
            "rows": country["rows"],
            "accuracy": country["accuracy_all_rows"],
            "ece_before": country["as_given"]["ece"],
            "ece_after": (country.get("calibrated") or {}).get("ece"),
            "calibration": None if calibration is None else
                           {lvl: m.use for lvl, m in (calibration.get(name) or {}).items()},
            "kept_share": kept,
            "kept_precision": precision,
            "threshold": threshold,
            "raw_kept_share": raw_kept,
            "raw_kept_precision": raw_precision,
            "top1": (figures.get("top_k") or {}).get("country_top1"),
            "top5": (figures.get("top_k") or {}).get("country_top5"),
        }  # fmt: skip
    return out


# ---- the kNN vote: which neighbours' weights make its probabilities -------------------------

VOTES = ((5, 0.05), (10, 0.01), (20, 0.05), (20, 0.01), (20, 0.005), (50, 0.01))


def vote_sweep(run: Path, votes=VOTES, k: int = 5, temperature: float = 0.05) -> list[dict]:
    """The kNN baseline's answer (medoid of k neighbours, as its defaults) with probabilities
    from ``(voters, vote temperature)``: calibrated (``auto``) on the val views, measured on
    the test views; the gallery is the train views (curate's embeddings of the demo run)."""
    from benchmarks.knn import _demo_arrays
    from georay.baseline.index import Gallery, locate, neighbour_weights, place_votes
    from georay.data.vectors import build_index, normalise
    from georay.evaluate.confidence import risk_coverage
    from georay.protocol.calibration import expected_calibration_error, fit_level

    x, split, lat, lon, country, city = _demo_arrays(str(run))
    train = np.flatnonzero(split == "train")
    g = Gallery(build_index(normalise(x[train]), "flat"), train.astype(object), lat[train],
                lon[train], country[train].astype(object), city[train].astype(object))  # fmt: skip

    def answer(rows: np.ndarray, voters: int, t: float):
        sims, at = g.search(x[rows], max(k, voters))
        best = locate(g.lat[at[:, :k]], g.lon[at[:, :k]], sims[:, :k], at[:, :k] >= 0, temperature)
        w = neighbour_weights(sims[:, :voters], at[:, :voters] >= 0, t)
        out = [place_votes(g.country[at[q, :voters]], g.city[at[q, :voters]], w[q],
                           int(best[q]), 5) for q in range(len(rows))]  # fmt: skip
        right = g.country[at[np.arange(len(rows)), best]] == country[rows]
        conf = np.array([v.country for v in out])
        top5 = np.mean([country[r] in {g.country[at[q, i]] for i, _ in v.candidates}
                        for q, (r, v) in enumerate(zip(rows, out, strict=True))])  # fmt: skip
        return conf, right, float(top5)

    val, test = np.flatnonzero(split == "val"), np.flatnonzero(split == "test")
    results = []
    for voters, t in votes:
        cv, yv, _ = answer(val, voters, t)
        ct, yt, top5 = answer(test, voters, t)
        level = fit_level(cv, yv, "auto")
        results.append({
            "voters": voters, "t": t, "accuracy": float(yt.mean()),
            "ece_raw": expected_calibration_error(ct, yt),
            "ece_calibrated": expected_calibration_error(level(ct), yt), "map": level.use,
            "aurc": risk_coverage(ct, yt)["aurc"], "top5": top5,
        })  # fmt: skip
    return results


def vote_text(results: list[dict]) -> str:
    lines = [
        "kNN's vote (`--vote-neighbours`, `--vote-temperature`; the answer stays the medoid of "
        "5 neighbours at t = 0.05): probabilities from each setting, calibrated on val, on the "
        "test views. AURC: area under the risk-coverage curve of the raw probabilities (lower "
        "ranks the wrong answers last better).",
        "",
        "| voters | vote t | accuracy | ECE raw | ECE calibrated (map) | AURC | top-5 |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['voters']} | {r['t']:g} | {_f(r['accuracy'])} | {_f(r['ece_raw'])} | "
              f"{_f(r['ece_calibrated'])} ({r['map']}) | {_f(r['aurc'], 4)} | {_f(r['top5'])} |"
              for r in results]  # fmt: skip
    return "\n".join(lines)


def _f(value, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def _mark(value, target: float, above: bool) -> str:
    if value is None or value != value:
        return ""
    return " ✓" if (value >= target if above else value <= target) else " ✗"


def text(figures: dict, run: str, conditions: Conditions, demo_s: float | None) -> str:
    """The accuracy part of BENCHMARKS.md's confidence section."""
    head = ("| method | test rows | country accuracy | ECE raw | ECE calibrated (map) | kept at "
            "the top 70% | precision kept | threshold | kept / precision, raw order | top-1 | "
            "top-5 |")  # fmt: skip
    lines = [
        "### Calibration, selective prediction, top-k (the demo world)",
        "",
        f"{conditions.line()} RUN = `{run}`"
        + (f", a `georay demo` run made by this command ({demo_s:.0f} s)." if demo_s else "."),
        "",
        "Calibration fitted on the world's val views (10% of the views, never trained on), "
        "measured on its test views. ECE: 15 equal-mass bins. Kept: the smallest set of whole "
        "confidence ties (calibrated) holding >= 70% of the test rows. Marks: issue 20's "
        f"targets (ECE after <= {TARGETS['ece']}, precision kept >= {TARGETS['precision']}, "
        f"top-5 >= {TARGETS['top5']}).",
        "",
        head,
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in figures.items():
        if f is None:
            lines.append(f"| {name} | - | - | - | - | - | - | - | - | - | - |")
            continue
        maps = ", ".join(f"{k} {v}" for k, v in (f["calibration"] or {}).items()) or "none"
        lines.append(
            f"| {name} | {f['rows']} | {_f(f['accuracy'])} | {_f(f['ece_before'])} | "
            f"{_f(f['ece_after'])}{_mark(f['ece_after'], TARGETS['ece'], False)} ({maps}) | "
            f"{_f(f['kept_share'])} | {_f(f['kept_precision'])}"
            f"{_mark(f['kept_precision'], TARGETS['precision'], True)} | "
            f"{_f(f['threshold'], 4)} | {_f(f['raw_kept_share'])} / "
            f"{_f(f['raw_kept_precision'])} | {_f(f['top1'])} | {_f(f['top5'])}"
            f"{_mark(f['top5'], TARGETS['top5'], True)} |"
        )
    lines += ["", "Kept, raw order: the same on the confidences before calibration (a temperature "
              "keeps their order; an isotonic map merges neighbours into ties)."]  # fmt: skip
    missing = [n for n, f in figures.items() if f is None]
    if missing:
        lines += ["", f"No confidences in the predictions of: {', '.join(missing)} (shown as -)."]
    return "\n".join(lines)


def demo_times(run: Path) -> str:
    """The demo's step times that confidence adds to or touches (from its summary.json)."""
    t = json.loads((run / "summary.json").read_text())["timings_s"]
    steps = ("predict", "baseline_zeroshot", "baseline_knn", "calibrate_vlm",
             "calibrate_zeroshot", "calibrate_knn", "evaluate")  # fmt: skip
    shown = ", ".join(f"{k} {t[k]:.1f} s" for k in steps if k in t)
    return f"Demo step times (its summary.json): {shown}; whole demo {sum(t.values()):.0f} s."


def _run_demo(folder: Path) -> float:
    import time

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "georay.cli", "demo", "--output", str(folder)],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-run", default="", help="a finished `georay demo` run folder")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit BENCHMARKS")
    args = parser.parse_args(argv)
    conditions = Conditions()
    demo_s = None
    with tempfile.TemporaryDirectory(prefix="georay-confidence-") as tmp:
        run = Path(args.demo_run) if args.demo_run else Path(tmp) / "demo"
        if not args.demo_run:
            demo_s = _run_demo(run)
        figures = measure(run)
        times = demo_times(run)
        sweep = vote_sweep(run)
    print(json.dumps(figures, indent=2))
    body = text(figures, args.demo_run or "(a fresh demo run)", conditions, demo_s)
    body += "\n\n" + times + "\n\n" + vote_text(sweep)
    print(body)
    if not args.no_write:
        write_part(AREA, PARTS, "accuracy", body)


if __name__ == "__main__":
    main()
