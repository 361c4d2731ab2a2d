"""The training loop of one stage, as it runs in each Ray Train worker.

The pieces (:func:`setup_model`, :func:`make_optimizer`, :func:`train_step`) are plain torch and
are shared with the single-process baseline of ``benchmarks/train.py``, so that benchmark
measures what Ray Train adds and nothing else. :func:`train_loop_per_worker` adds the Ray parts:
rank/world size, DDP or FSDP (:mod:`georay.train.parallel`), resume from
``ray.train.get_checkpoint()``, validation loss at each checkpoint, per-step
``ray.train.report`` and checkpoints.

Checkpoint layout (written by rank 0)::

    state.pt      step, full trainable weights and optimizer state by parameter name (so a run
                  resumes on any number of workers), scheduler, per-step history
    adapter/      (final checkpoint, LoRA) the peft adapter of this stage
    model/        (final checkpoint, full fine-tune) the whole model
    processor/    (final checkpoint) the processor
    metrics.jsonl (final checkpoint) one line per optimizer step
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from georay.models.lora import (
    LoraSettings,
    apply_lora,
    enable_gradient_checkpointing,
    freeze_vision,
    trainable_parameters,
)
from georay.models.qwen2vl import set_max_pixels
from georay.models.vlm import load_vlm
from georay.train import parallel
from georay.train.config import TrainConfig
from georay.train.data import (
    EncodedExamples,
    batches_per_epoch,
    count_tokens,
    load_examples,
    micro_batches,
    split_validation,
    validation_batches,
)

log = logging.getLogger(__name__)


def lora_settings(cfg: TrainConfig) -> LoraSettings:
    return LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                        target_modules=cfg.lora_targets)  # fmt: skip


def setup_model(cfg: TrainConfig, source: str, dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """Load the start point (merging earlier stages' adapters) and make the right part trainable.

    LoRA: a fresh adapter on the language model, everything else frozen. Full: every weight
    trains except the vision tower (unless ``train_vision``).

    On GPU with LoRA the frozen base is loaded in bf16 (half the memory of a 7B model) while
    peft keeps the adapter weights in fp32; the forward pass runs under bf16 autocast. Full
    fine-tuning keeps fp32 master weights. On CPU everything is fp32 unless ``dtype`` says
    otherwise (``benchmarks.realsize`` loads a bf16 base on CPU).

    ``cfg.max_pixels`` bounds the processor's images (and so every example's visual tokens);
    ``cfg.gradient_checkpointing`` is enabled on the base before peft wraps it.
    """
    if dtype is None:
        bf16_base = cfg.gpus_per_worker > 0 and cfg.finetune == "lora"
        dtype = torch.bfloat16 if bf16_base else torch.float32
    model, processor = load_vlm(source, dtype=dtype)
    if cfg.max_pixels:
        set_max_pixels(processor, cfg.max_pixels)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model, frozen_embeddings=cfg.finetune == "lora")
    if cfg.finetune == "lora":
        model = apply_lora(model, lora_settings(cfg))
    elif not cfg.train_vision:
        freeze_vision(model)
    model.train()
    trainable, total = trainable_parameters(model)
    log.info("%s: %d of %d parameters train (%s)", cfg.stage, trainable, total, cfg.finetune)
    return model, processor


def total_steps(cfg: TrainConfig, n_examples: int, world_size: int) -> int:
    """Optimizer steps of the run: ``max_steps``, else ``epochs`` over the data."""
    if cfg.max_steps:
        return cfg.max_steps
    per_epoch = batches_per_epoch(n_examples, world_size, cfg.batch_size)
    return max(1, cfg.epochs * per_epoch // cfg.grad_accum)


def make_optimizer(model: Any, cfg: TrainConfig, steps: int) -> tuple[Any, Any]:
    """AdamW on the trainable weights, cosine decay to 0 after a linear warm-up."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = min(cfg.warmup_steps, max(steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (fp32 master weights), plain fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    batches: Any,
    cfg: TrainConfig,
    device: torch.device,
) -> dict[str, float]:
    """One optimizer step over ``grad_accum`` micro-batches; returns its metrics."""
    start = time.perf_counter()
    loss_sum, tokens, loss_tokens = 0.0, 0, 0
    for micro in range(cfg.grad_accum):
        batch = {k: v.to(device) for k, v in next(batches).items()}
        n_tokens, n_loss = count_tokens(batch)
        # DDP: all-reduce gradients only on the last micro-batch of the step.
        last = micro == cfg.grad_accum - 1
        sync = (
            model.no_sync() if hasattr(model, "no_sync") and not last else contextlib.nullcontext()
        )
        with sync, autocast_for(device):
            loss = model(**batch).loss / cfg.grad_accum
        with sync:
            loss.backward()
        loss_sum += float(loss.detach())
        tokens += n_tokens
        loss_tokens += n_loss
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = (
        float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
        if cfg.max_grad_norm > 0
        else 0.0
    )
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - start
    return {
        "loss": loss_sum,
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens": tokens,
        "loss_tokens": loss_tokens,
        "step_time_s": elapsed,
        "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
    }


