"""The paper's two claims, measured: curation pays, and reasoning helps, on a world hard enough.

``.venv/bin/python -m benchmarks.claims`` draws the ``confusable`` synthetic world (``georay
synth --preset confusable``: confusable neighbour countries, half the views low-locatability),
builds the stage-1 (clue) and stage-2 (location) SFT files with ``georay.knowledge``, trains the
tiny model's base once (its stand-in for pretraining), then for every seed:

* **curation**: stage 2 alone on the base, trained on the top-N train views by locatability
  (N = the views at or above the curation threshold), on N random views, and on all views,
  the same steps each; held-out country and city accuracy, and training time;
* **reasoning**: stage 1 then stage 2 vs stage 2 alone, on 100% / 30% / 10% of the curated
  (top-N) views' location labels; stage 1 always has every clue write-up, as the paper's game
  rounds do not come from the location set. Stage 2 alone at 100% *is* the curation ablation's
  top-N cell (same data, steps and seed), so it is trained once.

Training runs in this process with the pieces every Ray Train worker uses
(``georay.train.loop.assemble`` and ``train_step``, the tiny presets), without Ray: the claims
are about what the stages learn, and ~20 s of Ray start-up per cell would be most of the time.
Evaluation asks every held-out view the stage-2 question, greedy, as ``benchmarks.learning``.
Every cell is run over ``--seeds`` seeds (stage LoRA init, data order and the random draws);
a cell reports the mean and a 95% t-interval over seeds, and a difference is called only when
the two intervals do not overlap.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks import common

FRACTIONS = (1.0, 0.3, 0.1)
CURATION_ARMS = ("top", "random", "all")
# Two-sided 95% Student t quantiles by degrees of freedom (seeds - 1).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228}  # fmt: skip


# ---- statistics and cell selection (pure; tests/unit/test_benchmarks_claims.py) ----


@dataclass(frozen=True)
class Interval:
    """Mean of per-seed values and its two-sided 95% Student t interval."""

    mean: float
    low: float
    high: float
    n: int

    def text(self, scale: float = 100.0) -> str:
        return f"{self.mean * scale:.1f} [{self.low * scale:.1f}, {self.high * scale:.1f}]"


def interval(values: list[float]) -> Interval:
    """Mean and 95% t interval of ``values`` (one per seed); needs at least two values."""
    n = len(values)
    if n < 2:
        raise ValueError(f"an interval needs at least 2 seeds, got {n}")
    mean = statistics.fmean(values)
    half = _T95.get(n - 1, 1.96) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def call(a: Interval, b: Interval) -> str:
    """``">"`` when a's interval lies wholly above b's, ``"<"`` when below, else ``"="``
    (no call: the intervals overlap)."""
    if a.low > b.high:
        return ">"
    if a.high < b.low:
        return "<"
    return "="


def top_n(ids: list[str], scores: list[float], n: int) -> list[str]:
    """The ``n`` ids with the highest scores (ties broken by id, so the pick is stable)."""
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    return [ids[i] for i in order[:n]]


def draw(ids: list[str], n: int, seed: int, salt: int) -> list[str]:
    """``n`` of ``ids`` at random, a pure function of (seed, salt)."""
    if not 0 <= n <= len(ids):
        raise ValueError(f"cannot draw {n} of {len(ids)}")
    rng = np.random.default_rng([seed, salt])
    return [ids[i] for i in sorted(rng.choice(len(ids), n, replace=False).tolist())]


@dataclass(frozen=True)
class Cell:
    """One training run: which claim, arm and label fraction, which seed, and its start."""

    claim: str  # "curation" | "reasoning"
    arm: str  # curation: top | random | all; reasoning: stage1+2 | stage2
    fraction: float  # share of the arm's location labels used
    seed: int

    @property
    def key(self) -> str:
        return f"{self.arm}-{self.fraction:g}-s{self.seed}"


def plan(seeds: list[int], fractions: tuple[float, ...] = FRACTIONS) -> list[Cell]:
    """Every training run, each once: stage 2 alone on all curated labels is both curation's
    ``top`` cell and reasoning's ``stage2`` cell at 100%, so it appears once (as curation)."""
    cells = []
    for seed in seeds:
        cells += [Cell("curation", arm, 1.0, seed) for arm in CURATION_ARMS]
        for f in fractions:
            cells.append(Cell("reasoning", "stage1+2", f, seed))
            if f != 1.0:
                cells.append(Cell("reasoning", "stage2", f, seed))
    return cells


def cell_of(claim: str, arm: str, fraction: float, seed: int) -> Cell:
    """The run that holds a (claim, arm, fraction, seed) result (see :func:`plan`)."""
    if claim == "reasoning" and arm == "stage2" and fraction == 1.0:
        return Cell("curation", "top", 1.0, seed)
    return Cell(claim, arm, fraction, seed)


