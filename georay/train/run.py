"""Run one training stage on Ray Train and write the artifact prediction loads.

:func:`train` starts a ``TorchTrainer`` (data parallel, ``num_workers`` workers, CPU or one GPU
each), which checkpoints to ``RunConfig(storage_path, name)``: a lost worker is replaced and the
run goes on from the last checkpoint (``FailureConfig``), and running the same command again
(same storage path and name) resumes a run whose driver died. When training ends, the final
checkpoint becomes an artifact (:mod:`georay.models.artifact`): the base model source, the
earlier stages' adapters, this stage's adapter, the processor and the loss history.

Stage 2 (location) is started from the stage-1 artifact: workers load the base with the stage-1
adapter merged into it and train a new adapter on top (stacking "merge"); the stage-2 artifact
lists both adapters, in order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from georay.data.storage import exists, filesystem_for, is_s3, join_uri, upload_folder
from georay.models import artifact
from georay.models.vlm import localize, tiny_qwen2vl
from georay.protocol.sft import read_sft
from georay.runtime import init_ray
from georay.train.config import TrainConfig
from georay.train.loop import FAULT_ENV, train_loop_per_worker

log = logging.getLogger(__name__)

TINY = "tiny"


def _start(cfg: TrainConfig, scratch: Path) -> tuple[str, str, bool, list, list]:
    """(source the workers load, base model source, copy base?, earlier adapters, stages).

    Earlier adapters are (name, local folder) pairs copied from a start artifact. A base that
    lives inside a start artifact (``./base`` of a tiny run, ``./model`` of a full fine-tune) is
    returned as a local folder with "copy base" set: the new artifact gets a copy of it, so it
    stands alone.
    """
    if cfg.model == TINY:
        base = scratch / "tiny-base"
        tiny_qwen2vl(save_dir=base, seed=cfg.seed)
        remote = join_uri(cfg.storage_path, f"{cfg.name}-tiny-base")
        return upload_folder(base, remote), str(base), True, [], []
    if not exists(join_uri(cfg.model, artifact.ARTIFACT_FILE)):
        return cfg.model, cfg.model, False, [], []
    return cfg.model, *artifact.start_point(localize(cfg.model))  # an artifact: its parts


def _build_artifact(
    cfg: TrainConfig,
    ckpt: Path,
    start: tuple[str, bool, list, list],
    out: Path,
    info: dict,
) -> None:
    """Assemble the artifact folder from the final checkpoint and the start point."""
    base, copy_base, adapters, stages = start
    processor = _load_processor(ckpt / "processor")
    if cfg.finetune == "full":
        shutil.copytree(ckpt / "model", out / "model")
        base_model, adapters = "./model", []
    elif copy_base:
        shutil.copytree(base, out / "base")
        base_model = "./base"
    else:
        base_model = base
    names = {n for n, _ in adapters}
    if cfg.finetune == "lora":
        name = cfg.stage if cfg.stage not in names else f"{cfg.stage}-{len(adapters) + 1}"
        adapters = [*adapters, (name, ckpt / "adapter")]
    # The questions the model was trained to answer: a small model answers those and little
    # else, so prediction can ask the last stage's question rather than guess.
    questions = sorted({ex.question for ex in read_sft(cfg.input)})
    stage = {
        "stage": cfg.stage, "finetune": cfg.finetune, "input": cfg.input,
        "questions": questions[:10], **info,
    }  # fmt: skip
    artifact.write_artifact(
        out,
        base_model=base_model,
        processor=processor,
        adapters=adapters,
        stages=[*stages, stage],
    )
    shutil.copy(ckpt / "metrics.jsonl", out / f"metrics-{cfg.stage}.jsonl")


def _load_processor(path: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(path))


def train(cfg: TrainConfig) -> dict:
    """Train one stage with Ray Train and write its artifact to ``cfg.output``.

    Returns ``artifact`` (URI), ``stage``, ``steps``, ``final_loss``, ``val_loss`` (the last
    checkpoint's; None without ``val_fraction``), ``resumed_from`` (0 unless the run went on
    from a checkpoint), ``median_tokens_per_s``, ``elapsed_s``, ``checkpoint`` (the final Ray
    Train checkpoint's URI) and ``losses`` (per step).
    """
    init_ray(cfg.address, log_to_driver=False)
    import ray.train
    from ray.train.torch import TorchTrainer

    if not is_s3(cfg.storage_path):
        cfg = dataclasses.replace(cfg, storage_path=os.path.abspath(cfg.storage_path))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="georay-train-") as tmp:
        scratch = Path(tmp)
        source, *start = _start(cfg, scratch)
        storage_fs, storage_path = filesystem_for(cfg.storage_path)
        if not is_s3(cfg.storage_path):
            storage_fs = None
        gpus = cfg.gpus_per_worker
        resources = {"CPU": cfg.cpus_per_worker, **({"GPU": gpus} if gpus else {})}
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "cfg": dataclasses.asdict(cfg),
                "source": source,
                "fail_at_step": int(os.environ.get(FAULT_ENV) or 0),
            },
            scaling_config=ray.train.ScalingConfig(
                num_workers=cfg.num_workers, use_gpu=gpus > 0, resources_per_worker=resources
            ),
            run_config=ray.train.RunConfig(
                name=cfg.name,
                # The same filesystem as every other georay S3 access (endpoint from the AWS
                # chain, e.g. MinIO or moto), rather than whatever pyarrow infers from the URI.
                storage_path=storage_path,
                storage_filesystem=storage_fs,
                failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
            ),
        )
        result = trainer.fit()
        if result.error:
            raise result.error
        last = result.metrics or {}
        with result.checkpoint.as_directory() as folder:
            ckpt = Path(folder)
            history = [
                json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()
            ]
            val = [(h["step"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
            info = {
                "steps": last.get("step"),
                "final_loss": history[-1]["loss"] if history else None,
                "val_loss": val[-1][1] if val else None,
                "val_losses": val,  # (step, loss) at every checkpoint
                "world_size": last.get("world_size"),
                "strategy": cfg.strategy,
                # Which checkpoint this artifact was built from.
                "checkpoint": result.checkpoint.path,
                "checkpoint_step": last.get("step"),
                "storage_path": cfg.storage_path,
                "name": cfg.name,
            }
            out = scratch / "artifact"
            _build_artifact(cfg, ckpt, tuple(start), out, info)
            uri = upload_folder(out, cfg.output)
    rates = sorted(h["tokens_per_s"] for h in history[1:] or history)
    summary = {
        "artifact": uri,
        "stage": cfg.stage,
        "steps": last.get("step"),
        "final_loss": info["final_loss"],
        "val_loss": info["val_loss"],
        "resumed_from": last.get("resumed_from", 0),
        "median_tokens_per_s": rates[len(rates) // 2] if rates else 0.0,
        "elapsed_s": time.monotonic() - started,
        "checkpoint": result.checkpoint.path,
        "losses": [h["loss"] for h in history],
    }
    log.info("trained %s: %s", cfg.stage, {k: v for k, v in summary.items() if k != "losses"})
    return summary