@dataclass
class Worker:
    """What one Ray Train worker holds while it trains a stage."""

    cfg: TrainConfig
    model: Any
    optimizer: Any
    scheduler: Any
    processor: Any
    rank: int
    world: int
    val: EncodedExamples | None = None
    history: list = field(default_factory=list)
    resumed_from: int = 0


def validation_loss(w: Worker, device: torch.device) -> float | None:
    """Mean loss per answer token over the whole validation slice (None without one).

    Every rank evaluates every validation example: the slice is small, and under FSDP each
    forward pass is a collective that all ranks must take part in.
    """
    if w.val is None or not len(w.val):
        return None
    total, tokens = 0.0, 0
    w.model.eval()
    with torch.no_grad():
        for batch in validation_batches(
            w.val, w.cfg.batch_size, w.processor.tokenizer.pad_token_id
        ):
            batch = {k: v.to(device) for k, v in batch.items()}
            n = count_tokens(batch)[1]
            with autocast_for(device):
                total += float(w.model(**batch).loss) * n
            tokens += n
    w.model.train()
    return total / tokens if tokens else None


def save_checkpoint(out: Path | None, w: Worker, step: int, final: bool) -> None:
    """Write a checkpoint folder (layout in the module docstring); ``out`` on rank 0 only.

    Gathering sharded weights is a collective: every rank calls this, rank 0 writes.
    """
    weights, optim = parallel.trainable_state(w.model, w.optimizer)
    full = parallel.full_state(w.model) if final and w.cfg.finetune == "full" else None
    if out is None:
        return
    state = {"step": step, "trainable": weights, "optimizer": optim, "history": w.history}
    torch.save({**state, "scheduler": w.scheduler.state_dict()}, out / "state.pt")
    if not final:
        return
    inner = parallel.unwrap(w.model)
    if w.cfg.finetune == "lora":
        inner.save_pretrained(str(out / "adapter"), state_dict=weights)
    else:  # a complete model folder (weights + processor), loadable on its own
        inner.save_pretrained(str(out / "model"), state_dict=full)
        w.processor.save_pretrained(str(out / "model"))
    w.processor.save_pretrained(str(out / "processor"))
    with open(out / "metrics.jsonl", "w") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in w.history)


def restore_checkpoint(path: Path, w: Worker) -> int:
    """Load a :func:`save_checkpoint` folder (written with any worker count); returns its step."""
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    trainable = {n for n, p in parallel.unwrap(w.model).named_parameters() if p.requires_grad}
    missing = trainable - set(state["trainable"])
    if missing:
        raise ValueError(f"checkpoint {path} lacks trainable weights, e.g. {sorted(missing)[:3]}")
    parallel.load_trainable_state(w.model, w.optimizer, state["trainable"], state["optimizer"])
    w.scheduler.load_state_dict(state["scheduler"])
    w.history = list(state["history"])
    return int(state["step"])


# Fault injection for tests: rank 0 of a run that did not resume exits at this step. Read from
# the driver's environment by georay.train.run and handed to the workers; never a user flag.
FAULT_ENV = "GEORAY_TEST_FAIL_AT_STEP"


def _die_after_checkpoint(step: int) -> None:
    # The controller takes reports (and registers checkpoints) when it polls, every
    # RAY_TRAIN_HEALTH_CHECK_INTERVAL_S: let two polls pass so the last checkpoint counts,
    # like a worker that dies a while after checkpointing.
    poll_s = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2"))
    time.sleep(2 * poll_s + 0.5)
    log.warning("fault injection: rank 0 exits at step %d", step)
    os._exit(1)  # a killed process, not an exception: what a lost worker looks like