def subset(cell: Cell, curated: list[str], all_ids: list[str]) -> list[str]:
    """The location examples (by id) a cell trains on."""
    if cell.arm == "all":
        return list(all_ids)
    if cell.arm == "random":
        return draw(all_ids, len(curated), cell.seed, 1)
    if cell.fraction >= 1.0:
        return list(curated)
    # Both reasoning arms of a seed get the same labels, so only stage 1 differs.
    return draw(curated, max(1, round(cell.fraction * len(curated))), cell.seed, 2)


# ---- running ----


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def prepare(work: Path, preset: str, n: int) -> tuple[Path, Path]:
    """The world and its SFT files (reused when already there)."""
    from georay.config import load_preset
    from georay.knowledge.builder import KnowledgeConfig, build
    from georay.synth.world import SynthConfig, generate_world

    world, sft = work / "world", work / "sft"
    if not (world / "manifest.parquet").exists():
        values = {**load_preset(preset, "georay.synth"), "output": str(world)}
        generate_world(SynthConfig(**{**values, **({"n": n} if n else {})}))
    if not (sft / "location.jsonl").exists():
        build(KnowledgeConfig(output=str(sft), clues=str(world / "clues.jsonl"),
                              manifest=str(world / "manifest.parquet"), split="train"))  # fmt: skip
    return world, sft


def locatability_by_id(world: Path) -> dict[str, float]:
    """The teacher's locatability of every view (exact ADE20K fractions x published weights)."""
    import pyarrow.parquet as pq

    from georay.curate.teacher import fractions_matrix
    from georay.data.ade20k import locatability

    table = pq.read_table(world / "manifest.parquet", columns=["image_id", "ade20k_fractions"])
    matrix, ok = fractions_matrix(table["ade20k_fractions"])
    ids = table["image_id"].to_pylist()
    scores = locatability(matrix)
    return {ids[i]: float(scores[i]) for i in np.flatnonzero(ok)}


