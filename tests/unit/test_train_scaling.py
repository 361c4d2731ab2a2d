"""Training at real size: gradient checkpointing, the image-size bound, LoRA counts, presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from georay.models.qwen2vl import build_qwen2vl, lora_param_count, set_max_pixels
from georay.models.vlm import collate, encode_example, tiny_qwen2vl
from georay.protocol import prompts
from georay.train.config import TrainConfig
from georay.train.loop import setup_model


def _cfg(**kw) -> TrainConfig:
    values = dict(stage="location", input="d.jsonl", model="tiny", output="/tmp/out")
    return TrainConfig(**{**values, **kw})


def _batch(processor, n: int = 2) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    examples = [
        encode_example(
            processor,
            rng.integers(0, 256, (56, 84, 3), dtype=np.uint8),
            prompts.LOCATION_QUESTION,
            prompts.location_answer(f"Country {i}", "City"),
        )
        for i in range(n)
    ]
    return collate(examples, processor.tokenizer.pad_token_id)


def _loss_and_grads(cfg: TrainConfig, base: str, batch: dict) -> tuple[float, dict, int]:
    """One LoRA forward/backward; also the bytes autograd saved outside checkpointed blocks."""
    torch.manual_seed(1)  # same LoRA init in both models
    model, _ = setup_model(cfg, base)
    with torch.no_grad():  # LoRA B starts at 0, which would leave every A gradient 0
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    torch.manual_seed(2)  # same LoRA dropout masks
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads, sum(saved)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tmp_path):
    _, processor = tiny_qwen2vl(save_dir=tmp_path / "base")
    batch = _batch(processor)
    cfg = dict(finetune="lora", lora_r=8, lora_dropout=0.05)
    plain = _loss_and_grads(_cfg(**cfg), str(tmp_path / "base"), batch)
    checkpointed = _loss_and_grads(
        _cfg(**cfg, gradient_checkpointing=True), str(tmp_path / "base"), batch
    )
    assert checkpointed[0] == pytest.approx(plain[0], rel=1e-6)
    assert plain[1].keys() == checkpointed[1].keys() and len(plain[1]) > 0
    for name, grad in plain[1].items():
        assert grad.abs().sum() > 0, name  # every adapter, A and B, gets a gradient
        torch.testing.assert_close(checkpointed[1][name], grad, rtol=1e-5, atol=1e-7)
    # Checkpointing really ran: the decoder layers saved nothing for the backward pass.
    assert checkpointed[2] < plain[2] / 2


def test_max_pixels_bounds_visual_tokens_and_travels_with_the_processor(tmp_path):
    tiny_qwen2vl(save_dir=tmp_path / "base")
    image = np.zeros((336, 448, 3), np.uint8)
    _, default = setup_model(_cfg(finetune="full"), str(tmp_path / "base"))
    _, bounded = setup_model(_cfg(finetune="full", max_pixels=56 * 56), str(tmp_path / "base"))
    grid = encode_example(bounded, image, "q")["image_grid_thw"][0]
    assert int(grid.prod()) * 28 * 28 / 4 <= 56 * 56  # 4 patches of 14x14 per visual token
    assert encode_example(default, image, "q")["image_grid_thw"].prod() > grid.prod()
    bounded.save_pretrained(str(tmp_path / "processor"))
    from transformers import AutoProcessor

    reloaded = AutoProcessor.from_pretrained(str(tmp_path / "processor"))
    assert torch.equal(encode_example(reloaded, image, "q")["image_grid_thw"][0], grid)
    with pytest.raises(ValueError, match="min"):
        set_max_pixels(bounded, 28 * 28)
    with pytest.raises(ValueError, match="max_pixels"):
        _cfg(max_pixels=-1)


def test_lora_count_by_hand_matches_peft_on_the_tiny_model():
    from georay.models.lora import LoraSettings, apply_lora, trainable_parameters

    model, _ = build_qwen2vl("tiny")
    text = model.config.text_config.to_dict()
    for r, targets in ((8, LoraSettings().target_modules), (4, ["q_proj", "down_proj"])):
        peft_model = apply_lora(build_qwen2vl("tiny")[0], LoraSettings(r=r, target_modules=targets))
        assert trainable_parameters(peft_model)[0] == lora_param_count(text, r, targets)


def test_shipped_presets_resolve_by_name_and_are_listed_in_help():
    from georay.cli import build_parser
    from georay.config import from_args, preset_names

    names = preset_names("georay.train")
    assert {"qwen2-vl-2b", "qwen2-vl-7b", "qwen2.5-vl-7b", "tiny_reasoning"} <= set(names)
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert all(name in " ".join(train.format_help().split()) for name in names)
    for name in ("qwen2-vl-2b", "qwen2-vl-7b", "qwen2.5-vl-7b"):
        args = train.parse_args(
            ["--preset", name, "--stage", "reasoning", "--input", "d", "--output", "o"]
        )
        cfg = from_args(TrainConfig, args, "georay.train")
        # The paper's settings, bf16 on GPUs, the vision tower frozen, a bounded image size.
        assert (cfg.finetune, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (
            "lora",
            64,
            16,
            0.05,
        )
        assert (cfg.lr, cfg.epochs, cfg.max_steps, cfg.gpus_per_worker) == (1e-5, 5, 0, 1)
        assert cfg.batch_size * cfg.grad_accum * cfg.num_workers == 80
        assert not cfg.train_vision and cfg.max_pixels > 0 and cfg.model.startswith("Qwen/")
