"""LoRA settings (GeoReasoner's defaults) and how they are put on a vision-language model.

The paper fine-tunes Qwen-VL-Chat with LoRA r=64, alpha=16, dropout 0.05 on the language
model's linear layers, the vision transformer frozen. :class:`LoraSettings` carries those
defaults; :func:`apply_lora` wraps a model with ``peft`` so that only the adapter trains, and
:func:`freeze_vision` freezes the vision tower for full fine-tuning too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Module names under which transformers VLMs keep their vision tower (Qwen2-VL: ``visual``).
VISION_MODULES = ("visual", "vision_tower", "vision_model")

# Qwen2 / Llama-style decoder linear layers: attention and MLP projections.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """LoRA hyper-parameters; defaults are the GeoReasoner paper's."""

    r: int = field(default=64, metadata={"help": "LoRA rank"})
    alpha: float = field(default=16, metadata={"help": "LoRA alpha (update scaled by alpha/r)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGETS),
        metadata={"help": "names of the language model's linear layers that get adapters"},
    )

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoRA r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("LoRA target_modules must name at least one module")

    def target_regex(self) -> str:
        """A regex (peft full-matches it) selecting the targets outside the vision tower."""
        names = "|".join(re.escape(n) for n in self.target_modules)
        vision = "|".join(VISION_MODULES)
        return rf"^(?!.*\b(?:{vision})\b).*\b(?:{names})$"

    def peft_config(self) -> Any:
        """The ``peft.LoraConfig`` for these settings."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_regex(),
            bias="none",
        )


def freeze_vision(model: Any) -> int:
    """Freeze the vision tower's parameters (the paper keeps the ViT frozen); return how many."""
    frozen = 0
    for name, param in model.named_parameters():
        if any(part in VISION_MODULES for part in name.split(".")):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def apply_lora(model: Any, settings: LoraSettings) -> Any:
    """Wrap ``model`` with a fresh LoRA adapter; only the adapter's weights train.

    Raises
    ------
    ValueError
        If no module matches ``settings.target_modules`` (peft's own message names them).
    """
    from peft import get_peft_model

    return get_peft_model(model, settings.peft_config())


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def enable_gradient_checkpointing(model: Any, frozen_embeddings: bool) -> None:
    """Recompute each decoder layer's activations in the backward pass instead of storing them.

    Non-reentrant checkpointing (``use_reentrant=False``): it handles keyword inputs, frozen
    weights and inputs that need no gradient, and it replays the RNG state, so dropout (LoRA's
    included) draws the same masks when a layer is recomputed and gradients are unchanged.

    ``model`` is a transformers model, before peft wraps it. ``frozen_embeddings`` (LoRA): the
    hidden states entering the first checkpointed layer would need no gradient, so the
    embedding output is made to require one, and the adapters' gradients flow back through every
    recomputed block (transformers 5 does this itself for text models; explicit because
    correctness depends on it).
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if frozen_embeddings:
        model.enable_input_require_grads()
