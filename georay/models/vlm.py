"""Vision-language models: load one, build the tiny test model, turn (image, question) into inputs.

Everything that touches a VLM's input format lives here, so training and prediction cannot
drift apart:

- :func:`load_vlm` loads ``(model, processor)`` from a local folder, an ``s3://`` prefix, a hub
  id, or a georay training **artifact** (see :mod:`georay.models.artifact`).
- :func:`tiny_qwen2vl` builds a ~190K-parameter Qwen2-VL with a byte-level BPE tokenizer trained
  on the fly, for tests, CI, the demo and benchmarks (no downloads).
- :func:`build_messages` / :func:`prompt_text` / :func:`encode_example` / :func:`collate` /
  :func:`encode_prompts` / :func:`generate_answers` are the one way to go from an image and a
  question (and, when training, an answer) to model inputs and back to text. Train uses
  ``encode_example`` + ``collate``; predict uses ``encode_prompts`` + ``generate_answers``.

Training examples are tokenized as ``prompt_ids + answer_ids`` where ``prompt_ids`` is exactly
what :func:`encode_prompts` feeds the model at inference (chat template with the generation
prompt) and ``answer_ids`` is the rest of the chat-template rendering of the full conversation
(answer text, end-of-turn). Labels are ``-100`` on the prompt, so the loss is on the assistant
tokens only, and the model learns to continue precisely the prompt it will see when predicting.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from georay.protocol.prompts import build_messages

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value the loss ignores (torch.nn.CrossEntropyLoss default)

# Qwen2-VL's special tokens; the tiny tokenizer defines the same so the same template works.
TINY_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL's chat template, reduced to image and text parts. Like Qwen's, an image part is
# {"type": "image"} (HF processors, vLLM's parsed messages) or an OpenAI-style "image_url" part,
# so a caller's chat messages render with their images whoever applies the template.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The tiny model's images: at least 56x56 and at most 84x84 pixels (4-9 image tokens after the
# 2x2 patch merge), enough for colour and layout cues and cheap on CPU.
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 84 * 84


def _tiny_tokenizer_corpus() -> list[str]:
    """Text the tiny BPE learns merges from: our prompts, answer shapes, the chat template."""
    from georay.protocol import prompts

    questions = [prompts.REASONING_QUESTION, prompts.LOCATION_QUESTION, prompts.INFERENCE_QUESTION]
    answers = [
        prompts.reasoning_answer("Country", "The signs, road markings and roofs point here."),
        prompts.location_answer("Country", "City"),
        prompts.format_answer(country="Country", city="City", reasons="road signs"),
    ]
    chat = ["system\nYou are a helpful assistant.", "user\n", "assistant\n"]
    # Repetition weights the merges towards the strings the model actually has to produce.
    return (questions + answers + chat) * 20


def tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer with Qwen2-VL's special tokens, trained on the fly.

    Byte-level BPE can spell any text (every byte is a token), so names the corpus never saw
    still round-trip; the learned merges just make our prompts and answer keys short.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tiny_tokenizer_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=TINY_CHAT_TEMPLATE,
    )


def tiny_processor(min_pixels: int, max_pixels: int) -> Any:
    """A Qwen2-VL processor around :func:`tiny_tokenizer`, images of ``min..max_pixels``."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=tiny_tokenizer(),
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=TINY_CHAT_TEMPLATE,
    )


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    """Qwen2-VL's special-token ids of a tokenizer, named as config fields."""
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
    }


def stop_at_end_of_turn(model: Any, ids: dict[str, int]) -> None:
    """Generation stops at ``<|im_end|>``, pads with ``<|endoftext|>``; there is no BOS."""
    model.generation_config.eos_token_id = ids["eos_token_id"]
    model.generation_config.pad_token_id = ids["pad_token_id"]
    model.generation_config.bos_token_id = None


