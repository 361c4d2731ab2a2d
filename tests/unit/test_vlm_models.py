"""The tiny VLM, the shared input builders, LoRA settings and artifacts (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from georay.models import artifact
from georay.models.lora import LoraSettings, apply_lora, freeze_vision, trainable_parameters
from georay.models.vlm import (
    IGNORE_INDEX,
    answer_text,
    build_messages,
    collate,
    encode_example,
    encode_prompts,
    generate_answers,
    load_vlm,
    prompt_text,
    tiny_qwen2vl,
)
from georay.protocol import prompts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "model"
    model, processor = tiny_qwen2vl(save_dir=path, seed=0)
    return model, processor, path


def _image(seed: int, size=(48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_build_messages_one_image_then_question():
    msgs = build_messages("Q?", "A")
    assert msgs[0]["content"] == [{"type": "image"}, {"type": "text", "text": "Q?"}]
    assert msgs[1] == {"role": "assistant", "content": [{"type": "text", "text": "A"}]}
    assert len(build_messages("Q?")) == 1


def test_chat_template_renders_openai_image_url_parts_like_image_parts(tiny):
    _, processor, _ = tiny
    url = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    openai_style = [{"role": "user", "content": [url, {"type": "text", "text": "Q?"}]}]
    rendered = processor.apply_chat_template(
        openai_style, tokenize=False, add_generation_prompt=True
    )
    assert rendered == prompt_text(processor, "Q?")
    assert rendered.count("<|image_pad|>") == 1


def test_tiny_model_is_small_and_deterministic(tiny):
    model, _, _ = tiny
    _, total = trainable_parameters(model)
    assert total < 300_000
    again, _ = tiny_qwen2vl(seed=0)
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_loss_mask_covers_exactly_the_assistant_answer(tiny):
    _, processor, _ = tiny
    answer = prompts.location_answer("Chile", "Santiago")
    ex = encode_example(processor, _image(0), prompts.LOCATION_QUESTION, answer)
    prompt_only = encode_example(processor, _image(0), prompts.LOCATION_QUESTION)
    n_prompt = prompt_only["input_ids"].shape[0]
    labels, ids = ex["labels"], ex["input_ids"]
    # The prompt is exactly what generation sees, and none of it is in the loss.
    assert torch.equal(ids[:n_prompt], prompt_only["input_ids"])
    assert (labels[:n_prompt] == IGNORE_INDEX).all()
    # Everything after it is the answer and the end-of-turn token, all in the loss.
    assert (labels[n_prompt:] == ids[n_prompt:]).all()
    learned = processor.tokenizer.decode(ids[n_prompt:])
    assert learned == answer_text(processor, prompts.LOCATION_QUESTION, answer)
    assert learned.startswith(answer) and "<|im_end|>" in learned
    # The image placeholder expands to the image tokens the vision tower fills.
    n_image = int((ids == processor.image_token_id).sum())
    assert n_image == int(ex["image_grid_thw"].prod()) // 4


def test_collate_pads_right_for_training_and_left_for_prompts(tiny):
    _, processor, _ = tiny
    pad = processor.tokenizer.pad_token_id
    exs = [
        encode_example(processor, _image(1), "Q?", "short"),
        encode_example(processor, _image(2), "Q?", "a much longer answer than the other"),
    ]
    batch = collate(exs, pad)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    short = exs[0]["input_ids"].shape[0]
    assert (batch["labels"][0, short:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][0, short:] == 0).all()
    assert batch["pixel_values"].shape[0] == sum(e["pixel_values"].shape[0] for e in exs)
    left = encode_prompts(processor, [_image(1), _image(2, (80, 60))], ["Q?", "A longer Q?"])
    assert (left["attention_mask"][:, -1] == 1).all()


def test_loss_runs_and_save_load_round_trip(tiny):
    model, processor, path = tiny
    batch = collate(
        [encode_example(processor, _image(3), "Q?", "{'country': 'Chile'}")],
        processor.tokenizer.pad_token_id,
    )
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 0
    loaded, loaded_proc = load_vlm(path)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=1e-6)
    assert loaded_proc.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    texts = generate_answers(loaded, loaded_proc, [_image(4), _image(5)], "Q?", max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_lora_defaults_and_targets(tiny):
    settings = LoraSettings()
    assert (settings.r, settings.alpha, settings.dropout) == (64, 16, 0.05)
    with pytest.raises(ValueError, match="r must be"):
        LoraSettings(r=0)
    model, _ = tiny_qwen2vl(seed=1)
    wrapped = apply_lora(model, LoraSettings(r=4))
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("visual" in n for n in trainable)  # the vision tower gets no adapter
    assert any("q_proj" in n for n in trainable) and any("down_proj" in n for n in trainable)
    full, _ = tiny_qwen2vl(seed=1)
    assert freeze_vision(full) > 0
    assert all(not p.requires_grad for n, p in full.named_parameters() if "visual" in n)


def test_artifact_stacks_adapters_in_order(tiny, tmp_path):
    _, processor, base = tiny
    batch = collate(
        [encode_example(processor, _image(6), "Q?", "{'country': 'Peru'}")],
        processor.tokenizer.pad_token_id,
    )
    expected, _ = load_vlm(base)
    adapter_dirs = []
    for i in range(2):  # two adapters, the second trained on top of the merged first
        peft_model = apply_lora(expected, LoraSettings(r=4, alpha=8))
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(std=0.5, generator=torch.Generator().manual_seed(i))
        adapter_dirs.append((f"stage{i}", tmp_path / f"adapter{i}"))
        peft_model.save_pretrained(str(adapter_dirs[-1][1]))
        expected = peft_model.merge_and_unload()
    out = artifact.write_artifact(
        tmp_path / "art",
        base_model=str(base),
        processor=processor,
        adapters=adapter_dirs,
        stages=[
            {"stage": "reasoning", "questions": ["Q1"]},
            {"stage": "location", "questions": ["Q2"]},
        ],
    )
    assert artifact.trained_questions(out) == ["Q2"]
    loaded, loaded_proc = load_vlm(out)
    expected.eval()
    with torch.no_grad():
        want, got = expected(**batch).logits, loaded(**batch).logits
        assert not torch.allclose(want, load_vlm(base)[0](**batch).logits, atol=1e-3)
        assert torch.allclose(want, got, atol=1e-5)
    assert loaded_proc.chat_template == processor.chat_template
    base_src, inside, adapters, _ = artifact.start_point(out)
    assert base_src == str(base) and not inside
    assert [n for n, _ in adapters] == ["stage0", "stage1"]


def test_bad_artifact_is_rejected(tmp_path):
    (tmp_path / artifact.ARTIFACT_FILE).write_text('{"format": "other", "version": 1}')
    with pytest.raises(ValueError, match="not a georay-vlm-artifact"):
        load_vlm(tmp_path)
