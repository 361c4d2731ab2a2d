"""Ray Train stages on the tiny VLM: both stages, worker failure, driver restart, 2 workers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from georay.data import prompts
from georay.data.images import encode_jpeg
from georay.knowledge.sft import SftExample, write_sft
from georay.models import artifact
from georay.train import TrainConfig, train

COLOURS = {"Chile": (200, 40, 40), "Kenya": (40, 160, 40), "Japan": (40, 40, 200)}


def _world(folder, n=24, seed=0):
    """Colour-coded images plus stage-1 and stage-2 SFT files (relative image paths)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    reasoning, location = [], []
    names = list(COLOURS)
    for i in range(n):
        country = names[i % len(names)]
        pixels = np.clip(rng.normal(COLOURS[country], 20, (48, 64, 3)), 0, 255).astype(np.uint8)
        (folder / "images" / f"{i}.jpg").write_bytes(encode_jpeg(pixels))
        image = f"images/{i}.jpg"
        reasoning.append(
            SftExample(
                str(i),
                image,
                prompts.REASONING_QUESTION,
                prompts.reasoning_answer(country, "the colour"),
            )
        )
        location.append(
            SftExample(
                str(i), image, prompts.LOCATION_QUESTION, prompts.location_answer(country, "X")
            )
        )
    write_sft(reasoning, folder / "reasoning.jsonl")
    write_sft(location, folder / "location.jsonl")
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _world(tmp_path_factory.mktemp("world"))


def _cfg(world, out, **kw):
    values = dict(
        stage="reasoning",
        data=str(world / "reasoning.jsonl"),
        model="tiny",
        output=str(out),
        lr=3e-3,
        batch_size=4,
        max_steps=6,
        checkpoint_every=2,
        lora_r=8,
        lora_alpha=16,
        max_failures=0,
        report_every=3,
    )
    values.update(kw)
    return TrainConfig(**values)


def test_two_stages_stack_adapters(ray_session, world, tmp_path):
    from georay.models.vlm import load_vlm

    one = train(_cfg(world, tmp_path / "s1"))
    assert one["steps"] == 6 and one["resumed_from"] == 0
    assert len(one["losses"]) == 6 and one["losses"][-1] < one["losses"][0]
    two = train(
        _cfg(
            world,
            tmp_path / "s2",
            stage="location",
            data=str(world / "location.jsonl"),
            model=one["artifact"],
        )
    )
    spec = json.loads((tmp_path / "s2" / artifact.ARTIFACT_FILE).read_text())
    assert [a["name"] for a in spec["adapters"]] == ["reasoning", "location"]
    assert [s["stage"] for s in spec["stages"]] == ["reasoning", "location"]
    assert spec["base_model"] == "./base"
    model, processor = load_vlm(two["artifact"])
    assert processor.tokenizer.pad_token_id is not None and model.config.model_type == "qwen2_vl"
