"""Real-size check on CPU: Qwen2-VL-2B's architecture through georay's train, merge and predict.

``python -m benchmarks.realsize`` builds a random-init model with exactly Qwen2-VL-2B-Instruct's
architecture (:func:`georay.models.qwen2vl.build_qwen2vl`; georay's tiny BPE tokenizer, the
embedding kept at the published 151,936 rows) in bf16, saves it like real weights, and runs
georay's own code paths on it:

1. stage 1 (reasoning): ``setup_model`` (load + the paper's LoRA r 64 / alpha 16 / dropout
   0.05), two ``train_step`` calls, ``save_checkpoint``, ``write_artifact``;
2. the same LoRA step again with ``gradient_checkpointing`` on, on the same batch as step 2;
3. stage 2 (location) from the stage-1 artifact: ``setup_model`` loads the base and merges the
   stage-1 adapter, puts a second LoRA on top, one step, and an artifact listing both;
4. predict: ``georay.predict.Predictor`` loads the stage-2 artifact (base + both adapters
   merged, in order) and answers a batch of two images with a few greedy tokens.

It checks that peft's trainable-parameter count equals the count computed by hand from the
config, and records each phase's time and peak RSS (VmHWM, reset between phases through
``/proc/self/clear_refs``), the load average at the start and the end, and the whole run's
wall time, and writes them into the ``realsize`` section of BENCHMARKS.md. The base is bf16
on CPU (setup_model's ``dtype``); peft keeps the adapters in fp32, as on GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Conditions, write_section

AREA = "realsize"
GIB = 1024**3
MAX_PIXELS = 224 * 224  # training's image bound: 448x336 views become 168x252, 54 tokens


def rss_bytes(field: str = "VmHWM") -> int:
    """The process's resident set (``VmRSS``) or its high-water mark (``VmHWM``), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Phases:
    """Time and peak RSS of consecutive phases of the run."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.per_phase_peak = reset_peak()

    def run(self, name: str, fn, *args, **kwargs):
        """Call ``fn``; record wall time, CPU time (all threads) and the peak RSS."""
        gc.collect()
        self.per_phase_peak = reset_peak() and self.per_phase_peak
        start, cpu = time.perf_counter(), time.process_time()
        result = fn(*args, **kwargs)
        row = {
            "phase": name,
            "s": time.perf_counter() - start,
            # CPU seconds say what a phase costs whatever else runs on the machine.
            "cpu_s": time.process_time() - cpu,
            "peak": rss_bytes("VmHWM"),
        }
        self.rows.append(row)
        print(
            f"{name}: {row['s']:.1f} s, CPU {row['cpu_s']:.1f} s, "
            f"peak RSS {row['peak'] / GIB:.2f} GiB",
            flush=True,
        )
        return result


@contextlib.contextmanager
def saved_for_backward(model, into: dict):
    """Count the bytes autograd keeps for the backward pass (activations, not weights).

    Every tensor saved outside a checkpointed block goes through the pack hook; a storage is
    counted once, whole (a view keeps its whole buffer alive), and the model's own parameters
    not at all. With non-reentrant checkpointing the blocks save only their inputs out here.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    into["bytes"] = 0

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            into["bytes"] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield


@contextlib.contextmanager
def adapter_timer(into: list[dict]):
    """Time each adapter georay merges: ``PeftModel.from_pretrained``, then its merge.

    georay.models.artifact loads every adapter with ``PeftModel.from_pretrained(model, path)``
    and merges it with ``.merge_and_unload()``; both are wrapped while the context is open.
    """
    from peft import PeftModel

    original = PeftModel.__dict__["from_pretrained"]  # the classmethod itself, to restore

    def from_pretrained(*args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        model = original.__get__(None, PeftModel)(*args, **kwargs)
        row = {"load_s": time.perf_counter() - start, "load_cpu_s": time.process_time() - cpu}
        merge = model.merge_and_unload

        def merge_and_unload(*a, **k):
            start, cpu = time.perf_counter(), time.process_time()
            merged = merge(*a, **k)
            row.update(merge_s=time.perf_counter() - start, merge_cpu_s=time.process_time() - cpu)
            into.append(row)
            return merged

        model.merge_and_unload = merge_and_unload
        return model

    PeftModel.from_pretrained = from_pretrained
    try:
        yield
    finally:
        PeftModel.from_pretrained = original


def make_data(folder: Path, n: int) -> dict[str, Path]:
    """``n`` 448x336 views of 2 colour-coded 'countries' and both stages' SFT files."""
    from georay.data.images import encode_jpeg
    from georay.protocol import prompts
    from georay.protocol.sft import SftExample, write_sft

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {"reasoning": [], "location": []}
    for i in range(n):
        pixels = np.clip(rng.normal(60 + 120 * (i % 2), 40, (336, 448, 3)), 0, 255)
        (folder / "images" / f"{i}.jpg").write_bytes(encode_jpeg(pixels.astype(np.uint8)))
        country = ("Chile", "India")[i % 2]
        reasons = "Terracotta tiled roofs, dry hills and yellow road markings point here."
        rows["reasoning"].append(
            SftExample(
                str(i),
                f"images/{i}.jpg",
                prompts.REASONING_QUESTION,
                prompts.reasoning_answer(country, reasons),
            )
        )
        rows["location"].append(
            SftExample(
                str(i),
                f"images/{i}.jpg",
                prompts.LOCATION_QUESTION,
                prompts.location_answer(country, ("Santiago", "Mumbai")[i % 2]),
            )
        )
    paths = {}
    for stage, examples in rows.items():
        paths[stage] = folder / f"{stage}.jsonl"
        write_sft(examples, paths[stage])
    return paths


def build_base(folder: Path) -> None:
    """The 2B model, random init in bf16, saved (model + processor) like real weights."""
    from georay.models.qwen2vl import build_qwen2vl

    model, processor = build_qwen2vl("2b", dtype=torch.bfloat16)
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))


def stage_cfg(stage: str, data: Path, model: str, out: Path, batch_size: int, **kw):
    from georay.train.config import TrainConfig

    # TrainConfig's LoRA defaults are the paper's: r 64, alpha 16, dropout 0.05.
    return TrainConfig(
        stage=stage,
        input=str(data),
        model=model,
        output=str(out),
        finetune="lora",
        lr=1e-5,
        batch_size=batch_size,
        max_steps=2,
        max_pixels=MAX_PIXELS,
        **kw,
    )


def trainer(cfg, source: str, start: int = 0):
    """The one-process trainer (bf16 base) and its batch iterator from micro-batch ``start``."""
    from georay.train.loop import assemble

    t = assemble(cfg, source, dtype=torch.bfloat16)
    return t.model, t.processor, t.optimizer, t.scheduler, t.batches(cfg, start=start)


def step(parts, cfg) -> dict:
    from georay.train.loop import train_step

    model, _, optimizer, scheduler, batches = parts
    saved: dict = {}
    with saved_for_backward(model, saved):
        metrics = train_step(model, optimizer, scheduler, batches, cfg, torch.device("cpu"))
    metrics["saved_bytes"] = saved["bytes"]
    print(
        f"  loss {metrics['loss']:.3f}, {metrics['tokens']} tokens, "
        f"{saved['bytes'] / 2**20:.0f} MiB kept for backward",
        flush=True,
    )
    return metrics


def finish_stage(parts, cfg, folder: Path, earlier: list[tuple[str, Path]], base: str) -> Path:
    """save_checkpoint (adapter + processor) and an artifact listing every adapter so far."""
    from georay.models.artifact import write_artifact
    from georay.train.loop import Worker, save_checkpoint

    model, processor, optimizer, scheduler, _ = parts
    ckpt = folder / f"{cfg.stage}-checkpoint"
    ckpt.mkdir()
    worker = Worker(cfg, model, optimizer, scheduler, processor, rank=0, world=1)
    save_checkpoint(ckpt, worker, 1, final=True)
    out = folder / f"{cfg.stage}-artifact"
    adapters = [*earlier, (cfg.stage, ckpt / "adapter")]
    write_artifact(out, base_model=base, processor=processor, adapters=adapters)
    return out


def predictor(artifact: Path, tokens: int):
    """georay's predictor on the artifact: base loaded, adapters merged in order."""
    from georay.predict.config import ModelSettings
    from georay.predict.predictor import Predictor

    settings = ModelSettings(
        model=str(artifact), device="cpu", dtype="bfloat16", max_new_tokens=tokens, batch_size=2
    )
    return Predictor(settings)


