"""GPU check: the tiny and the 2B-size Qwen2-VL in bf16 on one GPU, one table.

``PYTHONPATH=. python -m benchmarks.gpu_check`` (from the repo root; no install) measures, for
the tiny test model and a random-init model with Qwen2-VL-2B-Instruct's architecture
(:func:`georay.models.qwen2vl.build_qwen2vl`), both in bf16:

- LoRA training tokens/s (the paper's LoRA: r 64, alpha 16, dropout 0.05 on the language
  model; vision frozen; adapters fp32 under bf16 autocast, as ``georay train`` on GPU), without
  and with gradient checkpointing;
- greedy generation images/s at batch 1, 8 and 32 (the merged model, as ``georay predict``
  runs it), a fixed number of new tokens per image;
- peak GPU memory of each row (``torch.cuda.max_memory_allocated``);
- MFU of the training rows against the GPU's dense bf16 peak (:data:`PEAK_TFLOPS`, by device
  name; ``--peak-tflops`` for others).

Training FLOPs per step (model FLOPs, PaLM's MFU definition: recomputation not counted)::

    sum over examples  s x (4 N_lm + 6 N_lora) + 12 L h s^2
    + sum over images  p x 2 N_vision + 4 D d p^2

``s`` is an example's tokens, ``p`` an image's 14x14 patches. ``N_lm`` is the language model's
matmul weights (decoder linears and the LM head, not the embedding lookup). A weight costs 2
FLOPs per token forward and 2 for the gradient of its input; only a *trained* weight costs
another 2 for its own gradient: hence 4, not the usual 6 x params, for the frozen base, and
6 for the LoRA matrices. (The input gradients are needed through every layer because every
layer has adapters.) Attention scores and their use cost 4 h s FLOPs per token and layer
forward (``L`` layers of width ``h``), x 3 with the backward. The frozen vision tower runs
forward only: ``N_vision`` per patch (its patch merger, per 2x2 patches, a quarter of that),
attention within each image over ``D`` blocks of width ``d``. With gradient checkpointing the
GPU also recomputes the forward that MFU does not count, so MFU drops by what it costs.

Needs only torch, transformers and peft, plus torchvision: transformers 5 cannot build a
Qwen2VLProcessor without it (its video processor requires it; torchvision brings pillow).
Those wheels are ~8 MB and ~4.5 MB where a GPU image lacks them. It imports georay.models
and georay.protocol.prompts modules that import nothing else: no Ray, open_clip, pyarrow or h3
(tests/unit/test_gpu_check.py runs it with only that dependency closure on ``sys.path``).
``--device cpu --quick`` runs the tiny model on CPU in under a minute (what the test runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from georay.models.lora import LoraSettings, apply_lora, enable_gradient_checkpointing
from georay.models.qwen2vl import build_qwen2vl, set_max_pixels
from georay.models.vlm import collate, encode_example, encode_prompts
from georay.protocol import prompts

# Dense (no sparsity) bf16 tensor-core peaks, TFLOPS, from the vendors' datasheets; first match
# of a lower-case substring of torch.cuda.get_device_name() wins, so specific names come first.
PEAK_TFLOPS = (
    ("h100 pcie", 756.0),
    ("h100 nvl", 835.0),
    ("h200 nvl", 835.0),
    ("h100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("h200", 989.0),  # also GH200
    ("h800", 989.0),
    ("b200", 2250.0),
    ("a100", 312.0),
    ("a800", 312.0),
    ("l40s", 362.0),
    ("l40", 181.0),
    ("l4", 121.0),
    ("a10", 125.0),  # A10 datasheet; A10G taken as equal
    ("a6000", 155.0),
    ("mi300x", 1307.0),
)
COLUMNS = ("model", "row", "batch", "throughput", "time/call s", "peak mem GiB", "MFU")
# Per size: training batch, image side (pixels), bound on the processor's images.
SETTINGS = {"tiny": (16, 84, None), "2b": (8, 448, 448 * 448)}


def peak_tflops(device: torch.device) -> float | None:
    """The device's dense bf16 peak from :data:`PEAK_TFLOPS`, or None if unknown (e.g. CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).lower()
    return next((peak for key, peak in PEAK_TFLOPS if key in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float:
    """Peak GPU memory allocated since the last reset; on CPU the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def images(n: int, side: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(n)]


def train_batch(processor, n: int, side: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A stage-1-like batch (image, reasoning question, country + reasons) on ``device``."""
    reasons = "Terracotta tiled roofs, dry hills and yellow road markings point to this country."
    examples = [
        encode_example(
            processor,
            image,
            prompts.REASONING_QUESTION,
            prompts.reasoning_answer("Chile", reasons),
        )
        for image in images(n, side)
    ]
    batch = collate(examples, processor.tokenizer.pad_token_id)
    return {k: v.to(device) for k, v in batch.items()}


def flop_counts(model) -> dict[str, int]:
    """N_lm (LM matmul weights incl. the LM head), N_lora, N_vision and its merger's share."""
    counts = {"lm": 0, "lora": 0, "vision": 0, "merger": 0}
    seen = set()
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        if "lora_" in name:
            counts["lora"] += param.numel()
        elif ".visual." in f".{name}":
            counts["vision"] += param.numel()
            counts["merger"] += param.numel() if ".merger." in name else 0
        elif param.dim() == 2 and "embed_tokens" not in name and "lm_head" not in name:
            counts["lm"] += param.numel()
    # The LM head is a matmul even where it shares the embedding's weight (the 2B ties them).
    counts["lm"] += model.get_output_embeddings().weight.numel()
    return counts


def train_flops(counts: dict[str, int], batch: dict[str, torch.Tensor], config) -> float:
    """Model FLOPs of one training step (formula in the module docstring)."""
    lengths = batch["attention_mask"].sum(dim=1).double()  # tokens of each example
    patches = batch["image_grid_thw"].prod(dim=1).double()  # 14x14 patches of each image
    text, vision = config.text_config, config.vision_config
    weights = lengths.sum() * (4 * counts["lm"] + 6 * counts["lora"])
    blocks = counts["vision"] - counts["merger"]
    weights += patches.sum() * (2 * blocks + 2 * counts["merger"] / 4)
    attention = 12 * text.num_hidden_layers * text.hidden_size * (lengths**2).sum()
    attention += 4 * vision.depth * vision.embed_dim * (patches**2).sum()
    return float(weights + attention)


def time_train(model, batch, steps: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds per optimizer step (forward, backward, AdamW) after ``warmup`` steps."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for i in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


@torch.no_grad()
def time_generate(model, processor, n: int, side: int, tokens: int, device) -> float:
    """Seconds for one greedy ``generate`` of ``tokens`` new tokens for ``n`` images."""
    batch = encode_prompts(processor, images(n, side, seed=1), [prompts.LOCATION_QUESTION] * n)
    batch = {k: v.to(device) for k, v in batch.items()}
    batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
    sync(device)
    start = time.perf_counter()
    # min_new_tokens: a random model may emit end-of-turn at once; every call makes `tokens`.
    model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    sync(device)
    return time.perf_counter() - start


def check_size(size: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """The rows of one model size: train without/with checkpointing, generate per batch."""
    batch_size, side, max_pixels = SETTINGS[size]
    batch_size = min(batch_size, args.max_train_batch) if args.max_train_batch else batch_size
    peak = args.peak_tflops or peak_tflops(device)
    model, processor = build_qwen2vl(size, dtype=torch.bfloat16, device=device)
    if max_pixels:
        set_max_pixels(processor, max_pixels)
    model = apply_lora(model, LoraSettings())  # the paper's r 64 / alpha 16 / dropout 0.05
    model.train()
    counts = flop_counts(model)
    batch = train_batch(processor, batch_size, side, device)
    tokens, flops = int(batch["attention_mask"].sum()), train_flops(counts, batch, model.config)
    rows = []
    for checkpointing in (False, True):
        if checkpointing:
            enable_gradient_checkpointing(model.get_base_model(), frozen_embeddings=True)
        reset_memory(device)
        step_s = statistics.median(time_train(model, batch, args.steps, args.warmup, device))
        rows.append(
            {
                "model": size,
                "row": "train LoRA" + (" + grad ckpt" if checkpointing else ""),
                "batch": f"{batch_size} ({tokens} tok)",
                "throughput": f"{tokens / step_s:,.0f} tok/s",
                "time/call s": f"{step_s:.3f}",
                "peak mem GiB": f"{peak_memory_gib(device):.2f}",
                "MFU": f"{flops / step_s / (peak * 1e12):.1%}" if peak else "n/a",
            }
        )
        print(rows[-1], flush=True)
    model = model.merge_and_unload().eval()  # what predict runs: adapters merged
    del batch
    time_generate(model, processor, 1, side, 2, device)  # warm-up
    for n in args.generate_batches:
        reset_memory(device)
        seconds = time_generate(model, processor, n, side, args.tokens, device)
        rows.append(
            {
                "model": size,
                "row": f"generate {args.tokens} tok",
                "batch": str(n),
                "throughput": f"{n / seconds:,.2f} img/s",
                "time/call s": f"{seconds:.3f}",
                "peak mem GiB": f"{peak_memory_gib(device):.2f}",
                "MFU": "",
            }
        )
        print(rows[-1], flush=True)
    del model
    reset_memory(device)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def header(device: torch.device, peak: float | None) -> str:
    import peft
    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    versions = (
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft "
        f"{peft.__version__}"
    )
    peak_text = f"{peak:g} TFLOPS dense bf16" if peak else "unknown (no MFU)"
    return f"device: {name}; peak: {peak_text}; {versions}; {torch.get_num_threads()} CPU threads"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument(
        "--quick", action="store_true", help="tiny model only, batch 4, few steps and tokens"
    )
    parser.add_argument("--sizes", default="", help="comma-separated, default tiny,2b")
    parser.add_argument("--steps", type=int, default=0, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    parser.add_argument("--tokens", type=int, default=0, help="new tokens per generated image")
    parser.add_argument("--generate-batches", default="1,8,32", help="images per generate call")
    parser.add_argument("--max-train-batch", type=int, default=0, help="cap the training batch")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="override the peak")
    args = parser.parse_args(argv)
    args.sizes = [s for s in (args.sizes or ("tiny" if args.quick else "tiny,2b")).split(",") if s]
    args.steps = args.steps or (2 if args.quick else 5)
    args.warmup = min(args.warmup, 1) if args.quick else args.warmup
    args.tokens = args.tokens or (4 if args.quick else 32)
    args.max_train_batch = args.max_train_batch or (4 if args.quick else 0)
    args.generate_batches = [int(b) for b in args.generate_batches.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; run with --device cpu --quick", file=sys.stderr)
        return 2
    started = time.perf_counter()
    torch.manual_seed(0)
    peak = args.peak_tflops or peak_tflops(device)
    rows = [row for size in args.sizes for row in check_size(size, args, device)]
    print(header(device, peak))
    print(table(rows))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
