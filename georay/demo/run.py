"""``georay demo``: the whole GeoReasoner pipeline on the built-in default.

Synthetic world (with planted copies) -> curate (fit the CLIP student on teacher labels, score,
keep the locatable views, drop duplicates, cap views per H3 cell) -> knowledge (stage-1
reasoning and stage-2 location conversations) -> train stage 1 -> train stage 2 -> bulk predict
on the held-out views -> evaluate. Everything runs on a local Ray
with tiny models built in code, on CPU, and lands in one run folder::

    RUN/world/       images, manifest.parquet, clues.jsonl (georay synth)
    RUN/curate/      head/, scores/, curated/, embeddings/, summary.json; dedup/ (curate
                     dedup), balance/ (curate balance: the balanced curated set, cells.csv, png)
    RUN/knowledge/   reasoning.jsonl, location.jsonl, dropped.jsonl
    RUN/train/       reasoning/ and location/ artifacts (+ Ray Train checkpoints)
    RUN/predict/     predictions/ on the held-out split, summary.json
    RUN/report/      metrics.json, report.md, plots

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
    from georay.curate import (
        BalanceConfig,
        DedupConfig,
        FitConfig,
        ScoreConfig,
        balance,
        dedup,
        fit,
        score,
    )
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
        ),  # fmt: skip
    )
    fit_preset = load_preset("tiny", "georay.curate")
    step(
        "curate_fit",
        fit,
        FitConfig(**{**fit_preset, "manifest": manifest, "output": str(curate / "head")}),
    )
    step(
        "curate_score",
        score,
        ScoreConfig(
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
    reasoning = run / "train" / "reasoning"
    step(
        "train_reasoning",
        train,
        TrainConfig(
            **{
                **load_preset(cfg.reasoning_preset, "georay.train"),
                "stage": "reasoning",
                "data": str(knowledge / "reasoning.jsonl"),
                "model": "tiny",
                "output": str(reasoning),
                "seed": cfg.seed,
            }
        ),
    )
    location = run / "train" / "location"
    step(
        "train_location",
        train,
        TrainConfig(
            **{
                **load_preset(cfg.location_preset, "georay.train"),
                "stage": "location",
                "data": str(knowledge / "location.jsonl"),
                "model": str(reasoning),
                "output": str(location),
                "seed": cfg.seed,
            }
        ),
    )
    held_out = _held_out_manifest(manifest, run / "predict-input.parquet")
    step(
        "predict",
        predict,
        PredictConfig(
            input=held_out,
            model=str(location),
            output=str(run / "predict"),
        ),
    )
    step(
        "evaluate",
        evaluate,
        EvaluateConfig(
            predictions=str(run / "predict" / "predictions"),
            truth=manifest,
            split="test",
            output=str(run / "report"),
        ),
    )
    out["timings_s"] = timings
    (run / "summary.json").write_text(json.dumps(_jsonable(out), indent=2, default=str))
    return out


def _held_out_manifest(manifest: str, path: Path) -> str:
    """The world's test split (corrupt files included, so prediction records their errors)."""
    import pyarrow.compute as pc

    from georay.data.manifest import read_manifest, write_manifest

    table = read_manifest(manifest)  # resolves the world's relative image paths
    keep = pc.or_(
        pc.fill_null(pc.equal(table["split"], "test"), False),
        pc.equal(table["view"], "corrupt"),
    )
    write_manifest(table.filter(keep).drop_columns(["ade20k_fractions"]), str(path))
    return str(path)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "losses"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def summary_table(out: dict) -> str:
    """A plain-text table of what each stage did, for the end of the demo."""
    t, countries = out["timings_s"], out["countries"]
    s, cs, kn = out["synth"], out["curate_score"], out["knowledge"]
    dd, bl = out["curate_dedup"], out["curate_balance"]
    r1, r2, pr, ev = out["train_reasoning"], out["train_location"], out["predict"], out["evaluate"]
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
        ("train_reasoning", f"{r1['steps']} steps, final loss {r1['final_loss']:.3f}"),
        ("train_location", f"{r2['steps']} steps, final loss {r2['final_loss']:.3f}"),
        ("predict", f"{pr['rows_out']} rows = {pr['ok']} ok + {pr['error']} error"),
        (
            "evaluate",
            f"country acc {ev['country']['correct'] / max(ev['n'], 1):.3f} "
            f"(chance {1 / countries:.3f}), country F1 {ev['country']['f1']:.3f}, "
            f"city F1 {ev['city']['f1']:.3f}, GeoScore {ev['geoscore']:.0f}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'stage':<{width}}  {'seconds':>7}  result", "-" * 78]
    lines += [f"{name:<{width}}  {t[name]:>7.1f}  {text}" for name, text in rows]
    lines.append("-" * 78)
    lines.append(f"{'total':<{width}}  {sum(t.values()):>7.1f}")
    lines.append(f"report: {Path(out['run']) / 'report' / 'report.md'}")
    return "\n".join(lines)