def train_local(preset: str, data: Path, source: str, out: Path, steps: int, seed: int) -> dict:
    """Train one stage in this process; save it (LoRA merged) as a plain model folder."""
    import torch

    from georay.config import load_preset
    from georay.train import TrainConfig
    from georay.train.loop import assemble, train_step

    values = {**load_preset(preset, "georay.train"), "input": str(data), "model": source}
    values.update(output=str(out), seed=seed, max_steps=steps or values["max_steps"])
    cfg = TrainConfig(**values)
    started, cpu = time.monotonic(), _cpu_s()
    torch.manual_seed(seed)
    t = assemble(cfg, source)
    batches = t.batches(cfg)
    losses = [
        train_step(t.model, t.optimizer, t.scheduler, batches, cfg, torch.device("cpu"))["loss"]
        for _ in range(t.steps)
    ]
    print(f"{out.name}: {t.steps} steps on {len(t.data)} examples, loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}, {time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
    model = t.model.merge_and_unload() if cfg.finetune == "lora" else t.model
    model.eval()
    model.save_pretrained(str(out))
    t.processor.save_pretrained(str(out))
    return {"steps": t.steps, "examples": len(t.data), "first_loss": losses[0],
            "final_loss": float(np.mean(losses[-10:])), "train_s": time.monotonic() - started,
            "cpu_s": _cpu_s() - cpu}  # fmt: skip


@dataclass
class HeldOut:
    """The held-out views, decoded once at the model's size, and their truth."""

    images: list
    country: list[str]
    city: list[str]
    locatable: np.ndarray  # drawn as a street view (not sky/wall/vegetation)


def held_out(world: Path, max_pixels: int, limit: int) -> HeldOut:
    import pyarrow.parquet as pq

    from georay.data.images import decode_fit
    from georay.data.storage import read_bytes

    test = pq.read_table(world / "manifest.parquet").to_pandas()
    test = test[test["split"] == "test"].reset_index(drop=True)
    if limit:
        test = test.iloc[:limit]
    images = [decode_fit(read_bytes(str(world / u)), max_pixels) for u in test["uri"]]
    return HeldOut(images, test["country"].tolist(), test["city"].tolist(),
                   (test["view"] == "street").to_numpy())  # fmt: skip


def accuracy(model_dir: Path, views: HeldOut, batch: int = 64) -> dict:
    """Greedy stage-2 answers for every held-out view: country and city accuracy."""
    from georay.geo.gazetteer import get_gazetteer
    from georay.models.vlm import generate_answers, load_vlm
    from georay.protocol.answers import parse_answer
    from georay.protocol.prompts import LOCATION_QUESTION

    model, processor = load_vlm(str(model_dir))
    gaz = get_gazetteer()
    texts = []
    for start in range(0, len(views.images), batch):
        chunk = views.images[start : start + batch]
        texts += generate_answers(model, processor, chunk, LOCATION_QUESTION, max_new_tokens=32)
    answers = [parse_answer(t) for t in texts]
    country = np.array([gaz.country_code(a.country) if a.country else None for a in answers])
    country_ok = country == np.array(views.country, dtype=object)
    city_ok = country_ok & np.array([(a.city or "").strip().lower() == c.lower()
                                     for a, c in zip(answers, views.city, strict=True)])  # fmt: skip
    street = views.locatable
    return {"n_test": len(texts), "country": float(country_ok.mean()),
            "city": float(city_ok.mean()),
            "country_street": float(country_ok[street].mean()),
            "city_street": float(city_ok[street].mean()), "example": texts[0]}  # fmt: skip


def write_subset(examples: list, ids: list[str], path: Path) -> Path:
    from georay.protocol.sft import write_sft

    keep = set(ids)
    write_sft([e for e in examples if e.id in keep], path)
    return path


def run_seed(job: tuple) -> list[dict]:
    """Every cell of one seed (after the base exists); rows appended to ``work/cells.jsonl``,
    whose cells a rerun skips. Module level, so a process pool can run seeds side by side."""
    import torch

    from georay.models.vlm import processor_max_pixels, tiny_qwen2vl
    from georay.train.data import load_examples

    args, seed, curated, all_ids = job
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    sft, base, done_path = work / "sft", work / "base", work / "cells.jsonl"
    location = load_examples(str(sft / "location.jsonl"))  # absolute image paths
    views = held_out(work / "world", processor_max_pixels(tiny_qwen2vl()[1]), args.test_limit)
    done = _done(done_path)
    rows = []
    for cell in plan([seed], args.fractions):
        if cell.key in done:
            continue
        ids = subset(cell, curated, all_ids)
        data = write_subset(location, ids, work / "sets" / f"{cell.key}.jsonl")
        start = base
        if cell.arm == "stage1+2":
            start = work / f"stage1-s{cell.seed}"
            if not (start / "train.json").exists():
                info = train_local("tiny_reasoning", sft / "reasoning.jsonl", str(base), start,
                                   args.steps1, cell.seed)  # fmt: skip
                (start / "train.json").write_text(json.dumps(info))
        out = work / "runs" / cell.key
        info = train_local("tiny_location", data, str(start), out, args.steps2, cell.seed)
        row = {"key": cell.key, **asdict(cell), **info, **accuracy(out, views)}
        print(json.dumps(row), flush=True)
        with done_path.open("a") as fh:  # one short line per append: safe beside other seeds
            fh.write(json.dumps(row) + "\n")
        rows.append(row)
    return rows


def _done(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {(r := json.loads(line))["key"]: r for line in path.read_text().splitlines()}


def run(args: argparse.Namespace, work: Path) -> dict:
    """World, SFT files and base (once), then every seed's cells, ``--jobs`` seeds at a time."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    from georay.models.vlm import tiny_qwen2vl
    from georay.protocol.sft import read_sft

    torch.set_num_threads(args.threads)
    started = time.monotonic()
    world, sft = prepare(work, args.preset, args.n)
    scores = locatability_by_id(world)
    all_ids = [e.id for e in read_sft(sft / "location.jsonl")]
    kept = sum(scores[i] >= args.threshold for i in all_ids)
    curated = top_n(all_ids, [scores[i] for i in all_ids], kept)
    prepared_s = time.monotonic() - started
    base = work / "base"
    if not (work / "base.json").exists():
        tiny_qwen2vl(save_dir=work / "tiny", seed=0)
        info = train_local("tiny_base", world / "pretrain.jsonl", str(work / "tiny"), base,
                           args.base_steps, 0)  # fmt: skip
        (work / "base.json").write_text(json.dumps(info))
    seeds = list(range(args.seeds))
    jobs = [(args, seed, curated, all_ids) for seed in seeds]
    if args.jobs > 1:  # spawn: torch and pyarrow threads do not survive a fork
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(run_seed, jobs))
    else:
        for job in jobs:
            run_seed(job)
    cells = _done(work / "cells.jsonl")
    return {"cells": cells, "prepared_s": prepared_s, "n_curated": len(curated),
            "n_train": len(all_ids), "n_test": next(iter(cells.values()))["n_test"],
            "stage1": [json.loads((work / f"stage1-s{s}" / "train.json").read_text())
                       for s in seeds if (work / f"stage1-s{s}" / "train.json").exists()],
            "base": json.loads((work / "base.json").read_text()),
            "world": json.loads((world / "world.json").read_text())["config"]}  # fmt: skip


# ---- the report ----

# (cell field, label): accuracy on every held-out view, and on those drawn as street views
# (the low-locatability ones show only a pair's shared wall, sky and trees).
METRICS = (
    ("country", "country"),
    ("city", "city"),
    ("country_street", "country, street views"),
    ("city_street", "city, street views"),
)


def cell_interval(cells: dict, claim: str, arm: str, fraction: float, seeds: list[int],
                  metric: str) -> Interval:  # fmt: skip
    return interval([cells[cell_of(claim, arm, fraction, s).key][metric] for s in seeds])


def render(summary: dict, args: argparse.Namespace, conditions: common.Conditions) -> str:
    cells, seeds = summary["cells"], list(range(args.seeds))
    w = summary["world"]

    def get(claim, arm, f, metric):
        return cell_interval(cells, claim, arm, f, seeds, metric)

    def mean_of(claim, arm, f, key):
        return statistics.fmean(cells[cell_of(claim, arm, f, s).key][key] for s in seeds)

    lines = [
        "## claims",
        "",
        conditions.line(),
        "",
        f"World: `georay synth --preset {args.preset}`: {w['n']} views, {w['countries']} "
        f"countries (confusable neighbour pairs), {w['low_locatability']:.0%} drawn "
        f"low-locatability, {w['width']}x{w['height']}; {summary['n_train']} train views with "
        f"location labels, of which {summary['n_curated']} score >= {args.threshold} (teacher "
        f"locatability: exact ADE20K fractions x the published weights): N = "
        f"{summary['n_curated']}; {summary['n_test']} held-out views (split test, low views "
        f"included). Tiny Qwen2-VL, in-process training with Ray Train's loop pieces; base "
        f"{summary['base']['steps']} steps once, stage 1 {args.steps1 or 'preset'} steps, stage "
        f"2 {args.steps2 or 'preset'} steps per cell. {len(seeds)} seeds per cell; mean and 95% "
        "t interval over seeds, in %; a difference is called only when intervals do not overlap.",
        "",
        "### Curation: top-N by locatability vs N random vs all views (stage 2, same steps)",
        "",
        "| arm | examples | country | city | country, street views | city, street views | "
        "train s (CPU s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in CURATION_ARMS:
        row = " | ".join(get("curation", arm, 1.0, m).text() for m, _ in METRICS)
        lines.append(
            f"| {arm} | {mean_of('curation', arm, 1.0, 'examples'):.0f} | {row} | "
            f"{mean_of('curation', arm, 1.0, 'train_s'):.0f} "
            f"({mean_of('curation', arm, 1.0, 'cpu_s'):.0f}) |"
        )
    lines.append("")
    for metric, label in METRICS:
        calls = [
            f"{_verdict(call(get('curation', 'top', 1.0, metric), get('curation', o, 1.0, metric)))}"
            f" {o}"
            for o in ("random", "all")
        ]
        lines.append(f"- {label}: top-N {calls[0]}; top-N {calls[1]}.")
    lines += [
        "",
        "### Reasoning: stage 1 then stage 2 vs stage 2 alone, by share of location labels",
        "",
        "| labels | examples | accuracy | stage 1 then 2 | stage 2 alone | call |",
        "|---|---|---|---|---|---|",
    ]
    for f in args.fractions:
        for metric, label in METRICS:
            a, b = get("reasoning", "stage1+2", f, metric), get("reasoning", "stage2", f, metric)
            lines.append(
                f"| {f:.0%} | {mean_of('reasoning', 'stage1+2', f, 'examples'):.0f} | {label} | "
                f"{a.text()} | {b.text()} | {_verdict(call(a, b))} |"
            )
    return "\n".join(lines)


def _verdict(c: str) -> str:
    return {">": "beats", "<": "loses to", "=": "cannot be told from (intervals overlap)"}[c]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/georay-claims", help="scratch folder (resumes)")
    parser.add_argument("--preset", default="confusable", help="georay synth preset")
    parser.add_argument("--n", type=int, default=0, help="views (0: the preset's)")
    parser.add_argument("--seeds", type=int, default=8, help="seeds per cell (>= 2)")
    parser.add_argument("--fractions", type=lambda s: tuple(float(x) for x in s.split(",")),
                        default=FRACTIONS)  # fmt: skip
    parser.add_argument("--base-steps", type=int, default=0, help="base steps (0: preset)")
    parser.add_argument("--steps1", type=int, default=0, help="stage-1 steps (0: preset)")
    parser.add_argument("--steps2", type=int, default=0, help="stage-2 steps (0: preset)")
    parser.add_argument("--threshold", type=float, default=0.4, help="curation threshold")
    parser.add_argument("--test-limit", type=int, default=0, help="held-out views (0: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="seeds at a time")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    conditions = common.Conditions()
    summary = run(args, Path(args.work))
    text = render(summary, args, conditions)
    print(text)
    if not args.no_write:
        common.write_section("claims", text)


if __name__ == "__main__":
    main()
