"""The training loop of one stage, as it runs in each Ray Train worker.

The pieces (:func:`setup_model`, :func:`make_optimizer`, :func:`train_step`) are plain torch and
are shared with the single-process baseline of ``benchmarks/train.py``, so that benchmark
measures what Ray Train adds and nothing else. :func:`train_loop_per_worker` adds the Ray parts:
rank/world size, DDP, resume from ``ray.train.get_checkpoint()``, per-step
``ray.train.report`` and checkpoints.

Checkpoint layout (written by rank 0)::

    state.pt      step, trainable weights, optimizer, scheduler, per-step history
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
from pathlib import Path
from typing import Any

import torch

from georay.models.lora import LoraSettings, apply_lora, freeze_vision, trainable_parameters
from georay.models.vlm import load_vlm
from georay.train.config import TrainConfig
from georay.train.data import (
    EncodedExamples,
    batches_per_epoch,
    count_tokens,
    load_examples,
    micro_batches,
)

log = logging.getLogger(__name__)


def lora_settings(cfg: TrainConfig) -> LoraSettings:
    return LoraSettings(
        r=cfg.lora_r,
        alpha=cfg.lora_alpha,
        dropout=cfg.lora_dropout,
        target_modules=cfg.lora_targets,
    )


def setup_model(cfg: TrainConfig, source: str) -> tuple[Any, Any]:
    """Load the start point (merging earlier stages' adapters) and make the right part trainable.

    LoRA: a fresh adapter on the language model, everything else frozen. Full: every weight
    trains except the vision tower (unless ``train_vision``).

    On GPU with LoRA the frozen base is loaded in bf16 (half the memory of a 7B model) while
    peft keeps the adapter weights in fp32; the forward pass runs under bf16 autocast. Full
    fine-tuning keeps fp32 master weights. On CPU everything is fp32.
    """
    bf16_base = cfg.use_gpu and cfg.finetune == "lora"
    model, processor = load_vlm(source, dtype=torch.bfloat16 if bf16_base else torch.float32)
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


def _unwrap(model: Any) -> Any:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def save_checkpoint(
    out: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    step: int,
    history: list,
    final: bool,
    processor: Any,
    cfg: TrainConfig,
) -> None:
    """Write a checkpoint folder (layout in the module docstring)."""
    inner = _unwrap(model)
    trainable = {n: p.detach().cpu() for n, p in inner.named_parameters() if p.requires_grad}
    torch.save(
        {
            "step": step,
            "trainable": trainable,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "history": history,
        },
        out / "state.pt",
    )
    if final:
        if cfg.finetune == "lora":
            inner.save_pretrained(str(out / "adapter"))
        else:  # a complete model folder (weights + processor), loadable on its own
            inner.save_pretrained(str(out / "model"))
            processor.save_pretrained(str(out / "model"))
        processor.save_pretrained(str(out / "processor"))
        with open(out / "metrics.jsonl", "w") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in history)


def restore_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> tuple[int, list]:
    """Load a :func:`save_checkpoint` folder into model/optimizer/scheduler; (step, history)."""
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    missing = set(n for n, p in model.named_parameters() if p.requires_grad) - set(
        state["trainable"]
    )
    if missing:
        raise ValueError(f"checkpoint {path} lacks trainable weights, e.g. {sorted(missing)[:3]}")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"]), list(state["history"])


# Fault injection for tests: rank 0 of a run that did not resume exits at this step. Read from
# the driver's environment by georay.train.run and handed to the workers; never a user flag.
FAULT_ENV = "GEORAY_TEST_FAIL_AT_STEP"


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker entry point.

    ``config`` = ``{"cfg": TrainConfig fields, "source": str, "fail_at_step": int}``.
    """
    import ray.train
    import ray.train.torch

    cfg = TrainConfig(**config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if not cfg.use_gpu:  # Ray sets OMP threads to the CPUs reserved; torch needs telling too
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    torch.manual_seed(cfg.seed)

    model, processor = setup_model(cfg, config["source"])
    model.to(device)
    data = EncodedExamples(load_examples(cfg.data), processor, cfg.max_length)
    steps = total_steps(cfg, len(data), world)
    optimizer, scheduler = make_optimizer(model, cfg, steps)

    start, history = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            start, history = restore_checkpoint(Path(folder), model, optimizer, scheduler)
        log.info("rank %d resumes %s at step %d of %d", rank, cfg.stage, start, steps)
    model = ray.train.torch.prepare_model(model, move_to_device=False)
    batches = micro_batches(
        data,
        batch_size=cfg.batch_size,
        rank=rank,
        world_size=world,
        seed=cfg.seed,
        start=start * cfg.grad_accum,
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    if start >= steps:  # a finished run restarted: report the final state again
        _report(
            start,
            history[-1] if history else {},
            model,
            optimizer,
            scheduler,
            history,
            processor,
            cfg,
            rank,
            final=True,
            resumed_from=start,
        )
    for step in range(start + 1, steps + 1):
        if step == config.get("fail_at_step") and start == 0 and rank == 0:
            # The controller takes reports (and registers checkpoints) when it polls, every
            # RAY_TRAIN_HEALTH_CHECK_INTERVAL_S: let two polls pass so the last checkpoint
            # counts, like a worker that dies a while after checkpointing.
            poll_s = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2"))
            time.sleep(2 * poll_s + 0.5)
            log.warning("fault injection: rank 0 exits at step %d", step)
            os._exit(1)  # a killed process, not an exception: what a lost worker looks like
        metrics = train_step(model, optimizer, scheduler, batches, cfg, device)
        metrics.update(
            step=step,
            epoch=(step * cfg.grad_accum)
            / max(1, batches_per_epoch(len(data), world, cfg.batch_size)),
            world_size=world,
        )
        metrics["tokens_per_s"] *= world  # this worker's rate x workers: the run's rate
        metrics["time"] = time.time()
        metrics["skipped_examples"] = len(data.skipped)
        history.append(metrics)
        final = step == steps
        save = final or step % cfg.checkpoint_every == 0
        if save or step % cfg.report_every == 0:
            _report(
                step,
                metrics,
                model,
                optimizer,
                scheduler,
                history,
                processor,
                cfg,
                rank,
                final=final,
                resumed_from=start,
                save=save,
            )


def _report(
    step: int,
    metrics: dict,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    history: list,
    processor: Any,
    cfg: TrainConfig,
    rank: int,
    *,
    final: bool,
    resumed_from: int,
    save: bool = True,
) -> None:
    """``ray.train.report`` from every rank (it is a barrier); rank 0 attaches checkpoints.

    In Ray Train V2 a report waits until the controller has taken the previous one, and the
    controller polls every 2 s (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``): hence ``report_every``.
    """
    import ray.train

    metrics = {**metrics, "resumed_from": resumed_from, "final": final}
    if not save:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            save_checkpoint(
                Path(tmp), model, optimizer, scheduler, step, history, final, processor, cfg
            )
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)
