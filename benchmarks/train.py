"""Training throughput: the Ray Train path (1 worker) vs a plain single-process torch loop.

``.venv/bin/python -m benchmarks.train`` trains the tiny Qwen2-VL on the same colour-coded
examples both ways, with the same pieces (``georay.train.loop``: model set-up, optimizer,
``train_step``, the batch order): once in this process, once through ``georay.train.train``
(TorchTrainer, 1 worker holding both CPUs, per-step metrics, a final checkpoint and artifact).
Throughput is steady-state tokens/s (prompt + image + answer tokens, padding excluded) over the
steps after the first epoch, in which each example is decoded and tokenized once, measured
from step timestamps so everything between steps (reports, checkpoint hand-off) counts. Runs
alternate, repeated; medians. Start-up (Ray, worker group, model load) is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common


def write_part(part: str, text: str) -> None:
    """Replace one part (``learning`` or ``throughput``) of the train section of BENCHMARKS.md."""
    common.write_part("train", ("throughput", "learning"), part, text)


def make_data(folder: Path, n: int) -> Path:
    """``n`` colour-coded 64x48 views of 8 'countries' and their stage-2 SFT file."""
    from georay.data.images import encode_jpeg
    from georay.protocol import prompts
    from georay.protocol.sft import SftExample, write_sft

    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (8, 3))
    (folder / "images").mkdir(parents=True, exist_ok=True)
    examples = []
    for i in range(n):
        c = i % 8
        pixels = np.clip(rng.normal(palette[c], 30, (48, 64, 3)), 0, 255).astype(np.uint8)
        (folder / "images" / f"{i}.jpg").write_bytes(encode_jpeg(pixels))
        answer = prompts.location_answer(f"Country {c}", f"City {c}")
        examples.append(SftExample(str(i), f"images/{i}.jpg", prompts.LOCATION_QUESTION, answer))
    write_sft(examples, folder / "location.jsonl")
    return folder / "location.jsonl"


def steady_tokens_per_s(history: list[dict], skip: int) -> float:
    """Tokens/s from step ``skip`` on, timed from the end of step ``skip`` to the last step."""
    steps = history[skip:]
    elapsed = steps[-1]["time"] - history[skip - 1]["time"]
    return sum(h["tokens"] for h in steps[1:]) / elapsed


def plain_loop(cfg) -> tuple[list[dict], float]:
    """The baseline: the same model, data order and step in this process, no Ray."""
    import torch

    from georay.train.loop import assemble, train_step

    started = time.monotonic()
    torch.set_num_threads(int(cfg.cpus_per_worker))
    torch.manual_seed(cfg.seed)
    t = assemble(cfg, cfg.model)  # what each Ray Train worker builds, here in this process
    batches = t.batches(cfg)
    history = []
    for step in range(1, cfg.max_steps + 1):
        metrics = train_step(t.model, t.optimizer, t.scheduler, batches, cfg, torch.device("cpu"))
        history.append({**metrics, "step": step, "time": time.time()})
    return history, time.monotonic() - started


def ray_loop(cfg) -> tuple[list[dict], float]:
    import json

    from georay.train import train

    summary = train(cfg)
    lines = (Path(summary["artifact"]) / "metrics-location.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], summary["elapsed_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--report-every",
        default="10,40",
        help="ray.train.report every N steps; several values: one Ray row each",
    )
    args = parser.parse_args()
    every = [int(x) for x in args.report_every.split(",")]
    conditions = common.Conditions()

    import ray

    from georay.models.vlm import tiny_qwen2vl
    from georay.train import TrainConfig

    skip = args.examples // args.batch_size  # the first epoch encodes every example once
    if args.steps <= skip + 2:
        raise SystemExit(f"--steps must exceed one epoch ({skip} steps) by a few")
    tmp = Path(tempfile.mkdtemp(prefix="georay-bench-train-"))
    data = make_data(tmp, args.examples)
    tiny_qwen2vl(save_dir=tmp / "base")
    base = dict(
        stage="location",
        input=str(data),
        model=str(tmp / "base"),
        finetune="full",
        lr=3e-3,
        batch_size=args.batch_size,
        max_steps=args.steps,
        checkpoint_every=args.steps,
        cpus_per_worker=2,
        max_length=512,
    )
    # Ray starts its workers at nice 15. On a machine shared with other processes at nice 0
    # that starves the training worker; at nice 0 it competes like everything else.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    paths = ["plain"] + [f"ray{n}" for n in every]
    rates: dict[str, list[float]] = {k: [] for k in paths}
    totals: dict[str, list[float]] = {k: [] for k in paths}
    step_s: list[float] = []
    try:
        for i in range(args.repeat):
            cfg = TrainConfig(output=str(tmp / f"plain{i}"), **base)
            history, total = plain_loop(cfg)
            rates["plain"].append(steady_tokens_per_s(history, skip))
            totals["plain"].append(total)
            step_s.append((history[-1]["time"] - history[skip - 1]["time"]) / (args.steps - skip))
            for n in every:
                cfg = TrainConfig(output=str(tmp / f"ray{n}-{i}"), name=f"bench-{n}-{i}",
                                  report_every=n, **base)  # fmt: skip
                history, total = ray_loop(cfg)
                rates[f"ray{n}"].append(steady_tokens_per_s(history, skip))
                totals[f"ray{n}"].append(total)
            print(f"run {i}: " + ", ".join(f"{k} {v[-1]:.0f} tok/s" for k, v in rates.items()))
    finally:
        ray.shutdown()
    med = {k: statistics.median(v) for k, v in rates.items()}
    tot = {k: statistics.median(v) for k, v in totals.items()}
    step = statistics.median(step_s)
    rows = [
        f"| plain single-process torch loop | {med['plain']:.0f} | "
        f"{', '.join(f'{r:.0f}' for r in rates['plain'])} | {tot['plain']:.1f} s | |"
    ]
    for n in every:
        k = f"ray{n}"
        rows.append(
            f"| `georay.train.train`, TorchTrainer, 1 worker, `--report-every {n}` "
            f"(a report every {n * step:.1f} s of plain steps) | {med[k]:.0f} | "
            f"{', '.join(f'{r:.0f}' for r in rates[k])} | {tot[k]:.1f} s "
            f"| **{med[k] / med['plain']:.2f}** |"
        )
    text = "\n".join(
        [
            "### Throughput: Ray Train (1 worker) vs plain torch loop (issue 4 item 5)",
            "",
            f"{conditions.line()} The paths alternate within one run; the figures are "
            "medians of the runs.",
            "",
            "Tiny Qwen2-VL, full fine-tuning, batch 16 of 64x48 colour-coded views (chat "
            "prompt, image tokens and a short answer), 2 CPU threads in both paths. Steady "
            f"state = steps {skip + 1}..{args.steps} (after the first epoch), wall-clock "
            "between step timestamps, so the `ray.train.report` calls count. Median plain "
            f"step: {step * 1000:.0f} ms.",
            "",
            "| path | steady tokens/s (median) | runs | whole call incl. start-up (median) "
            "| ratio to plain (target >= 0.9) |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "The benchmark starts Ray with `RAY_worker_niceness=0` (by default Ray runs its "
            "workers at nice 15).",
        ]
    )
    print(text)
    write_part("throughput", text)


if __name__ == "__main__":
    main()
