"""Helpers shared by tests (importable as ``support``: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import contextlib
import functools
import io
import sys
import time
from pathlib import Path

import numpy as np

from georay.protocol.prompts import INFERENCE_QUESTION, format_answer

# Successful command-line runs are written as calls to these two (or as `ray job submit`s of
# jobs/<stage>.py), with the command words as literals: tests/unit/test_cli_coverage.py reads
# them from the test sources and fails when a command of the real parser has none.


@functools.cache
def _parser():
    from georay.cli import build_parser

    return build_parser()


def _choices(parser) -> dict:
    for action in parser._actions:
        if isinstance(getattr(action, "choices", None), dict):
            return action.choices
    return {}


def commands(groups: bool = False) -> set[str]:
    """Every runnable command path of the real parser (``"curate fit"``, ``"predict"``);
    with ``groups``, also the group words themselves (``"curate"``)."""
    found = set()
    for name, sub in _choices(_parser()).items():
        inner = _choices(sub)
        found |= {f"{name} {s}" for s in inner} if inner else {name}
        if inner and groups:
            found.add(name)
    return found


def command_of(words: list[str]) -> str | None:
    """The command path ``words`` (an argv) invokes, read off the real parser."""
    top = _choices(_parser())
    if not words or words[0] not in top:
        return None
    inner = _choices(top[words[0]])
    if not inner:
        return words[0]
    if len(words) > 1 and words[1] in inner:
        return f"{words[0]} {words[1]}"
    return words[0]


def georay_ok(*argv: str) -> str:
    """Run ``georay ARGV`` in this process (the real parser and ``main``) and return what it
    printed; fails the test unless it exits with status 0. Stages join the session's Ray."""
    from georay.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(argv))
    assert status == 0, f"georay {' '.join(argv)} exited with status {status}"
    return out.getvalue()


def georay_argv(*argv: str) -> list[str]:
    """The command line of ``georay ARGV`` for a subprocess (the venv's script when there is
    one); the test that runs it checks its exit status."""
    exe = Path(sys.executable).parent / "georay"
    return [*([str(exe)] if exe.exists() else [sys.executable, "-m", "georay.cli"]), *argv]


def france_model(
    save_dir: Path, answer: dict, max_steps: int = 200, min_steps: int = 0
) -> tuple[int, float]:
    """Fine-tune the tiny Qwen2-VL to answer ``answer`` (format_answer fields) to any image.

    Plain torch steps (full fine-tuning, AdamW 3e-3, four fresh noise images a step) until
    greedy answers to unseen images are exactly right: 50 steps (then its token probabilities
    are still ~0.9 each; ``min_steps`` trains on, for a model sure of its answer). The images are 56 or 84
    pixels a side, so the model sees 4 to 9 image tokens as it will for real photos (trained on
    one size only, it answered other sizes with garbled text). Returns (steps, seconds).
    """
    import torch

    started = time.monotonic()
    # One thread: for a model this small a second one only adds synchronisation; on our shared
    # 2-core machine a step took 0.6 s of CPU with two threads and 0.03 s with one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        steps = _fit_fixed_answer(save_dir, answer, max(max_steps, min_steps), min_steps)
    finally:
        torch.set_num_threads(threads)
    return steps, time.monotonic() - started