def tiny_qwen2vl(save_dir: str | Path | None = None, seed: int = 0) -> tuple[Any, Any]:
    """Build a tiny random-init Qwen2-VL and its processor (DESIGN "Models").

    Hidden size 64, 2 text layers, a 1-block vision tower of width 32, images of 56x56 to 84x84
    pixels. It builds, runs a loss, wraps with LoRA and generates offline in well under a
    second, and learns colour-coded countries with full fine-tuning at lr ~3e-3.

    Parameters
    ----------
    save_dir
        If given, ``save_pretrained`` model and processor there, so it can be loaded back with
        :func:`load_vlm` exactly like real weights.
    seed
        Seed of the weight initialisation (the tokenizer is deterministic on its own).

    Returns
    -------
    (Qwen2VLForConditionalGeneration, Qwen2VLProcessor)
    """
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    processor = tiny_processor(TINY_MIN_PIXELS, TINY_MAX_PIXELS)
    tokenizer = processor.tokenizer
    ids = special_token_ids(tokenizer)
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        # Head size 32 (64 / 2): vLLM's CPU attention accepts head sizes >= 32 only, and the
        # same tiny model must run on both engines (DESIGN "Engines for generation").
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        # mrope_section splits head_dim/2 = 16 rotary frequencies over (time, height, width).
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
        # No BOS: Qwen's template starts with <|im_start|>. EOS is end-of-turn, so generation
        # stops where the chat template ends the assistant's answer.
        bos_token_id=None,
        eos_token_id=ids["eos_token_id"],
        pad_token_id=ids["pad_token_id"],
    )
    vision_config = dict(
        depth=1,
        embed_dim=32,
        hidden_size=64,  # the patch merger's output width = the text hidden size
        num_heads=1,  # head size 32, as in the text model
        mlp_ratio=2,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    vision_ids = {k: v for k, v in ids.items() if k not in ("eos_token_id", "pad_token_id")}
    config = Qwen2VLConfig(text_config=text_config, vision_config=vision_config, **vision_ids)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    stop_at_end_of_turn(model, ids)
    if save_dir is not None:
        model.save_pretrained(str(save_dir))
        processor.save_pretrained(str(save_dir))
    return model, processor


# ---------------------------------------------------------------------------------------------
# Loading


def cache_root() -> Path:
    """Where georay keeps local copies of models (``$GEORAY_CACHE/models``, default ~/.cache)."""
    return Path(os.environ.get("GEORAY_CACHE", Path.home() / ".cache" / "georay")) / "models"


def localize(source: str, cache_dir: str | Path | None = None) -> str:
    """A local folder holding ``source``: the folder itself, or a download of an S3 prefix.

    S3 prefixes are copied into ``cache_dir`` (default ``~/.cache/georay/models/<hash>``); files
    already there with the same size are not fetched again.
    """
    from georay.data.storage import filesystem_for, is_s3, list_files

    source = str(source)
    if not is_s3(source):
        return source
    prefix = source.rstrip("/")
    target = Path(cache_dir or cache_root() / hashlib.sha1(prefix.encode()).hexdigest()[:16])
    fs, _ = filesystem_for(prefix)
    files = list_files(prefix)
    if not files:
        raise FileNotFoundError(f"no files under {source}")
    for uri in files:
        local = target / uri[len(prefix) + 1 :]
        _, path = filesystem_for(uri)
        size = fs.get_file_info(path).size
        if local.exists() and local.stat().st_size == size:
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(path) as src, open(local, "wb") as dst:
            while chunk := src.read(1 << 24):
                dst.write(chunk)
    log.info("fetched %s to %s (%d files)", source, target, len(files))
    return str(target)


def processor_max_pixels(processor) -> int | None:
    """The image processor's pixel cap (Qwen2-VL: ``size["longest_edge"]`` in transformers 5)."""
    image_processor = getattr(processor, "image_processor", None)
    for name in ("max_pixels",):
        value = getattr(image_processor, name, None)
        if value:
            return int(value)
    size = getattr(image_processor, "size", None)
    get = size.get if hasattr(size, "get") else (lambda key: getattr(size, key, None))
    value = get("max_pixels") or get("longest_edge")
    return int(value) if value else None


def load_processor(source: str | Path) -> Any:
    """The processor of a model folder, ``s3://`` prefix, hub id or training artifact (no weights)."""
    from transformers import AutoProcessor

    from georay.models import artifact

    local = localize(str(source))
    if artifact.is_artifact(local):
        spec = artifact.read_artifact(local)
        if spec.get("processor"):
            return AutoProcessor.from_pretrained(artifact.resolve(local, spec["processor"]))
        return load_processor(artifact.resolve(local, spec["base_model"]))
    return AutoProcessor.from_pretrained(local)


def load_vlm(
    source: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
) -> tuple[Any, Any]:
    """Load a vision-language model and its processor.

    Parameters
    ----------
    source
        One of: a local folder written by ``save_pretrained`` (model + processor); an ``s3://``
        prefix holding such a folder (downloaded to a local cache first); a hub id such as
        ``Qwen/Qwen2-VL-2B-Instruct`` (needs the hub or a filled HF cache); or a georay training
        artifact (local or ``s3://``; a folder with ``artifact.json``), in which case the base
        model is loaded and the artifact's adapters are applied and merged in order, exactly
        as training stacked them (:mod:`georay.models.artifact`).
    device
        Where to put the model (default: stay on CPU).
    dtype
        Weight dtype (``torch.bfloat16``, ``"float32"``, ...); default: float32.

    Returns
    -------
    (model, processor)
        ``AutoModelForImageTextToText`` in eval mode, and its ``AutoProcessor``.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from georay.models import artifact

    local = localize(str(source))
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dtype = dtype or torch.float32
    if artifact.is_artifact(local):
        model, processor = artifact.load_artifact(local, load_base=load_vlm, dtype=dtype)
    else:
        model = AutoModelForImageTextToText.from_pretrained(local, dtype=dtype)
        processor = AutoProcessor.from_pretrained(local)
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, processor


# ---------------------------------------------------------------------------------------------
# Messages and model inputs (shared by train and predict: keep these names stable)


def prompt_text(processor: Any, question: str) -> str:
    """The chat-template text the model sees before it answers (ends with the assistant cue)."""
    return processor.apply_chat_template(
        build_messages(question), tokenize=False, add_generation_prompt=True
    )


def answer_text(processor: Any, question: str, answer: str) -> str:
    """The text the model must produce after :func:`prompt_text`: answer plus end of turn.

    Taken from the chat template's rendering of the whole conversation, so whatever a model's
    template puts after an answer (``<|im_end|>`` for Qwen) is learned too, and generation stops
    there.
    """
    prompt = prompt_text(processor, question)
    full = processor.apply_chat_template(build_messages(question, answer), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError(
            "chat template renders the prompt differently with and without the answer; "
            "cannot separate assistant tokens for the loss mask"
        )
    return full[len(prompt) :]


def as_rgb(image: Any) -> Any:
    """An RGB image the processor accepts: a PIL image or an (H, W, 3) uint8 array."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
        return image
    if hasattr(image, "convert"):
        return image.convert("RGB")
    raise TypeError(f"expected a PIL image or numpy array, got {type(image).__name__}")


def encode_example(
    processor: Any, image: Any, question: str, answer: str | None = None
) -> dict[str, torch.Tensor]:
    """Model inputs for one example, unbatched (``input_ids`` etc. are 1-D).

    With an ``answer``, ``input_ids`` is prompt + answer tokens and ``labels`` is ``-100`` on
    the prompt and the answer ids elsewhere: the loss is on the assistant's tokens only.

    Returns
    -------
    dict
        ``input_ids``, ``attention_mask``, ``mm_token_type_ids`` (when the processor gives it),
        ``pixel_values`` (patches, 2-D), ``image_grid_thw`` (1, 3) and, with an answer,
        ``labels``.
    """
    batch = processor(
        text=[prompt_text(processor, question)], images=[as_rgb(image)], return_tensors="pt"
    )
    out = {k: v[0] for k, v in batch.items() if k not in ("pixel_values", "image_grid_thw")}
    out["pixel_values"] = batch["pixel_values"]
    out["image_grid_thw"] = batch["image_grid_thw"]
    if answer is None:
        return out
    answer_ids = processor.tokenizer(
        answer_text(processor, question, answer), add_special_tokens=False, return_tensors="pt"
    )["input_ids"][0]
    n_prompt = out["input_ids"].shape[0]
    out["input_ids"] = torch.cat([out["input_ids"], answer_ids])
    out["attention_mask"] = torch.ones_like(out["input_ids"])
    if "mm_token_type_ids" in out:  # answer tokens are text (type 0)
        out["mm_token_type_ids"] = torch.cat(
            [out["mm_token_type_ids"], torch.zeros_like(answer_ids)]
        )
    labels = out["input_ids"].clone()
    labels[:n_prompt] = IGNORE_INDEX
    out["labels"] = labels
    return out


def collate(
    examples: Sequence[dict[str, torch.Tensor]], pad_token_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Batch :func:`encode_example` outputs: pad the token rows, concatenate the image patches.

    Right padding for training (labels padded with ``-100``); left padding for generation.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    width = max(ex["input_ids"].shape[0] for ex in examples)
    pad_values = {
        "input_ids": pad_token_id,
        "attention_mask": 0,
        "mm_token_type_ids": 0,
        "labels": IGNORE_INDEX,
    }
    batch: dict[str, torch.Tensor] = {}
    for key, value in pad_values.items():
        if key not in examples[0]:
            continue
        rows = []
        for ex in examples:
            row = ex[key]
            pad = row.new_full((width - row.shape[0],), value)
            rows.append(torch.cat([row, pad] if padding_side == "right" else [pad, row]))
        batch[key] = torch.stack(rows)
    batch["pixel_values"] = torch.cat([ex["pixel_values"] for ex in examples])
    batch["image_grid_thw"] = torch.cat([ex["image_grid_thw"] for ex in examples])
    return batch


def encode_prompts(processor: Any, images: Sequence[Any], questions: Sequence[str]) -> dict:
    """A left-padded generation batch: one (image, question) prompt per row, one processor call.

    The same tensors as :func:`encode_example` + :func:`collate` with left padding (a unit test
    holds them equal, so training and inference cannot drift apart), but one processor call for
    the batch: on CPU the per-image calls took a third of a 16-image batch's time.
    """
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    processor.tokenizer.padding_side = "left"
    return processor(
        text=[prompt_text(processor, q) for q in questions],
        images=[as_rgb(im) for im in images],
        padding=True,
        return_tensors="pt",
    )


@torch.no_grad()
def generate_answers(
    model: Any,
    processor: Any,
    images: Sequence[Any],
    questions: Sequence[str] | str,
    max_new_tokens: int = 64,
) -> list[str]:
    """Greedy answers to ``questions`` (one per image, or one string for all), decoded text."""
    if isinstance(questions, str):
        questions = [questions] * len(images)
    batch = _on_device(model, encode_prompts(processor, images, questions))
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = out[:, batch["input_ids"].shape[1] :]
    return processor.batch_decode(new_tokens, skip_special_tokens=True)


def _on_device(model: Any, batch: dict) -> dict:
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
    return batch


def _stop_ids(model: Any) -> set[int]:
    config = model.generation_config
    ids = config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    return set(ids) | ({config.pad_token_id} if config.pad_token_id is not None else set())


@torch.no_grad()
def generate_scored(model, processor, batch: dict, max_new_tokens: int, top_n: int) -> list:
    """Greedy answers to an :func:`encode_prompts` batch with their token probabilities.

    The same tokens and text as :func:`generate_answers` (the logits are only read), as one
    :class:`~georay.protocol.tokenprob.Scored` per row, with the ``top_n`` most probable tokens
    of every step.
    """
    from georay.protocol.tokenprob import Scored

    batch = _on_device(model, batch)
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                         output_logits=True, return_dict_in_generate=True)  # fmt: skip
    new = out.sequences[:, batch["input_ids"].shape[1] :]
    # Raw logits (before any logits processor), as vLLM's logprobs: the engines agree. One step
    # at a time in float64: a (batch, steps, vocab) float64 tensor of a 150K vocabulary would
    # be a gigabyte, and float32 log-softmax drifts by 1e-6 a token.
    chosen, values, indices = [], [], []
    for step, logits in enumerate(out.logits):
        logp = torch.log_softmax(logits.double(), dim=-1)  # (B, V)
        chosen.append(logp.gather(-1, new[:, step, None])[:, 0])
        if top_n:
            top = torch.topk(logp, min(top_n, logp.shape[-1]), dim=-1)
            values.append(top.values)
            indices.append(top.indices)
    chosen = torch.stack(chosen, dim=1).cpu().tolist()
    if top_n:
        values = torch.stack(values, dim=1).cpu().tolist()
        indices = torch.stack(indices, dim=1).cpu().tolist()
    texts = processor.batch_decode(new, skip_special_tokens=True)
    stop, rows = _stop_ids(model), []
    for b, ids in enumerate(new.tolist()):
        n = next((i for i, t in enumerate(ids) if t in stop), len(ids))
        steps = []
        if top_n:
            steps = [list(zip(i, v, strict=True))
                     for i, v in zip(indices[b][:n], values[b][:n], strict=True)]  # fmt: skip
        rows.append(Scored(tokens=ids[:n], logprobs=chosen[b][:n], top=steps,
                           text=texts[b]))  # fmt: skip
    return rows


def _image_slices(grid_thw: torch.Tensor) -> list[slice]:
    """Each image's rows of a batch's concatenated ``pixel_values``."""
    sizes = grid_thw.prod(dim=-1).tolist()
    starts = np.cumsum([0, *sizes])
    return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]