@dataclass
class Trainer:
    """One process's trainer, whoever runs it (a Ray Train worker, or a benchmark alone)."""

    model: Any
    processor: Any
    data: EncodedExamples
    val: EncodedExamples | None
    optimizer: Any
    scheduler: Any
    steps: int

    def batches(self, cfg: TrainConfig, rank: int = 0, world: int = 1, start: int = 0):
        """Endless micro-batches of this worker's share, from micro-batch ``start``."""
        pad = self.processor.tokenizer.pad_token_id
        return micro_batches(self.data, batch_size=cfg.batch_size, rank=rank, world_size=world,
                             seed=cfg.seed, start=start, pad_token_id=pad)  # fmt: skip


def assemble(
    cfg: TrainConfig,
    source: str,
    *,
    world: int = 1,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Trainer:
    """The one-process trainer: model (wrapped for ``cfg.strategy`` over ``world`` workers, on
    ``device``), encoded examples and the held-out ones, optimizer and schedule for the run's
    steps. Ray Train's workers and the benchmarks' in-process baselines all build it here."""
    model, processor = setup_model(cfg, source, dtype)
    model = parallel.wrap(model.to(device or torch.device("cpu")), cfg.strategy, world)
    train_set, val_set = split_validation(load_examples(cfg.input), cfg.val_fraction, cfg.seed)
    data = EncodedExamples(train_set, processor, cfg.max_length)
    steps = total_steps(cfg, len(data), world)
    optimizer, scheduler = make_optimizer(model, cfg, steps)
    val = EncodedExamples(val_set, processor, cfg.max_length) if val_set else None
    return Trainer(model, processor, data, val, optimizer, scheduler, steps)


def _setup(config: dict) -> tuple[Worker, Trainer, torch.device]:
    """The trainer (:func:`assemble`) and the resumed state of one Ray Train worker."""
    import ray.train
    import ray.train.torch

    cfg = TrainConfig(**config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if not cfg.gpus_per_worker:
        # Ray sets OMP threads to the CPUs reserved; torch needs telling too.
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)
    t = assemble(cfg, config["source"], world=world, device=device)
    w = Worker(cfg, t.model, t.optimizer, t.scheduler, t.processor, rank, world, val=t.val)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            w.resumed_from = restore_checkpoint(Path(folder), w)
        log.info("rank %d resumes %s at step %d of %d", rank, cfg.stage, w.resumed_from, t.steps)
    return w, t, device


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker entry point.

    ``config`` = ``{"cfg": TrainConfig fields, "source": str, "fail_at_step": int}``.
    """
    w, t, device = _setup(config)
    cfg, start, data, steps = w.cfg, w.resumed_from, t.data, t.steps
    batches = t.batches(cfg, w.rank, w.world, start=start * cfg.grad_accum)
    if start >= steps:  # a finished run restarted: report the final state again
        _report(w, start, w.history[-1] if w.history else {}, final=True, save=True)
    per_epoch = max(1, batches_per_epoch(len(data), w.world, cfg.batch_size))
    for step in range(start + 1, steps + 1):
        if step == config.get("fail_at_step") and start == 0 and w.rank == 0:
            _die_after_checkpoint(step)
        metrics = train_step(w.model, w.optimizer, w.scheduler, batches, cfg, device)
        metrics.update(step=step, epoch=step * cfg.grad_accum / per_epoch, world_size=w.world)
        metrics["tokens_per_s"] *= w.world  # this worker's rate x workers: the run's rate
        metrics["time"] = time.time()
        metrics["skipped_examples"] = len(data.skipped)
        final = step == steps
        save = final or step % cfg.checkpoint_every == 0
        if save and w.val is not None:
            metrics["val_loss"] = validation_loss(w, device)
        w.history.append(metrics)
        if save or step % cfg.report_every == 0:
            _report(w, step, metrics, final=final, save=save)


def _report(w: Worker, step: int, metrics: dict, *, final: bool, save: bool) -> None:
    """``ray.train.report`` from every rank (it is a barrier); rank 0 attaches checkpoints.

    In Ray Train V2 a report waits until the controller has taken the previous one, and the
    controller polls every 2 s (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``): hence ``report_every``.
    """
    import ray.train

    metrics = {**metrics, "resumed_from": w.resumed_from, "final": final}
    if not save:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp) if w.rank == 0 else None, w, step, final)
        checkpoint = ray.train.Checkpoint.from_directory(tmp) if w.rank == 0 else None
        ray.train.report(metrics, checkpoint=checkpoint)
