"""``georay demo``: the whole GeoReasoner pipeline on the built-in default.

Synthetic world (with planted copies) -> curate (fit the CLIP student on teacher labels, score,
keep the locatable views, drop duplicates, cap views per H3 cell) -> knowledge (stage-1
reasoning and stage-2 location conversations) -> train the tiny model's base (its stand-in for
pretraining: scene descriptions that name no place) -> stage 1 and stage 2 as LoRA adapters, as
for a real model -> bulk predict on the held-out views -> the two baselines on the same views
(CLIP zero-shot with the tiny encoder; kNN retrieval over the curate step's embeddings of the
train split) -> calibrate each method's confidences on the val views (a method whose
predictions carry none is skipped) -> evaluate the three side by side on the test views,
confidences before and after calibration. Everything runs on a local Ray with tiny models
built in code, on CPU, and lands in one run folder::

    RUN/world/       images, manifest.parquet, clues.jsonl, pretrain.jsonl (georay synth)
    RUN/curate/      head/, scores/, curated/, embeddings/, summary.json; dedup/ (curate
                     dedup), balance/ (curate balance: the balanced curated set, cells.csv, png)
    RUN/knowledge/   reasoning.jsonl, location.jsonl, dropped.jsonl
    RUN/train/       base/, reasoning/ and location/ artifacts (+ Ray Train checkpoints)
    RUN/predict/     predictions/ on the val and test splits, summary.json
    RUN/zeroshot/    RUN/knn/   the baselines' predictions/ on the same views
    RUN/fused/       the VLM fused with the kNN gallery (georay predict --gallery), same views
    calibration.json next to each method's model: RUN/train/location/, RUN/curate/ (the kNN
                     gallery), RUN/zeroshot/ and RUN/fused/ (no folder of their own)
    RUN/report/      metrics.json, report.md, plots: vlm, zeroshot, knn and fused side by side

The demo only wires stage configs together: each step is the same function the stage's CLI
calls, so what works here works with ``georay <stage>`` and ``ray job submit``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from georay.config import load_preset
from georay.demo.config import DemoConfig
from georay.errors import UserError

log = logging.getLogger(__name__)

# Curation settings for the tiny random-init encoder's world: at cosine 0.997 its embeddings
# group 47 of the 48 planted copies with their source and merge 9 of 1,200 distinct views.
DEDUP_SIMILARITY = 0.997
# Curated views per H3 res-5 cell: median 5, densest 35; a cap of 30 trims the densest few.
MAX_PER_CELL, CELL_RESOLUTION = 30, 5

# Labelled views no model trains on, to fit each method's calibration (taken from the train
# views: the test split stays as it was). ~10% of 1,200: ~120 rows, enough for a temperature.
VAL_SHARE = 0.1

MARKER = "demo.json"  # marks a folder as a demo run, so --fresh only ever deletes our own runs


def _prepare(cfg: DemoConfig) -> Path:
    run = Path(cfg.output).resolve()
    if cfg.fresh and (run / MARKER).exists():
        shutil.rmtree(run)
    elif cfg.fresh and run.exists() and any(run.iterdir()):
        raise UserError(f"{run} exists and is not a georay demo run; choose another --output")
    run.mkdir(parents=True, exist_ok=True)
    (run / MARKER).write_text(json.dumps(asdict(cfg), indent=2))
    return run


def run_demo(cfg: DemoConfig) -> dict:
    """Run every stage in order; return the per-stage summaries and the report metrics."""
    # The functions from their own modules, not the packages' lazy exports: once a submodule
    # such as georay.curate.balance has been imported (the CLI's "module:function" does), Python
    # binds the package attribute "balance" to that module, and `from georay.curate import
    # balance` in the same process then gets the module, not the function.
    from georay.archive.job import predict as archive_predict
    from georay.baseline import KnnConfig, ZeroShotConfig
    from georay.baseline.knn import knn
    from georay.baseline.zeroshot import zeroshot
    from georay.calibrate import CalibrateConfig
    from georay.calibrate.fit import calibrate
    from georay.config import NO_CALIBRATION
    from georay.curate import BalanceConfig, DedupConfig, FitConfig, ScoreConfig
    from georay.curate.balance import balance
    from georay.curate.dedup import dedup
    from georay.curate.fit import fit
    from georay.curate.score import score
    from georay.evaluate import EvaluateConfig, evaluate
    from georay.knowledge import KnowledgeConfig, build
    from georay.predict import PredictConfig, predict
    from georay.runtime import init_ray
    from georay.synth import SynthConfig, generate_world
    from georay.train import TrainConfig, train

    run = _prepare(cfg)
    init_ray(cfg.address)
    timings: dict[str, float] = {}
    out: dict = {"run": str(run), "countries": cfg.countries}

    def step(name: str, fn, stage_cfg):
        log.info("== %s", name)
        start = time.perf_counter()
        out[name] = fn(stage_cfg)
        timings[name] = round(time.perf_counter() - start, 1)
        return out[name]

    world, curate, knowledge = run / "world", run / "curate", run / "knowledge"
    manifest = str(world / "manifest.parquet")
    step(
        "synth",
        generate_world,
        SynthConfig(
            output=str(world),
            n=cfg.n,
            countries=cfg.countries,
            seed=cfg.seed,
            corrupt=cfg.corrupt,
            duplicates=cfg.duplicates,
            val_share=VAL_SHARE,
        ),  # fmt: skip
    )
    fit_preset = load_preset("tiny", "georay.curate")
    step(
        "curate_fit",
        fit,
        FitConfig(**{**fit_preset, "input": manifest, "output": str(curate / "head")}),
    )
    step(
        "curate_score",
        score,
        ScoreConfig(  # embeddings/: dedup's and the kNN baseline's, computed once
            head=str(curate / "head"),
            output=str(curate),
            input=manifest,
            embeddings=True,
            sha256=True,
        ),  # fmt: skip
    )
    step(
        "curate_dedup",
        dedup,
        DedupConfig(input=str(curate), output=str(curate / "dedup"), similarity=DEDUP_SIMILARITY),
    )
    step(
        "curate_balance",
        balance,
        BalanceConfig(
            input=str(curate),
            dedup=str(curate / "dedup"),
            output=str(curate / "balance"),
            max_per_cell=MAX_PER_CELL,
            h3_resolution=CELL_RESOLUTION,
        ),  # fmt: skip
    )
    step(
        "knowledge",
        build,
        KnowledgeConfig(
            output=str(knowledge),
            clues=str(world / "clues.jsonl"),
            manifest=str(curate / "balance" / "curated"),
            splits=manifest,  # curated/ lacks the views curate dropped: take splits from all
            split="train",
        ),
    )

    def train_step(name: str, preset: str, data: Path, model: str) -> str:
        output = run / "train" / name
        values = {**load_preset(preset, "georay.train"), "input": str(data), "model": model}
        step(f"train_{name}", train, TrainConfig(**values, output=str(output), seed=cfg.seed))
        return str(output)

    # The tiny model's stand-in for pretraining, then the paper's two LoRA stages on top of it.
    base = train_step("base", cfg.base_preset, world / "pretrain.jsonl", "tiny")
    reasoning = train_step("reasoning", cfg.reasoning_preset, knowledge / "reasoning.jsonl", base)
    location = train_step("location", cfg.location_preset, knowledge / "location.jsonl", reasoning)
    # One job per method over the val and test views: val fits the calibration, test measures.
    held_out = _held_out_manifest(manifest, run / "predict-input.parquet")
    step(
        "predict",
        predict,
        PredictConfig(
            input=held_out,
            model=location,
            output=str(run / "predict"),
            calibration=NO_CALIBRATION,  # raw: evaluate shows before and after calibration
        ),
    )
    step(
        "baseline_zeroshot",
        zeroshot,
        ZeroShotConfig(
            input=held_out,
            output=str(run / "zeroshot"),
            encoder=fit_preset["encoder"],
            seed=fit_preset["seed"],
            countries=out["synth"]["countries"],  # the world's countries, as chance assumes
            calibration=NO_CALIBRATION,  # raw: evaluate shows before and after calibration
        ),
    )
    step(
        "baseline_knn",
        knn,
        KnnConfig(
            input=held_out,
            output=str(run / "knn"),
            gallery=str(curate),
            head=str(curate / "head"),
            gallery_split="train",
            calibration=NO_CALIBRATION,
        ),
    )
    step(  # issue 21: the VLM and the kNN gallery fused (same gallery as the kNN baseline)
        "predict_fused",
        archive_predict,
        PredictConfig(
            input=held_out,
            model=location,
            output=str(run / "fused"),
            calibration=NO_CALIBRATION,
            gallery=str(curate),
            head=str(curate / "head"),
            gallery_split="train",
            same_scene_similarity=DEDUP_SIMILARITY,  # a near duplicate, as in dedup
        ),
    )
    methods = method_paths(run)
    calibrated = {}
    for name, (predictions, home) in methods.items():
        if not _has_confidence(predictions):
            out[f"calibrate_{name}"], timings[f"calibrate_{name}"] = {"skipped": True}, 0.0
            continue
        step(f"calibrate_{name}", calibrate, CalibrateConfig(
            model=str(home), input=str(predictions), truth=manifest, split="val", method=name,
        ))  # fmt: skip
        calibrated[name] = home
    step(
        "evaluate",
        evaluate,
        EvaluateConfig(
            predictions=[f"{name}={path}" for name, (path, _) in methods.items()],
            calibration=[f"{name}={home}" for name, home in calibrated.items()],
            truth=manifest,
            split="test",
            output=str(run / "report"),
        ),
    )
    out["timings_s"] = timings
    (run / "summary.json").write_text(json.dumps(_jsonable(out), indent=2, default=str))
    return out


def method_paths(run: Path) -> dict[str, tuple[Path, Path]]:
    """Each method of a demo run: its predictions, and where its calibration lives: next to
    the VLM artifact and the kNN gallery (where predict and the baselines load it without a
    flag); the built-in zero-shot CLIP has no folder, so its job's output (which
    ``--calibration`` would name)."""
    return {
        "vlm": (run / "predict" / "predictions", run / "train" / "location"),
        "zeroshot": (run / "zeroshot" / "predictions", run / "zeroshot"),
        "knn": (run / "knn" / "predictions", run / "curate"),
        "fused": (run / "fused" / "predictions", run / "fused"),
    }


def _held_out_manifest(manifest: str, path: Path) -> str:
    """The world's val and test splits (corrupt files included, so prediction records their
    errors)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from georay.data.manifest import read_manifest, write_manifest

    table = read_manifest(manifest)  # resolves the world's relative image paths
    keep = pc.or_(
        pc.fill_null(pc.is_in(table["split"], value_set=pa.array(["val", "test"])), False),
        pc.equal(table["view"], "corrupt"),
    )
    write_manifest(table.filter(keep).drop_columns(["ade20k_fractions"]), str(path))
    return str(path)