def continue_batch(batch: dict, rows: Sequence[int], prefixes: Sequence[Sequence[int]],
                   pad_token_id: int) -> dict:  # fmt: skip
    """A left-padded batch of ``batch``'s prompt ``rows`` (repeats allowed), each followed by
    its ``prefixes`` tokens: greedy generation from it continues answers already begun."""
    mask = batch["attention_mask"]
    ids = [
        torch.cat([batch["input_ids"][r][mask[r].bool()], torch.tensor(list(p), dtype=torch.long)])
        for r, p in zip(rows, prefixes, strict=True)
    ]
    types = None
    if "mm_token_type_ids" in batch:
        types = [torch.cat([batch["mm_token_type_ids"][r][mask[r].bool()],
                            torch.zeros(len(p), dtype=torch.long)])
                 for r, p in zip(rows, prefixes, strict=True)]  # fmt: skip
    width = max(len(x) for x in ids)

    def left(x: torch.Tensor, value: int) -> torch.Tensor:
        return torch.cat([x.new_full((width - len(x),), value), x])

    out = {
        "input_ids": torch.stack([left(x, pad_token_id) for x in ids]),
        "attention_mask": torch.stack([left(torch.ones_like(x), 0) for x in ids]),
    }
    if types is not None:
        out["mm_token_type_ids"] = torch.stack([left(x, 0) for x in types])
    slices = _image_slices(batch["image_grid_thw"])
    out["pixel_values"] = torch.cat([batch["pixel_values"][slices[r]] for r in rows])
    out["image_grid_thw"] = batch["image_grid_thw"][list(rows)]
    return out


def continue_scored(model, processor, batch: dict, rows: Sequence[int],
                    prefixes: Sequence[Sequence[int]], max_new_tokens: int) -> list:  # fmt: skip
    """Greedy continuations (with their log-probabilities) of answers begun with ``prefixes``,
    for the prompts ``rows`` of an :func:`encode_prompts` batch, in one ``generate`` call."""
    pad = processor.tokenizer.pad_token_id
    cont = continue_batch(batch, rows, prefixes, pad)
    return generate_scored(model, processor, cont, max_new_tokens, top_n=0)