def run(work: Path, batch_size: int, tokens: int) -> dict:
    from georay.models.lora import trainable_parameters
    from georay.models.qwen2vl import QWEN2_VL_2B_PARAMS, QWEN2_VL_2B_TEXT, lora_param_count

    phases, merges = Phases(), []
    data = make_data(work / "data", 2 * batch_size)
    base = str(work / "base")
    phases.run("build 2B random-init bf16 + save", build_base, Path(base))

    cfg1 = stage_cfg("reasoning", data["reasoning"], base, work / "s1", batch_size)
    parts = phases.run("stage 1: setup_model (load bf16 base, LoRA)", trainer, cfg1, base)
    model = parts[0]
    trainable, total = trainable_parameters(model)
    by_hand = lora_param_count(QWEN2_VL_2B_TEXT, cfg1.lora_r, cfg1.lora_targets)
    print(f"trainable parameters: counted {trainable:,}, by hand {by_hand:,}")
    assert trainable == by_hand, (trainable, by_hand)
    assert total - trainable == QWEN2_VL_2B_PARAMS, total - trainable
    tokenizer_size = len(parts[1].tokenizer)
    dtypes = {
        "base": str(model.base_model.model.dtype),
        "lora": str(next(p.dtype for n, p in model.named_parameters() if "lora_A" in n)),
    }
    steps = [phases.run(f"stage 1: LoRA step {i}", step, parts, cfg1) for i in (1, 2)]
    s1 = phases.run("stage 1: checkpoint + artifact", finish_stage, parts, cfg1, work, [], base)
    del parts, model
    gc.collect()

    cfg_gc = stage_cfg(
        "reasoning", data["reasoning"], base, work / "gc", batch_size, gradient_checkpointing=True
    )
    # Micro-batch 1 is the batch of step 2 above: the same tokens with and without.
    parts = phases.run("setup_model, --gradient-checkpointing", trainer, cfg_gc, base, 1)
    steps.append(phases.run("LoRA step 2 again, gradient checkpointing", step, parts, cfg_gc))
    del parts
    gc.collect()

    cfg2 = stage_cfg("location", data["location"], str(s1), work / "s2", batch_size)
    with adapter_timer(merges):
        parts = phases.run(
            "stage 2: setup_model (load base, merge stage 1, LoRA)", trainer, cfg2, str(s1)
        )
    steps.append(phases.run("stage 2: LoRA step", step, parts, cfg2))
    s2 = phases.run(
        "stage 2: checkpoint + artifact",
        finish_stage,
        parts,
        cfg2,
        work,
        [("reasoning", s1 / "adapters" / "reasoning")],
        base,
    )
    del parts
    gc.collect()

    images = [(work / "data" / "images" / f"{i}.jpg").read_bytes() for i in range(2)]
    with adapter_timer(merges):
        model = phases.run(
            "predict: load stage-2 artifact (base + 2 merges)", predictor, s2, tokens
        )
    rows = phases.run(f"predict: 2 images, {tokens} new tokens", model.predict_bytes, images)
    return {
        "phases": phases.rows,
        "merges": merges,
        "tokenizer_size": tokenizer_size,
        "batch_size": batch_size,
        "per_phase_peak": phases.per_phase_peak,
        "steps": steps,
        "trainable": trainable,
        "by_hand": by_hand,
        "total": total,
        "dtypes": dtypes,
        "answers": [r["raw_text"] for r in rows],
    }


