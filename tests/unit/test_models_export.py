"""georay export: a merged checkpoint (and base + LoRA) that gives the artifact's own tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from support import georay_ok, two_stage_artifact_at

from georay.models import artifact
from georay.models.export import export_merged, read_export
from georay.models.vlm import encode_prompts, load_vlm

QUESTION = "Which country and city is the image located?"


@pytest.fixture(scope="module")
def two_stage_artifact(tmp_path_factory):
    return two_stage_artifact_at(tmp_path_factory.mktemp("export"), QUESTION)


def _images() -> list[np.ndarray]:
    """RGB uint8 images of the sizes the tiny model sees (56-84 px), in different colours."""
    rng = np.random.default_rng(0)
    sizes = [(56, 56), (84, 84), (70, 62)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@torch.no_grad()
def _greedy_tokens(model, processor, n: int = 8) -> list[list[int]]:
    images = _images()
    batch = encode_prompts(processor, images, [QUESTION] * len(images))
    out = model.generate(**batch, max_new_tokens=n, do_sample=False)
    return out[:, batch["input_ids"].shape[1] :].tolist()


def test_merged_export_loads_plainly_and_gives_the_artifacts_tokens(two_stage_artifact, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    want = _greedy_tokens(*load_vlm(two_stage_artifact))
    base = _greedy_tokens(*load_vlm(two_stage_artifact.parent / "base"))
    assert want != base  # the adapters matter, so equal tokens below mean they were merged

    info = export_merged(str(two_stage_artifact), str(tmp_path / "out"))
    assert info["adapters"] == ["reasoning", "location"]
    assert info["base"] is None and info["adapter"] is None
    # Plain transformers, no georay: the checkpoint stands alone.
    model = AutoModelForImageTextToText.from_pretrained(info["merged"], dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(info["merged"])
    assert processor.chat_template == load_vlm(two_stage_artifact)[1].chat_template
    assert _greedy_tokens(model.eval(), processor) == want
    record = read_export(info["merged"])
    assert record["questions"] == info["questions"] == [QUESTION]
    assert [s["stage"] for s in record["stages"]] == ["reasoning", "location"]


def test_lora_stage2_export_is_a_stage1_base_plus_the_last_adapter(two_stage_artifact, tmp_path):
    from peft import PeftModel

    # `georay export` itself, on a local folder (test_data_s3.py writes to S3 with it).
    info = json.loads(georay_ok("export", "--model", str(two_stage_artifact), "--output",
                                str(tmp_path / "out"), "--lora-adapter"))  # fmt: skip
    assert read_export(info["base"])["merged"] == ["reasoning"]
    base, processor = load_vlm(info["base"])
    # The adapter unmerged on top of the stage-1 base, as a LoRA server runs it.
    served = PeftModel.from_pretrained(base, info["adapter"]).eval()
    assert _greedy_tokens(served, processor) == _greedy_tokens(*load_vlm(info["merged"]))
    assert _greedy_tokens(served, processor) == _greedy_tokens(*load_vlm(two_stage_artifact))


def test_export_refuses_what_it_cannot_write(two_stage_artifact, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("old")
    with pytest.raises(FileExistsError):
        export_merged(str(two_stage_artifact), str(tmp_path / "full"))
    with pytest.raises(ValueError, match="not a georay artifact"):
        export_merged(str(two_stage_artifact.parent / "base"), str(tmp_path / "o1"))
    with pytest.raises(ValueError, match="local folder"):
        export_merged(str(two_stage_artifact), "s3://bucket/out")
    full = artifact.write_artifact(
        tmp_path / "fullft",
        base_model=str(two_stage_artifact.parent / "base"),
        processor=load_vlm(two_stage_artifact)[1],
    )
    with pytest.raises(ValueError, match="no adapters"):
        export_merged(str(full), str(tmp_path / "o2"), lora_stage2=True)