def _fit_fixed_answer(save_dir: Path, answer: dict, max_steps: int, min_steps: int = 0) -> int:
    import torch

    from georay.models.vlm import collate, encode_example, generate_answers, tiny_qwen2vl

    model, processor = tiny_qwen2vl()
    target = format_answer(**answer)
    rng = np.random.default_rng(0)
    noise = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    side = lambda: int(rng.choice([56, 84]))  # noqa: E731
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(1, max_steps + 1):
        model.train()
        examples = [
            encode_example(processor, noise(side(), side()), INFERENCE_QUESTION, target)
            for _ in range(4)
        ]
        model(**collate(examples, processor.tokenizer.pad_token_id)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 10 == 0 and step >= min_steps:
            model.eval()
            probes = [noise(360, 480), noise(300, 200)]
            if generate_answers(model, processor, probes, INFERENCE_QUESTION, 64) == [target] * 2:
                break
    else:
        raise AssertionError(f"the tiny model did not learn {target!r} in {max_steps} steps")
    model.save_pretrained(str(save_dir))
    processor.save_pretrained(str(save_dir))
    return step


def two_stage_artifact_at(root: Path, question: str, targets: list[str] | None = None) -> Path:
    """A tiny base + two stacked LoRA adapters with random B (so each changes the output), on
    the paper's projections or on ``targets``."""
    import torch

    from georay.models import artifact
    from georay.models.lora import LoraSettings, apply_lora
    from georay.models.vlm import tiny_qwen2vl

    model, processor = tiny_qwen2vl(save_dir=root / "base", seed=0)
    adapters = []
    for i, name in enumerate(["reasoning", "location"]):
        lora = LoraSettings(r=4, alpha=8, **({"target_modules": targets} if targets else {}))
        peft_model = apply_lora(model, lora)
        with torch.no_grad():
            for pname, p in peft_model.named_parameters():
                if "lora_B" in pname:
                    p.normal_(std=0.5, generator=torch.Generator().manual_seed(i))
        peft_model.save_pretrained(str(root / name))
        adapters.append((name, root / name))
        model = peft_model.merge_and_unload()
    stages = [
        {"stage": "reasoning", "questions": ["Which country? Explain."]},
        {"stage": "location", "questions": [question]},
    ]
    return artifact.write_artifact(
        root / "artifact",
        base_model=str(root / "base"),
        processor=processor,
        adapters=adapters,
        stages=stages,
    )


# Benchmark tables as published (headers from the published column lists; see
# tests/unit/test_data_layouts.py): OSV-5M's test.csv and Im2GPS3k's CSV (MP-16's has the same).
OSV5M_COLUMNS = (
    "id,latitude,longitude,thumb_original_url,country,sequence,captured_at,lon_bin,lat_bin,cell,"
    "land_cover,road_index,drive_side,climate,soil,dist_sea,region,sub-region,city,unique_region,"
    "unique_sub-region,unique_city,unique_country,creator_username,creator_id"
)
IM2GPS3K_COLUMNS = (
    "IMG_ID,AUTHOR,LAT,LON,S3_Label,S16_Label,S365_Label,Prob_indoor,Prob_natural,Prob_urban,"
    "Prob_Other"
)


def osv5m_row(image_id: str, lat: float, lon: float, country: str, city: str) -> str:
    """One OSV-5M test.csv row (placeholder values in the columns georay does not read)."""
    values = dict.fromkeys(OSV5M_COLUMNS.split(","), "0")
    values.update(id=image_id, latitude=str(lat), longitude=str(lon), country=country,
                  city=city, region="r", thumb_original_url="https://example.invalid/t.jpg")  # fmt: skip
    values["sub-region"] = "s"
    return ",".join(values[c] for c in OSV5M_COLUMNS.split(","))


def im2gps3k_row(img_id: str, lat: float, lon: float) -> str:
    return f"{img_id},12345678@N00,{lat},{lon},1,5,123,0.1,0.2,0.7,0.0"


# A phone and camera archive as it is copied off devices: nested by month, names with spaces and
# umlauts, upper-case extensions, and the clutter every copy carries. name -> (format, GPS,
# EXIF orientation); None: not an image.
ARCHIVE = {
    "2023/07/IMG_0001.HEIC": ("HEIF", (52.516, 13.3777), 6),
    "2023/07/IMG_0002.heic": ("HEIF", None, 1),
    "2023/08/Blick über den Fluss.avif": ("AVIF", (47.3769, 8.5417), 1),
    "2023/08/card.WEBP": ("WEBP", None, 6),
    "2023/09/DSC_0003.DNG": ("DNG", (-33.9249, 18.4241), 6),
    "2023/09/phone raw.dng": ("DNG-sensor", None, 1),  # no preview: LibRaw renders it
    "2023/09/SDIM0004.X3F": ("X3F", None, 1),  # Sigma: LibRaw cannot read it
    "2023/07/._IMG_0001.HEIC": None,
    "2023/.DS_Store": None,
    "2023/Thumbs.db": None,
    "notes.txt": None,
}
ARCHIVE_SIZE = (128, 96)  # (width, height) as stored


def phone_archive(root: Path) -> Path:
    """Write :data:`ARCHIVE` under ``root`` (synthetic street views); returns ``root``."""
    from georay.synth.draw import STYLES, draw_street
    from georay.synth.formats import encode_photo

    for i, (name, spec) in enumerate(ARCHIVE.items()):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if spec is None:  # AppleDouble files start with their magic number; the rest is noise
            path.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00" + bytes(64) if "._" in name
                             else b"not a photo\n")  # fmt: skip
            continue
        fmt, gps, orientation = spec
        if fmt == "X3F":
            path.write_bytes(b"FOVb\x00\x00\x02\x00" + bytes(4096))
            continue
        pixels, _ = draw_street(STYLES[i % len(STYLES)], i, *ARCHIVE_SIZE, np.random.default_rng(i))
        data = encode_photo(pixels, fmt.split("-")[0], gps=gps, orientation=orientation,
                            preview=fmt != "DNG-sensor")  # fmt: skip
        path.write_bytes(data)
    return root
