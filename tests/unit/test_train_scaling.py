"""Training at real size: gradient checkpointing, the image-size bound, LoRA counts, presets."""

from __future__ import annotations

from georay.models.qwen2vl import build_qwen2vl, lora_param_count


def test_lora_count_by_hand_matches_peft_on_the_tiny_model():
    from georay.models.lora import LoraSettings, apply_lora, trainable_parameters

    model, _ = build_qwen2vl("tiny")
    text = model.config.text_config.to_dict()
    for r, targets in ((8, LoraSettings().target_modules), (4, ["q_proj", "down_proj"])):
        peft_model = apply_lora(build_qwen2vl("tiny")[0], LoraSettings(r=r, target_modules=targets))
        assert trainable_parameters(peft_model)[0] == lora_param_count(text, r, targets)
