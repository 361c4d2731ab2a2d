"""Qwen2-VL models of a named size, built random-init in code, and facts that follow from them.

- :func:`build_qwen2vl` builds ``"tiny"`` (georay's ~200K-parameter test model,
  :func:`georay.models.vlm.tiny_qwen2vl`) or ``"2b"``: exactly the architecture of
  ``Qwen/Qwen2-VL-2B-Instruct``, typed in below from its published ``config.json`` and
  ``preprocessor_config.json``, random init, no download. The 2B uses georay's tiny byte-level
  BPE tokenizer; its embedding keeps the published 151,936 rows, of which the tokenizer's
  ~380 tokens use the first (the vocabulary is *padded* to the real size, so embedding, LM
  head, softmax and memory are those of the real model).
- :func:`lora_param_count` is the LoRA trainable-parameter count computed by hand from a text
  config, to check what peft builds.
- :func:`set_max_pixels` bounds the images a Qwen2-VL-family processor encodes (and so the
  visual tokens): training's ``max_pixels``.

It lives here, not in ``benchmarks/``, because ``benchmarks.realsize`` (CPU),
``benchmarks.gpu_check`` (one GPU, only torch + transformers + peft installed) and tests share
it; it imports no Ray and no pyarrow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch

from georay.models.lora import DEFAULT_TARGETS

SIZES = ("tiny", "2b")

# Qwen/Qwen2-VL-2B-Instruct config.json, text part. transformers 5 moves the top-level text
# fields into ``text_config`` and ``rope_scaling`` ({"type": "mrope", "mrope_section": ...})
# into ``rope_parameters``. Fields whose transformers default differs from the published value
# are written out too (e.g. rms_norm_eps: default 1e-5, published 1e-6).
QWEN2_VL_2B_TEXT = dict(
    vocab_size=151936,
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,  # head size 128
    num_key_value_heads=2,  # grouped-query attention: K/V projections are 1536 -> 256
    hidden_act="silu",
    max_position_embeddings=32768,
    initializer_range=0.02,
    rms_norm_eps=1e-6,
    attention_dropout=0.0,
    use_sliding_window=False,
    sliding_window=32768,
    max_window_layers=28,
    tie_word_embeddings=True,  # the 2B shares embedding and LM head (the 7B does not)
    rope_parameters={
        "rope_type": "default",
        "rope_theta": 1000000.0,
        "mrope_section": [16, 24, 24],
    },
)
# Its vision_config: a 32-block ViT of width 1280 (~630M parameters) whose patch merger maps
# 2x2 patches to one token of the text width (hidden_size 1536). transformers calls the
# published "in_chans" ``in_channels``; hidden_act is the published (and default) quick_gelu.
QWEN2_VL_2B_VISION = dict(
    depth=32,
    embed_dim=1280,
    hidden_size=1536,
    hidden_act="quick_gelu",
    mlp_ratio=4,
    num_heads=16,
    in_channels=3,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
)
# preprocessor_config.json: images are resized to a multiple of 28 with between 56x56 pixels
# and 12,845,056 pixels (3584x3584: up to 16,384 visual tokens, one per 28x28 pixels).
QWEN2_VL_2B_PIXELS = dict(min_pixels=56 * 56, max_pixels=28 * 28 * 16384)
# The published special-token ids (151643 <|endoftext|> = bos/pad, 151645 <|im_end|> = eos,
# 151652/151653 vision start/end, 151655 image pad, 151656 video pad) belong to the real
# tokenizer; the built model takes the tiny tokenizer's ids for the same tokens instead.
QWEN2_VL_2B_PARAMS = 2_208_985_600  # what this config builds (the model card says 2.21B)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _build_2b(dtype: torch.dtype, device: str | torch.device | None, seed: int):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.initialization import no_init_weights

    from georay.models.vlm import special_token_ids, stop_at_end_of_turn, tiny_processor

    processor = tiny_processor(**QWEN2_VL_2B_PIXELS)
    ids = special_token_ids(processor.tokenizer)
    eos, pad = ids.pop("eos_token_id"), ids.pop("pad_token_id")
    text = dict(QWEN2_VL_2B_TEXT, bos_token_id=None, eos_token_id=eos, pad_token_id=pad)
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=QWEN2_VL_2B_VISION,
        tie_word_embeddings=QWEN2_VL_2B_TEXT["tie_word_embeddings"],
        **ids,  # image/video pad and vision start/end ids
    )
    # Allocate in the target dtype on the target device and initialise once: the modules'
    # own constructors would initialise every weight a first time for nothing (2.2B values,
    # ~30 s on 2 cores), and fp32 first would need twice the memory.
    torch.manual_seed(seed)
    with _default_dtype(dtype), torch.device(device or "cpu"):
        with no_init_weights():
            model = Qwen2VLForConditionalGeneration(config)
        model.init_weights()
    stop_at_end_of_turn(model, {"eos_token_id": eos, "pad_token_id": pad})
    return model, processor


def build_qwen2vl(
    size: str = "tiny",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Build a random-init Qwen2-VL of a named size (``"tiny"`` or ``"2b"``) in eval mode, and
    its processor (no downloads); the 2B is allocated directly in ``dtype`` on ``device``."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if size == "tiny":
        from georay.models.vlm import tiny_qwen2vl

        model, processor = tiny_qwen2vl(seed=seed)
        model = model.to(device=device or "cpu", dtype=dtype)
    else:
        model, processor = _build_2b(dtype, device, seed)
    return model.eval(), processor


def lora_param_count(text_config: dict, r: int, targets: Iterable[str] = DEFAULT_TARGETS) -> int:
    """Trainable parameters of LoRA rank ``r`` on a Qwen2 decoder's linear layers, by hand.

    A LoRA pair on a ``Linear(n_in, n_out)`` is ``A: r x n_in`` and ``B: n_out x r``, so
    ``r * (n_in + n_out)`` parameters (peft adds no bias with ``bias="none"``). Per layer,
    with hidden size ``h``, MLP width ``m`` and K/V width ``kv = kv_heads * h / heads``::

        q: (h, h)   k: (h, kv)   v: (h, kv)   o: (h, h)   gate, up: (h, m)   down: (m, h)

    times ``num_hidden_layers``. Nothing in the vision tower counts (georay keeps it frozen).
    """
    h, m = text_config["hidden_size"], text_config["intermediate_size"]
    kv = text_config["num_key_value_heads"] * (h // text_config["num_attention_heads"])
    shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
              "gate_proj": (h, m), "up_proj": (h, m), "down_proj": (m, h)}  # fmt: skip
    unknown = set(targets) - set(shapes)
    if unknown:
        raise ValueError(f"no hand formula for LoRA targets {sorted(unknown)}")
    per_layer = sum(r * (n_in + n_out) for name, (n_in, n_out) in shapes.items() if name in targets)
    return text_config["num_hidden_layers"] * per_layer


def set_max_pixels(processor: Any, max_pixels: int) -> None:
    """Make a Qwen2-VL-family processor resize images to at most ``max_pixels`` pixels.

    Qwen2-VL / Qwen2.5-VL processors resize each image (keeping its aspect ratio) to a multiple
    of 28 pixels with between ``size["shortest_edge"]`` and ``size["longest_edge"]`` pixels; a
    28x28 area becomes one visual token. The bound is set on the processor itself, so a
    processor saved afterwards (the artifact's) keeps it and prediction sees images at the
    resolution training did.

    Raises
    ------
    ValueError
        If the processor has no such bound, or ``max_pixels`` is below its minimum.
    """
    image = getattr(processor, "image_processor", None)
    size = getattr(image, "size", None)
    if size is None or getattr(size, "longest_edge", None) is None:
        raise ValueError(
            f"{type(image).__name__} has no pixel bound (size['longest_edge']); "
            "max_pixels works with Qwen2-VL-family processors"
        )
    if max_pixels < size["shortest_edge"]:
        raise ValueError(f"max_pixels {max_pixels} < the processor's min {size['shortest_edge']}")
    size["longest_edge"] = int(max_pixels)
