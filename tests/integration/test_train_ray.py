"""Ray Train stages on the tiny VLM: both stages, worker failure, driver restart, 2 workers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from georay.data.images import encode_jpeg
from georay.models import artifact
from georay.protocol import prompts
from georay.protocol.sft import SftExample, write_sft
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
        input=str(world / "reasoning.jsonl"),
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


def _history(artifact_dir, stage):
    lines = (artifact_dir / f"metrics-{stage}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_two_workers_recover_from_a_killed_worker(ray_session, world, tmp_path, monkeypatch):
    """Rank 0 dies at step 3; the run goes on from the step-2 checkpoint, not from step 0."""
    from georay.train.loop import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, "3")  # fault injection is an environment variable, not a flag
    summary = train(
        _cfg(
            world,
            tmp_path / "s1",
            num_workers=2,
            max_steps=5,
            checkpoint_every=2,
            report_every=10,
            max_failures=1,
        )
    )
    assert summary["steps"] == 5 and summary["resumed_from"] == 2
    history = _history(tmp_path / "s1", "reasoning")
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5]  # no step repeated or lost
    assert all(h["world_size"] == 2 for h in history)


@pytest.mark.slow
def test_stage_two_on_s3_stacks_on_stage_one_and_resumes(ray_session, world, tmp_path, s3_bucket):
    from georay.models.vlm import collate, encode_example, load_vlm

    one = train(_cfg(world, tmp_path / "s1", max_steps=4))
    assert one["steps"] == 4 and one["losses"][-1] < one["losses"][0]
    out, storage = f"s3://{s3_bucket}/stage2", f"s3://{s3_bucket}/checkpoints"
    stage2 = dict(
        stage="location",
        input=str(world / "location.jsonl"),
        model=one["artifact"],
        output=out,
        storage_path=storage,
        max_steps=4,
    )
    two = train(_cfg(world, None, **stage2))
    assert two["artifact"] == out and two["resumed_from"] == 0
    model, processor = load_vlm(out)
    local = tmp_path / "s2"
    from georay.models.vlm import localize

    spec = json.loads((Path(localize(out, local)) / artifact.ARTIFACT_FILE).read_text())
    assert [a["name"] for a in spec["adapters"]] == ["reasoning", "location"]
    assert [s["stage"] for s in spec["stages"]] == ["reasoning", "location"]
    assert spec["base_model"] == "./base"
    assert artifact.trained_questions(localize(out, local)) == [prompts.LOCATION_QUESTION]
    # The artifact is the base with both adapters merged in order: it differs from stage 1.
    stage1, _ = load_vlm(one["artifact"])
    ex = collate([encode_example(processor, np.zeros((56, 56, 3), np.uint8), "Q?", "A")], 0)
    with torch.no_grad():
        assert not torch.allclose(model(**ex).logits, stage1(**ex).logits)
    # Driver restart: the same storage path and name go on from the last checkpoint.
    again = train(_cfg(world, None, **{**stage2, "max_steps": 6}))
    assert again["resumed_from"] == 4 and again["steps"] == 6
    assert len(again["losses"]) == 6 and again["losses"][:4] == two["losses"]


@pytest.mark.slow
def test_fsdp_lora_resumes_on_another_worker_count_with_validation(ray_session, world, tmp_path):
    """FSDP over 2 CPU workers (gloo) with LoRA; the checkpoint resumes on 1 worker."""
    common = dict(strategy="fsdp", val_fraction=0.25, report_every=10, storage_path=str(
        tmp_path / "ck"), name="fsdp")  # fmt: skip
    two = train(_cfg(world, tmp_path / "a2", num_workers=2, max_steps=2, **common))
    assert two["steps"] == 2 and two["val_loss"] is not None
    one = train(_cfg(world, tmp_path / "a1", num_workers=1, max_steps=4, **common))
    assert one["resumed_from"] == 2 and one["steps"] == 4
    history = _history(tmp_path / "a1", "reasoning")
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert [h["world_size"] for h in history] == [2, 2, 1, 1]
    assert all(h["val_loss"] > 0 for h in history if h["step"] in (2, 4))  # every checkpoint
    spec = artifact.read_artifact(tmp_path / "a1")
    stage = spec["stages"][-1]
    assert stage["strategy"] == "fsdp" and stage["checkpoint_step"] == 4
    assert stage["checkpoint"] == one["checkpoint"] and stage["val_loss"] == one["val_loss"]
    assert [s for s, _ in stage["val_losses"]] == [2, 4]
