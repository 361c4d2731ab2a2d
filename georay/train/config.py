"""Settings of one training stage (``georay train``), validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from georay.config import Batched, RayConfig, at_least, option
from georay.models.lora import DEFAULT_TARGETS

# "base" is the tiny world's stand-in for a pretrained model (scene descriptions, no places).
STAGES = ("base", "reasoning", "location")
FINETUNE_MODES = ("lora", "full")


@dataclass(kw_only=True)
class TrainConfig(RayConfig, Batched):
    """One stage of GeoReasoner fine-tuning: reasoning (stage 1) or location (stage 2)."""

    DEFAULTS = {"batch_size": 4}

    stage: str = option(
        help="reasoning (stage 1), location (stage 2), or base (the tiny world's pretraining)"
    )
    input: str = option(
        help="SFT JSONL (Qwen-VL conversations), local or s3://", path="in", aliases=("--data",)
    )
    model: str = option(
        help="start point: model folder, s3:// prefix, hub id, a stage-1 artifact (stage 2 "
        "builds on it), or 'tiny' for the tiny test Qwen2-VL",
        path="model",
    )
    output: str = option(help="artifact folder to write, local or s3://", path="out")
    storage_path: str = option(
        "",
        help="Ray Train storage for checkpoints (local or s3://; shared storage on multi-node); "
        "default: OUTPUT-checkpoints",
        path="out",
    )
    name: str = option("", help="run name; rerun with the same storage path and name to resume")
    finetune: str = option("lora", help="lora (adapter on a frozen model) or full")
    lora_r: int = option(64, help="LoRA rank (paper: 64)")
    lora_alpha: float = option(16, help="LoRA alpha (paper: 16)")
    lora_dropout: float = option(0.05, help="LoRA dropout (paper: 0.05)")
    lora_targets: list[str] = option(
        factory=lambda: list(DEFAULT_TARGETS),
        help="comma-separated language-model modules that get LoRA adapters",
    )
    train_vision: bool = option(
        False, help="full fine-tuning also trains the vision tower (paper: frozen)"
    )
    lr: float = option(1e-5, help="peak learning rate (paper: 1e-5)")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    warmup_steps: int = option(0, help="linear warm-up steps")
    epochs: int = option(5, help="epochs (paper: 5); see max_steps")
    max_steps: int = option(0, help="optimizer steps; overrides epochs when > 0")
    grad_accum: int = option(1, help="micro-steps per optimizer step")
    max_grad_norm: float = option(1.0, help="gradient clipping (0: off)")
    checkpoint_every: int = option(100, help="checkpoint every N optimizer steps (and at the end)")
    report_every: int = option(
        1,
        help="ray.train.report every N steps (each report waits for the controller's 2 s poll; "
        "raise it when steps take well under 2 s)",
    )
    keep_checkpoints: int = option(2, help="checkpoints kept in storage")
    num_workers: int = option(1, help="Ray Train workers (data parallel)")
    strategy: str = option(
        "ddp",
        help="ddp (a model copy per worker) or fsdp (parameters, gradients and optimizer state "
        "sharded over the workers: for models that do not fit one GPU)",
    )
    val_fraction: float = option(
        0.0,
        help="share of the SFT examples held out (by id hash) for a validation loss at every "
        "checkpoint; 0 = none",
    )
    gpus_per_worker: float = option(
        0, help="GPUs per worker; > 0 trains on CUDA with bf16 autocast", aliases=("--use-gpu=1",)
    )
    cpus_per_worker: float = option(1.0, help="CPUs reserved per worker")
    max_failures: int = option(1, help="worker failures to recover from (from the last checkpoint)")
    seed: int = option(0, help="data order and tiny-model seed")
    max_length: int = option(2048, help="drop examples with more tokens than this")
    max_pixels: int = option(
        0,
        help="largest image, in pixels, the processor encodes (bounds visual tokens: one per "
        "28x28 pixels on Qwen2-VL); the artifact's processor keeps it, so prediction sees the "
        "training resolution; 0: the processor's own",
    )
    gradient_checkpointing: bool = option(
        False,
        help="recompute each decoder layer's activations in the backward pass (non-reentrant): "
        "far less activation memory for ~1.5x the step time with LoRA (its backward skips the "
        "frozen weights' gradients, so one more forward weighs more)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.strategy not in ("ddp", "fsdp"):
            raise ValueError(f"strategy must be ddp or fsdp, got {self.strategy!r}")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in [0, 0.5), got {self.val_fraction}")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {self.finetune!r}")
        for name in ("input", "model", "output"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} must not be empty")
        at_least(self, 1, "grad_accum", "checkpoint_every", "report_every", "num_workers",
                 "max_length", "keep_checkpoints")  # fmt: skip
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.max_steps < 0 or self.epochs < 1 and self.max_steps == 0:
            raise ValueError("give max_steps > 0 or epochs >= 1")
        if self.max_pixels and self.max_pixels < 28 * 28:
            raise ValueError(
                f"max_pixels must be 0 (the processor's own) or >= 784, got {self.max_pixels}"
            )
        at_least(self, 0, "warmup_steps", "gpus_per_worker")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if isinstance(self.lora_targets, str):
            self.lora_targets = [t for t in self.lora_targets.split(",") if t.strip()]
        if not self.storage_path:
            self.storage_path = str(self.output).rstrip("/") + "-checkpoints"
        if not self.name:
            self.name = f"georay-{self.stage}"