def _has_confidence(predictions: Path) -> bool:
    """Whether a method's predictions carry any country confidence (the VLM's do once its
    engines give them; a method without any is shown with "-" and not calibrated)."""
    import pyarrow.dataset as ds

    column = ds.dataset(str(predictions), format="parquet").to_table(["country_confidence"])
    return column.num_rows > column["country_confidence"].null_count


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "losses"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def summary_table(out: dict) -> str:
    """A plain-text table of what each stage did, for the end of the demo, then the methods'
    headline figures side by side."""
    from georay.evaluate.report import methods_table, placed_lines

    t, countries = out["timings_s"], out["countries"]
    s, cs, kn = out["synth"], out["curate_score"], out["knowledge"]
    dd, bl = out["curate_dedup"], out["curate_balance"]
    r0, r1, r2 = out["train_base"], out["train_reasoning"], out["train_location"]
    pr, ev = out["predict"], out["evaluate"]
    zs, kn_, fu = out["baseline_zeroshot"], out["baseline_knn"], out["predict_fused"]
    rows = [
        (
            "synth",
            f"{s['images']} views + {s['duplicates']} copies + {s['corrupt']} broken files, "
            f"{countries} countries",
        ),
        (
            "curate_fit",
            f"student vs teacher Spearman {out['curate_fit']['metrics']['holdout']['spearman']:.3f}"
            " (held-out)",
        ),
        (
            "curate_score",
            f"{cs['rows_in']} in = {cs['ok']} ok + {cs['error']} error; {cs['kept']} kept",
        ),
        (
            "curate_dedup",
            f"{dd['rows']} = {dd['kept']} kept + {dd['exact']} exact + {dd['near']} near "
            f"copies + {dd['error']} error (cosine >= {dd['similarity']})",
        ),
        (
            "curate_balance",
            f"{bl['rows']} curated = {bl['kept']} kept + {bl['duplicate']} copies + "
            f"{bl['cell_cap']} over {bl['max_per_cell']}/res-{bl['h3_resolution']} cell",
        ),
        (
            "knowledge",
            f"{kn['reasoning']['kept']} reasoning / {kn['location']['kept']} location examples",
        ),
        ("train_base", f"{r0['steps']} steps full, final loss {r0['final_loss']:.3f}"),
        ("train_reasoning", f"{r1['steps']} steps LoRA, final loss {r1['final_loss']:.3f}"),
        ("train_location", f"{r2['steps']} steps LoRA, final loss {r2['final_loss']:.3f}"),
        ("predict", f"{pr['rows_out']} rows = {pr['ok']} ok + {pr['error']} error"),
        ("baseline_zeroshot", f"{zs['rows_out']} rows = {zs['ok']} ok + {zs['error']} error"),
        (
            "baseline_knn",
            f"{kn_['rows_out']} rows = {kn_['ok']} ok + {kn_['error']} error; "
            f"gallery {kn_['gallery_rows']} train views",
        ),  # fmt: skip
        ("predict_fused", f"{fu['rows_out']} rows = {fu['ok']} ok + {fu['error']} error"),
        *(
            (f"calibrate_{name}", _calibrated_text(out.get(f"calibrate_{name}")))
            for name in ("vlm", "zeroshot", "knn", "fused")
        ),  # fmt: skip
        (
            "evaluate",
            f"country acc {ev['country']['correct'] / max(ev['n'], 1):.3f} "
            f"(chance {1 / countries:.3f}), country F1 {ev['country']['f1']:.3f}, "
            f"city F1 {ev['city']['f1']:.3f}, GeoScore {ev['geoscore']:.0f}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'stage':<{width}}  {'seconds':>7}  result", "-" * 78]
    lines += [f"{name:<{width}}  {t.get(name, 0.0):>7.1f}  {text}" for name, text in rows]
    lines.append("-" * 78)
    lines.append(f"{'total':<{width}}  {sum(t.values()):>7.1f}")
    lines.append(f"report: {Path(out['run']) / 'report' / 'report.md'}")
    lines += ["", f"Held-out views, methods side by side (chance country accuracy "
                  f"{1 / countries:.3f}):", methods_table(ev)]  # fmt: skip
    placed = placed_lines(ev)
    if placed:
        lines += ["", "Calibrated on the val views, measured on the held-out views:", *placed]
    lines += ["", *claim_lines(out)]
    return "\n".join(lines)


def _calibrated_text(result: dict | None) -> str:
    """One line of the summary for a calibrate step (or why there was none)."""
    if not result or "levels" not in result:  # a calibrate result's "skipped" names levels
        return "no confidences in its predictions: not calibrated (shown as -)"
    c = result["levels"].get("country")
    if c is None:
        return f"levels {', '.join(result['levels'])}"
    return (f"{c['rows']} val rows, {c['use']} map: country ECE {c['ece_before']:.3f} -> "
            f"{c['ece_after']:.3f} (in-sample)")  # fmt: skip


def claim_lines(out: dict) -> list[str]:
    """One line per GeoReasoner claim: what this run did for it, and where it is measured.

    The demo trains one arm of each ablation; the other arms (uncurated views, no stage 1)
    and their seeds are ``benchmarks.claims``' job, on a world hard enough to show a gap.
    """
    ev, bl, kn = out["evaluate"], out["curate_balance"], out["knowledge"]
    acc = ev["country"]["correct"] / max(ev["n"], 1)
    where = "measured in BENCHMARKS.md 'claims' (python -m benchmarks.claims, confusable world)"
    return [
        f"claim 1, curation pays: stage 2 trained on the {bl['kept']} views curation kept of "
        f"{bl['rows']}; this run has no uncurated arm, and its world ({out['countries']} "
        f"distinct countries, country acc {acc:.3f}) is too easy to show a gap: {where}",
        f"claim 2, reasoning helps: stage 1 ran on {kn['reasoning']['kept']} clue write-ups "
        f"before stage 2 on {kn['location']['kept']} labels; no stage-2-alone arm here, for the "
        f"same reason: {where}",
    ]
