"""CLIP models: frozen open_clip image encoders (the locatability student, retrieval) and both
towers of a CLIP for zero-shot captions (:func:`load_zero_shot`: open_clip or transformers).

``load_clip(model_name, pretrained)`` accepts any open_clip model name with a pretrained tag or a
local checkpoint file (``pretrained=None`` gives random init), and ``"tiny"``: a small ViT built
here in code (random init, seeded) for tests and the demo; ``"small"``, a ~0.1 GMAC/image ViT
for CPU benchmarks. Images reach the model as uint8 ``(n, side, side, 3)`` batches, normalised
on the model's device in one go (:func:`encode`), so the CPU stages never hold float copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 256, "layers": 1,
                   "head_width": 32, "pool_type": "avg"},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 1, "layers": 1},
}  # fmt: skip
# A 3-layer ViT-B/32-shaped encoder at 224x224 (width 192): ~0.1 GMAC per image. Decoding then
# costs more than the model on a CPU, as on a GPU with a real encoder (the benchmark's "small").
SMALL = "small"
SMALL_CFG = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 224, "patch_size": 32, "width": 192, "layers": 3,
                   "head_width": 64, "pool_type": "avg"},
    "text_cfg": TINY_CFG["text_cfg"],
}  # fmt: skip
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
    """Load a frozen open_clip image encoder (``model.visual``) in eval mode, and its input
    geometry / normalisation.

    ``pretrained`` is an open_clip tag or a local checkpoint (for the in-code configs, a state
    dict saved by :func:`save_encoder`); ``None`` is random init seeded by ``seed``, so a fitted
    head can be reused by a later process with the same seed.
    """
    model = _open_clip(model_name, pretrained, seed)
    visual = model.visual
    if model_name in IN_CODE and pretrained:
        visual.load_state_dict(torch.load(pretrained, map_location="cpu", weights_only=True))
    visual.eval().requires_grad_(False).to(device)
    return visual, _preprocess(visual)


def _open_clip(model_name: str, pretrained: str | None, seed: int) -> torch.nn.Module:
    """The whole open_clip model (both towers) of a name, on the CPU."""
    import open_clip

    if model_name in IN_CODE:
        return _in_code(model_name, seed)
    torch.manual_seed(seed)
    return open_clip.create_model(model_name, pretrained=pretrained, device="cpu")


def _preprocess(visual: torch.nn.Module) -> Preprocess:
    import open_clip

    size = visual.image_size
    side = int(size[0] if isinstance(size, tuple | list) else size)
    mean = tuple(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
    std = tuple(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)
    return Preprocess(side=side, mean=mean, std=std)


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


# ---------------------------------------------------------------------------------------------
# Both towers, for zero-shot classification with captions


def hashed_tokens(texts: list[str], context_length: int, vocab_size: int) -> torch.Tensor:
    """Token ids for the in-code CLIPs, whose text towers have a 64-word vocabulary and no
    tokenizer: each word hashed (crc32) into ``1..vocab-2``, the last ``context_length - 1``
    words kept (a caption's place name is at its end), then the end token ``vocab - 1`` that
    open_clip's argmax pooling reads. Deterministic across processes, unlike ``hash()``."""
    import zlib

    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        words = text.lower().replace(".", " ").replace(",", " ").split()
        ids = [1 + zlib.crc32(w.encode()) % (vocab_size - 2) for w in words]
        ids = ids[-(context_length - 1) :] + [vocab_size - 1]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


@dataclass
class ZeroShotClip:
    """An image tower and a text tower sharing one embedding space.

    ``encode_images`` takes uint8 ``(n, side, side, 3)`` (CLIP's geometry: short side resized,
    centre crop) and ``encode_texts`` a list of captions; both return L2-normalised float32.
    """

    id: str
    side: int
    encode_images: Any
    encode_texts: Any


def _normalized(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


def is_open_clip(name: str) -> bool:
    """Whether ``name`` is an open_clip model (in-code, ``hf-hub:``/``local-dir:``, or a name
    open_clip lists) rather than a transformers CLIP folder, ``s3://`` prefix or hub id."""
    import open_clip

    return (
        name in IN_CODE
        or name.startswith(("hf-hub:", "local-dir:"))
        or name in open_clip.list_models()
    )


def load_zero_shot(
    name: str, pretrained: str | None = None, *, seed: int = 0, device: str = "cpu"
) -> ZeroShotClip:
    """Load a CLIP with both towers: open_clip (``"tiny"``, ``"ViT-B-32"`` + a pretrained tag or
    checkpoint, ``hf-hub:...``) or a transformers ``CLIPModel`` (a local folder, an ``s3://``
    prefix or a hub id such as ``geolocal/StreetCLIP``; its tokenizer and image processor are
    loaded from the same place).
    """
    if is_open_clip(name):
        return _open_clip_zero_shot(name, pretrained, seed, device)
    return _hf_zero_shot(name, device)


def clip_side(name: str, pretrained: str | None = None) -> int:
    """The image side a CLIP expects, without loading its weights where its config says it
    (in-code and listed open_clip models, a transformers image processor)."""
    import open_clip

    if name in IN_CODE:
        return int(IN_CODE[name]["vision_cfg"]["image_size"])
    if is_open_clip(name):
        config = open_clip.get_model_config(name) if name in open_clip.list_models() else None
        if config:
            size = config["vision_cfg"]["image_size"]
            return int(size[0] if isinstance(size, tuple | list) else size)
        return load_zero_shot(name, pretrained).side
    from transformers import AutoImageProcessor

    from georay.models.vlm import localize

    crop = AutoImageProcessor.from_pretrained(localize(name)).crop_size
    return int(crop["height"] if hasattr(crop, "__getitem__") else crop.height)


def _open_clip_zero_shot(name: str, pretrained: str | None, seed: int, device: str) -> ZeroShotClip:
    import open_clip

    model = _open_clip(name, pretrained, seed).eval().requires_grad_(False).to(device)
    pre = _preprocess(model.visual)
    if name in IN_CODE:
        text_cfg = IN_CODE[name]["text_cfg"]
        tokenize = lambda texts: hashed_tokens(  # noqa: E731
            texts, text_cfg["context_length"], text_cfg["vocab_size"]
        )
    else:
        tokenize = open_clip.get_tokenizer(name)

    @torch.inference_mode()
    def texts(captions: list[str]) -> np.ndarray:
        return _normalized(model.encode_text(tokenize(captions).to(device)))

    def images(pixels: np.ndarray) -> np.ndarray:
        return _normalized(torch.from_numpy(encode(model.visual, pre, pixels)))

    return ZeroShotClip(encoder_id(name, pretrained), pre.side, images, texts)


class _HFImageTower(torch.nn.Module):
    """A transformers CLIPModel's projected image features, as :func:`encode` calls a tower."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model.get_image_features(pixel_values=pixel_values)
        return out if isinstance(out, torch.Tensor) else out.pooler_output


def _hf_zero_shot(source: str, device: str) -> ZeroShotClip:
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    from georay.models.vlm import localize

    local = localize(source)
    model = CLIPModel.from_pretrained(local).eval().requires_grad_(False).to(device)
    tokenizer = AutoTokenizer.from_pretrained(local)
    processor = AutoImageProcessor.from_pretrained(local)
    side = clip_side(local)
    pre = Preprocess(side, tuple(processor.image_mean), tuple(processor.image_std))
    tower = _HFImageTower(model)

    @torch.inference_mode()
    def texts(captions: list[str]) -> np.ndarray:
        batch = tokenizer(captions, padding=True, truncation=True, return_tensors="pt").to(device)
        out = model.get_text_features(**batch)
        return _normalized(out if isinstance(out, torch.Tensor) else out.pooler_output)

    def images(pixels: np.ndarray) -> np.ndarray:
        return _normalized(torch.from_numpy(encode(tower, pre, pixels)))

    return ZeroShotClip(f"transformers:{source}", side, images, texts)
