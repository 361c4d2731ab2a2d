"""Settings of ``georay predict`` (and the model settings ``georay serve`` shares)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from georay.config import Batched, Config, option
from georay.pipeline.settings import BulkSettings

ENGINES = ("hf", "vllm")


@dataclass(kw_only=True)
class ModelSettings(Batched):
    """How to load and ask the model; shared by ``georay predict`` and ``georay serve``."""

    model: str = option(
        help="training artifact (artifact.json: base model + adapters), or a base model folder, "
        "s3:// prefix or hub id",
        path="model",
    )
    max_new_tokens: int = option(128, help="generation length limit")
    h3_resolution: int = option(5, help="H3 resolution of the h3 column")
    question: str = option(
        "",
        help="prompt asked per image (default: the question the artifact's last stage was "
        "trained on, else the paper's inference question)",
    )
    device: str | None = option(None, help="torch device (default: cuda when present, else cpu)")
    dtype: str | None = option(None, help="torch dtype (default: bfloat16 on GPU, float32 on CPU)")
    max_pixels: int = option(
        0,
        help="downscale images to at most this many pixels before the processor; 0: the "
        "processor's own max_pixels",
    )
    engine: str = option(
        "hf",
        help="hf (transformers generate: exact, simple) or vllm (continuous batching, paged KV "
        "cache: the production engine on GPUs; needs the vllm package)",
    )
    lora_adapter: bool = option(
        False,
        help="vllm: serve the artifact's last adapter as a LoRA over the merged earlier stages "
        "(several adapters share one base) instead of one merged checkpoint",
    )
    max_model_len: int | None = option(
        None, help="vllm: longest prompt + answer in tokens (default: the model's own limit)"
    )
    max_num_seqs: int | None = option(
        None, help="vllm: sequences batched at once per engine (default: vLLM's)"
    )
    gpu_memory_utilization: float = option(
        0.9, help="vllm: share of each GPU's memory the engine may take (weights + KV cache)"
    )
    tensor_parallel_size: int = option(1, help="vllm: GPUs one engine spans (tensor parallel)")
    max_images: int = option(
        1, help="vllm: images one request may carry (chat completions with several images)"
    )

    @classmethod
    def of(cls, values: dict, **overrides) -> ModelSettings:
        """The model settings among ``values`` (a stage config as a dict), with overrides."""
        names = {f.name for f in fields(cls) if f.init}
        return cls(**{k: v for k, v in {**values, **overrides}.items() if k in names})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise ValueError("model must name a training artifact or a base model")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError(f"h3_resolution must be in 0..15, got {self.h3_resolution}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.lora_adapter and self.engine != "vllm":
            raise ValueError("lora_adapter needs engine 'vllm'")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if self.tensor_parallel_size < 1 or self.max_images < 1:
            raise ValueError("tensor_parallel_size and max_images must be >= 1")
        if self.max_pixels and self.max_pixels < 28 * 28:
            raise ValueError(
                f"max_pixels must be 0 (the processor's own) or >= 784, got {self.max_pixels}"
            )


@dataclass(kw_only=True)
class PredictConfig(BulkSettings, ModelSettings):
    """``georay predict``: geotag every image of the input; resumable."""

    skip_exif_gps: bool = option(
        False, help="do not run the model on images whose EXIF already has GPS"
    )


@dataclass(kw_only=True)
class ExportConfig(Config):
    """``georay export``: a training artifact as a merged Hugging Face checkpoint."""

    model: str = option(help="georay training artifact (local or s3://)", path="model")
    output: str = option(
        help="folder to write (local, new or empty; or an s3:// prefix)", path="out"
    )
    lora_adapter: bool = option(
        False,
        help="also write base/ (every stage but the last, merged) and adapter/ (the last stage's "
        "LoRA), to serve the last stage as a LoRA over a shared base (vLLM LoRARequest)",
    )
