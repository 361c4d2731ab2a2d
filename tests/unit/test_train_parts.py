"""Training pieces without Ray: settings, presets, CLI flags, batch order, schedule, a step."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from georay.config import add_dataclass_args, from_args
from georay.data.images import encode_jpeg
from georay.models.vlm import tiny_qwen2vl
from georay.protocol import prompts
from georay.protocol.sft import SftExample, write_sft
from georay.train.config import TrainConfig
from georay.train.data import EncodedExamples, load_examples, micro_batches
from georay.train.loop import (
    Worker,
    assemble,
    make_optimizer,
    restore_checkpoint,
    save_checkpoint,
    setup_model,
    train_step,
)

PRESETS = Path(__file__).resolve().parents[2] / "georay" / "train" / "presets"


def _cfg(**kw) -> TrainConfig:
    values = dict(stage="location", input="d.jsonl", model="tiny", output="/tmp/out")
    return TrainConfig(**{**values, **kw})


def test_config_defaults_follow_the_paper_and_validate():
    cfg = _cfg()
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lr) == (64, 16, 0.05, 1e-5)
    assert cfg.storage_path == "/tmp/out-checkpoints" and cfg.name == "georay-location"
    with pytest.raises(ValueError, match="stage"):
        _cfg(stage="pretrain")
    with pytest.raises(ValueError, match="finetune"):
        _cfg(finetune="qlora")
    with pytest.raises(ValueError, match="batch_size"):
        _cfg(batch_size=0)


def test_cli_flags_and_presets_map_to_the_config():
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, TrainConfig)
    args = parser.parse_args(
        ["--preset", str(PRESETS / "tiny_reasoning.yaml"), "--input", "r.jsonl", "--output", "o",
         "--model", "base", "--lora-targets", "q_proj,v_proj", "--max-steps", "7"]
    )  # fmt: skip
    cfg = from_args(TrainConfig, args)
    # The tiny stages are LoRA on the tiny base (issue 11), as for a real model.
    assert (cfg.stage, cfg.model, cfg.finetune, cfg.lr) == ("reasoning", "base", "lora", 0.01)
    assert cfg.max_steps == 7 and cfg.lora_targets == ["q_proj", "v_proj"]
    location = from_args(
        TrainConfig,
        parser.parse_args(["--preset", str(PRESETS / "tiny_location.yaml"), "--data", "l",
                           "--model", "art", "--output", "o"]),
    )  # fmt: skip
    assert location.stage == "location" and location.model == "art"
    assert location.input.endswith("/l")  # --data: the old spelling of --input


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sft")
    (folder / "images").mkdir()
    rows = []
    for i in range(10):
        pixels = np.full((48, 64, 3), 25 * i, np.uint8)
        (folder / "images" / f"{i}.jpg").write_bytes(encode_jpeg(pixels))
        answer = prompts.location_answer(f"Country {i % 2}", "City")
        rows.append(SftExample(str(i), f"images/{i}.jpg", prompts.LOCATION_QUESTION, answer))
    rows.append(SftExample("bad", "images/missing.jpg", prompts.LOCATION_QUESTION, "x"))
    write_sft(rows, folder / "location.jsonl")
    return folder / "location.jsonl"


def test_batches_resume_exactly_and_shard_across_workers(examples):
    _, processor = tiny_qwen2vl()
    data = EncodedExamples(load_examples(str(examples)), processor, 512)
    assert Path(data.examples[0].image).is_absolute()  # relative to the SFT file

    def take(start, count, rank=0, world=1):
        it = micro_batches(
            data, batch_size=2, rank=rank, world_size=world, seed=3, start=start, pad_token_id=0
        )
        return [next(it) for _ in range(count)]

    straight = take(0, 9)  # 5 batches per epoch: crosses into epoch 2
    resumed = take(6, 3)
    for a, b in zip(straight[6:], resumed, strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"])
    # The missing image is skipped, not fatal, and recorded.
    assert [e for e, _ in data.skipped] == ["bad"]
    # Two workers see disjoint examples within an epoch.
    seen = [
        {tuple(row.tolist()) for b in take(0, 2, rank, 2) for row in b["pixel_values"][:1]}
        for rank in range(2)
    ]
    assert seen[0].isdisjoint(seen[1])


def test_schedule_warms_up_then_decays_to_zero():
    model = torch.nn.Linear(2, 2)
    _, scheduler = make_optimizer(model, _cfg(lr=1.0, warmup_steps=4), steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    assert lrs[0] < lrs[1] < lrs[3] <= 1.0
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False)) and lrs[-1] < 0.05


def test_step_and_checkpoint_round_trip(examples, tmp_path):
    tiny_qwen2vl(save_dir=tmp_path / "base")
    cfg = _cfg(finetune="lora", lora_r=4, lr=3e-3, batch_size=2, grad_accum=2, max_steps=4,
               input=str(examples), max_length=512)  # fmt: skip
    # The one-process trainer, as each Ray Train worker and the benchmarks build it.
    t = assemble(cfg, str(tmp_path / "base"))
    model, processor, optimizer, scheduler = t.model, t.processor, t.optimizer, t.scheduler
    assert t.steps == 4 and t.val is None and len(t.data) == 11
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    metrics = train_step(model, optimizer, scheduler, t.batches(cfg), cfg, torch.device("cpu"))
    assert metrics["loss"] > 0 and metrics["tokens"] > metrics["loss_tokens"] > 0
    (tmp_path / "ck").mkdir()
    worker = Worker(cfg, model, optimizer, scheduler, processor, rank=0, world=1)
    worker.history = [metrics]
    save_checkpoint(tmp_path / "ck", worker, 1, final=True)
    assert (tmp_path / "ck" / "adapter" / "adapter_config.json").exists()
    fresh, _ = setup_model(cfg, str(tmp_path / "base"))
    opt2, sched2 = make_optimizer(fresh, cfg, 4)
    again = Worker(cfg, fresh, opt2, sched2, processor, rank=0, world=1)
    step = restore_checkpoint(tmp_path / "ck", again)
    assert step == 1 and again.history == [metrics]
    assert opt2.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()
    assert sched2.get_last_lr() == scheduler.get_last_lr()
    for (n, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        assert torch.equal(a, b), n


def test_full_fine_tune_checkpoint_is_a_loadable_model(examples, tmp_path):
    """Stage 2 and predict load a full fine-tune's ``model/`` on its own (processor included)."""
    from georay.models.vlm import load_vlm

    tiny_qwen2vl(save_dir=tmp_path / "base")
    cfg = _cfg(finetune="full", lr=3e-3, batch_size=2, max_steps=1)
    model, processor = setup_model(cfg, str(tmp_path / "base"))
    assert not any(p.requires_grad for n, p in model.named_parameters() if "visual" in n)
    optimizer, scheduler = make_optimizer(model, cfg, 1)
    (tmp_path / "ck").mkdir()
    worker = Worker(cfg, model, optimizer, scheduler, processor, rank=0, world=1)
    save_checkpoint(tmp_path / "ck", worker, 1, final=True)
    loaded, loaded_processor = load_vlm(tmp_path / "ck" / "model")
    assert loaded_processor.chat_template == processor.chat_template
    for (n, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters(), strict=True):
        assert torch.equal(a, b), n


def test_examples_past_the_memory_budget_are_encoded_again(examples):
    """A real-size run cannot keep every encoded example: past the budget, encode on use."""
    _, processor = tiny_qwen2vl()
    kept = EncodedExamples(load_examples(str(examples)), processor, 512)
    none = EncodedExamples(load_examples(str(examples)), processor, 512, cache_bytes=0)
    for i in range(len(kept)):
        a, b = kept.get(i), none.get(i)
        assert (a is None) == (b is None)
        if a is not None:
            assert all(torch.equal(a[k], b[k]) for k in a)
    assert kept.cached_bytes > 0 and none.cached_bytes == 0
    assert [e for e, _ in none.skipped] == ["bad"]  # a bad example is tried once, not per epoch
    none.get(len(none) - 1)
    assert [e for e, _ in none.skipped] == ["bad"]
