"""Frozen open_clip image encoders for the locatability student.

``load_clip(model_name, pretrained)`` accepts any open_clip model name with a pretrained tag or a
local checkpoint file (``pretrained=None`` gives random init), and ``"tiny"``: a small ViT built
here in code (random init, seeded) for tests and the demo; ``"small"``, a ~0.1 GMAC/image ViT
for CPU benchmarks. Images reach the model
as uint8 ``(n, side, side, 3)`` batches and are normalised on the model's device in one go
(:func:`encode`), so the CPU stages never hold float copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

TINY = "tiny"
# A 1-layer ViT on 64x64 inputs, 8x8 patches, width 256, mean pooling: ~0.9M parameters, ~0.05
# GMAC per image. Mean-pooled random patch features keep colour/texture statistics, which is what
# area-weighted locatability depends on. Width mattered most on the synthetic world (held-out
# Spearman of a ridge head on 1,000 views: width 64 0.57, width 256 0.77; more layers or a larger
# projection did not help).
TINY_CFG = {
    "embed_dim": 256,
    "vision_cfg": {
        "image_size": 64,
        "patch_size": 8,
        "width": 256,
        "layers": 1,
        "head_width": 32,
        "pool_type": "avg",
    },
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 1, "layers": 1},
}
# A 3-layer ViT-B/32-shaped encoder at 224x224 (width 192): ~0.1 GMAC per image. Decoding then
# costs more than the model on a CPU, as on a GPU with a real encoder (the benchmark's "small").
SMALL = "small"
SMALL_CFG = {
    "embed_dim": 256,
    "vision_cfg": {
        "image_size": 224,
        "patch_size": 32,
        "width": 192,
        "layers": 3,
        "head_width": 64,
        "pool_type": "avg",
    },  # fmt: skip
    "text_cfg": TINY_CFG["text_cfg"],
}
IN_CODE = {TINY: TINY_CFG, SMALL: SMALL_CFG}


@dataclass(frozen=True)
class Preprocess:
    """What an encoder expects: square ``side`` pixels, normalised with ``mean`` / ``std``."""

    side: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def encoder_id(model_name: str, pretrained: str | None) -> str:
    """Stable id recorded with a fitted head, e.g. ``open_clip:ViT-B-32:laion2b_s34b_b79k``."""
    return f"open_clip:{model_name}:{pretrained or 'random'}"


def _in_code(name: str, seed: int) -> torch.nn.Module:
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    return CLIP(**IN_CODE[name])


def load_clip(
    model_name: str = TINY, pretrained: str | None = None, *, seed: int = 0, device: str = "cpu"
) -> tuple[torch.nn.Module, Preprocess]:
    """Load a frozen open_clip image encoder (``model.visual``) in eval mode.

    Parameters
    ----------
    model_name
        An open_clip model name (``"ViT-B-32"``, ``"RN50"``, ``"hf-hub:..."``,
        ``"local-dir:..."``) or ``"tiny"``.
    pretrained
        open_clip pretrained tag or a local checkpoint path; ``None`` = random init (seeded by
        ``seed``, so a fitted head can be reused by a later process with the same seed).
        For the in-code configs a path loads a state dict saved by :func:`save_encoder`.
    device
        Torch device for the encoder.

    Returns
    -------
    (torch.nn.Module, Preprocess)
        The vision tower (frozen) and its input geometry / normalisation.
    """
    import open_clip

    if model_name in IN_CODE:
        model = _in_code(model_name, seed)
    else:
        torch.manual_seed(seed)
        model = open_clip.create_model(model_name, pretrained=pretrained, device="cpu")
    visual = model.visual
    if model_name in IN_CODE and pretrained:
        visual.load_state_dict(torch.load(pretrained, map_location="cpu", weights_only=True))
    size = visual.image_size
    side = int(size[0] if isinstance(size, tuple | list) else size)
    mean = tuple(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
    std = tuple(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)
    visual.eval().requires_grad_(False).to(device)
    return visual, Preprocess(side=side, mean=mean, std=std)


def save_encoder(visual: torch.nn.Module, path: str) -> None:
    """Save an encoder's weights (used for random-init encoders, which have no pretrained tag)."""
    torch.save(visual.state_dict(), path)


@torch.inference_mode()
def encode(visual: torch.nn.Module, pre: Preprocess, pixels: np.ndarray) -> np.ndarray:
    """Embed a uint8 batch ``(n, side, side, 3)``; returns float32 ``(n, dim)``."""
    param = next(visual.parameters())
    x = torch.from_numpy(np.ascontiguousarray(pixels)).to(param.device)
    x = x.permute(0, 3, 1, 2).to(param.dtype).div_(255.0)
    mean = torch.tensor(pre.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    out = visual((x - mean) / std)
    if isinstance(out, tuple):  # output_tokens=True configs return (pooled, tokens)
        out = out[0]
    return out.float().cpu().numpy()
