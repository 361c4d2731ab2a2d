"""Settings of one training stage (``georay train``), validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field

STAGES = ("reasoning", "location")
FINETUNE_MODES = ("lora", "full")


@dataclass
class TrainConfig:
    """One stage of GeoReasoner fine-tuning: reasoning (stage 1) or location (stage 2)."""

    stage: str = field(metadata={"help": "reasoning (stage 1) or location (stage 2)"})
    data: str = field(metadata={"help": "SFT JSONL (Qwen-VL conversations), local or s3://"})
    model: str = field(
        metadata={
            "help": "start point: model folder, s3:// prefix, hub id, a stage-1 artifact "
            "(stage 2 builds on it), or 'tiny' for the tiny test Qwen2-VL"
        }
    )
    output: str = field(metadata={"help": "artifact folder to write, local or s3://"})
    storage_path: str = field(
        default="",
        metadata={
            "help": "Ray Train storage for checkpoints (local or s3://; shared storage on "
            "multi-node); default: OUTPUT-checkpoints"
        },
    )
    name: str = field(
        default="",
        metadata={"help": "run name; rerun with the same storage path and name to resume"},
    )
    finetune: str = field(
        default="lora", metadata={"help": "lora (adapter on a frozen model) or full"}
    )
    lora_r: int = field(default=64, metadata={"help": "LoRA rank (paper: 64)"})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA alpha (paper: 16)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout (paper: 0.05)"})
    lora_targets: list[str] = field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        metadata={"help": "comma-separated language-model modules that get LoRA adapters"},
    )
    train_vision: bool = field(
        default=False,
        metadata={"help": "full fine-tuning also trains the vision tower (paper: frozen)"},
    )
    lr: float = field(default=1e-5, metadata={"help": "peak learning rate (paper: 1e-5)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    epochs: int = field(default=5, metadata={"help": "epochs (paper: 5); see max_steps"})
    max_steps: int = field(
        default=0, metadata={"help": "optimizer steps; overrides epochs when > 0"}
    )
    batch_size: int = field(default=4, metadata={"help": "examples per worker per micro-step"})
    grad_accum: int = field(default=1, metadata={"help": "micro-steps per optimizer step"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0: off)"})
    checkpoint_every: int = field(
        default=100, metadata={"help": "checkpoint every N optimizer steps (and at the end)"}
    )
    report_every: int = field(
        default=1,
        metadata={
            "help": "ray.train.report every N steps (each report waits for the controller's "
            "2 s poll; raise it when steps take well under 2 s)"
        },
    )
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept in storage"})
    num_workers: int = field(default=1, metadata={"help": "Ray Train workers (data parallel)"})
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker; bf16 autocast"})
    cpus_per_worker: float = field(default=1.0, metadata={"help": "CPUs reserved per worker"})
    max_failures: int = field(
        default=1, metadata={"help": "worker failures to recover from (from the last checkpoint)"}
    )
    seed: int = field(default=0, metadata={"help": "data order and tiny-model seed"})
    max_length: int = field(
        default=2048, metadata={"help": "drop examples with more tokens than this"}
    )
    fail_at_step: int = field(
        default=0,
        metadata={
            "help": "fault injection: rank 0 exits at this step on a run that did not resume "
            "from a checkpoint (tests recovery); 0: never"
        },
    )

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {self.finetune!r}")
        for name in ("data", "model", "output"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} must not be empty")
        positive = (
            "batch_size",
            "grad_accum",
            "checkpoint_every",
            "report_every",
            "num_workers",
            "max_length",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.max_steps < 0 or self.epochs < 1 and self.max_steps == 0:
            raise ValueError("give max_steps > 0 or epochs >= 1")
        if self.warmup_steps < 0 or self.cpus_per_worker <= 0 or self.keep_checkpoints < 1:
            raise ValueError("warmup_steps >= 0, cpus_per_worker > 0, keep_checkpoints >= 1")
        if isinstance(self.lora_targets, str):
            self.lora_targets = [t for t in self.lora_targets.split(",") if t.strip()]
        if not self.storage_path:
            self.storage_path = str(self.output).rstrip("/") + "-checkpoints"
        if not self.name:
            self.name = f"georay-{self.stage}"