def report(result: dict, conditions: Conditions, wall_s: float) -> str:
    rows, steps = result["phases"], result["steps"]
    losses = ", ".join(f"{s['loss']:.3f}" for s in steps)
    peak = max(r["peak"] for r in rows)
    plain, checkpointed = steps[1], steps[2]
    cpu_total = sum(r["cpu_s"] for r in rows)
    table = ["| phase | wall | CPU time | peak RSS |", "|---|---|---|---|"] + [
        f"| {r['phase']} | {r['s']:.1f} s | {r['cpu_s']:.1f} s | {r['peak'] / GIB:.2f} GiB |"
        for r in rows
    ]
    saved = [s["saved_bytes"] / s["tokens"] / 2**20 for s in (plain, checkpointed)]
    cpu = {r["phase"]: r["cpu_s"] for r in rows}
    cpu_ratio = cpu["LoRA step 2 again, gradient checkpointing"] / cpu["stage 1: LoRA step 2"]
    merges = "; ".join(
        f"{where}: load {m['load_s']:.1f} s wall / {m['load_cpu_s']:.1f} s CPU, merge "
        f"{m['merge_s']:.1f} s / {m['merge_cpu_s']:.1f} s"
        for where, m in zip(
            ("stage 1 into the base (stage-2 setup)", "predict: stage 1", "predict: stage 2"),
            result["merges"],
            strict=False,
        )
    )
    lines = [
        "## realsize",
        "",
        f"{conditions.line()} torch {torch.__version__} with {torch.get_num_threads()} threads. "
        f"Whole run: **{wall_s / 60:.1f} min** wall, {cpu_total / 60:.1f} min of CPU time (all "
        f"threads) in the phases below; peak RSS **{peak / GIB:.2f} GiB** (bar: 20 GiB).",
        "",
        "Random-init model with exactly Qwen2-VL-2B-Instruct's architecture "
        "(`georay.models.qwen2vl`, config typed in from the published config.json: "
        f"{result['total'] - result['trainable']:,} parameters), georay's tiny BPE tokenizer "
        f"({result['tokenizer_size']} tokens) with the vocabulary padded to the published "
        f"151,936 embedding rows. Base weights {result['dtypes']['base']}, LoRA weights "
        f"{result['dtypes']['lora']} (peft), no autocast on CPU. Batches of "
        f"{result['batch_size']} 448x336 views bounded by `max_pixels` {MAX_PIXELS}; the paper's "
        "LoRA (r 64, alpha 16, dropout 0.05, q/k/v/o/gate/up/down of the language model). "
        "Each phase is georay's own code path (module docstring).",
        "",
        f"Trainable parameters: counted {result['trainable']:,}, by hand "
        f"{result['by_hand']:,} (28 layers x 64 x (q 1536+1536, k 1536+256, v 1536+256, "
        "o 1536+1536, gate/up 2 x (1536+8960), down 8960+1536)): equal.",
        "",
        *table,
        "",
        f"LoRA step on the same {plain['tokens']} tokens: {plain['step_time_s']:.1f} s "
        f"without, {checkpointed['step_time_s']:.1f} s with gradient checkpointing: "
        f"{checkpointed['step_time_s'] / plain['step_time_s']:.2f}x wall, {cpu_ratio:.2f}x CPU "
        "time. What autograd kept for the backward pass (activations, counted by a "
        f"saved-tensor hook): {plain['saved_bytes'] / 2**20:.0f} MiB without, "
        f"{checkpointed['saved_bytes'] / 2**20:.0f} MiB with checkpointing: {saved[0]:.2f} "
        f"vs {saved[1]:.2f} MiB a token (CPU: bf16 base, fp32 adapter math, no autocast).",
        "",
        f"Adapters (`PeftModel.from_pretrained` + `merge_and_unload`, as "
        f"`georay.models.artifact` runs them): {merges}.",
        "",
        f"Losses (steps 1, 2, checkpointed 2, stage 2): {losses}. Answers of the random model: "
        f"{result['answers']!r} (ids past the tokenizer's {result['tokenizer_size']} decode to "
        "nothing, and a random model over 151,936 rows emits little else).",
    ]
    if not result["per_phase_peak"]:
        lines.append("")
        lines.append("(/proc/self/clear_refs was not writable: peaks are cumulative.)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2, help="examples per LoRA step")
    parser.add_argument("--tokens", type=int, default=8, help="new tokens per predicted image")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    conditions, started = Conditions(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="georay-realsize-") as tmp:
        result = run(Path(tmp), args.batch_size, args.tokens)
    text = report(result, conditions, time.perf_counter() - started)
    print(text)
    peak = max(r["peak"] for r in result["phases"])
    if not args.no_write:
        write_section(AREA, text)
    if peak > 20 * GIB:
        raise SystemExit(f"peak RSS {peak / GIB:.2f} GiB is over the 20 GiB bar")


if __name__ == "__main__":
    main()
