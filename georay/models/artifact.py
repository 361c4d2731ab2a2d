"""Training artifacts: a base model source plus the ordered adapters trained on top of it.

An artifact is a folder (local or ``s3://``) with an ``artifact.json``::

    {
      "format": "georay-vlm-artifact", "version": 1,
      "base_model": "Qwen/Qwen2-VL-2B-Instruct",     # or a folder, s3:// prefix, or "./model"
      "processor": "./processor",                     # saved processor (chat template included)
      "stacking": "merge",
      "adapters": [{"name": "reasoning", "path": "./adapters/reasoning"},
                   {"name": "location",  "path": "./adapters/location"}],
      "stages": [{"stage": "reasoning", "questions": [...], ...},
                 {"stage": "location", "questions": ["Which country and city is ..."], ...}]
    }

Paths starting with ``./`` are relative to the artifact folder. ``base_model`` is loaded with
:func:`georay.models.vlm.load_vlm` (so it may itself be a hub id, an S3 prefix or another
artifact). **Stacking is "merge"**: each adapter is applied to the model with every earlier
adapter already merged into its weights, then merged itself. Training does the same: stage 2
(location) loads base + merged stage-1 (reasoning) adapter, and trains a new LoRA on that. It is
the paper's "second LoRA on top of the first" with the first frozen; merging it makes the frozen
adapter free at training and inference time. A full fine-tune writes its weights to ``./model``
and lists no adapters.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

ARTIFACT_FILE = "artifact.json"
FORMAT = "georay-vlm-artifact"
VERSION = 1


def is_artifact(local_dir: str | Path) -> bool:
    """True if ``local_dir`` is a folder holding an ``artifact.json``."""
    return (Path(local_dir) / ARTIFACT_FILE).is_file()


def read_artifact(local_dir: str | Path) -> dict:
    """The parsed ``artifact.json`` of a local artifact folder, validated.

    Raises
    ------
    ValueError
        Wrong format/version, or no base model.
    """
    spec = json.loads((Path(local_dir) / ARTIFACT_FILE).read_text())
    if spec.get("format") != FORMAT or spec.get("version") != VERSION:
        raise ValueError(
            f"{local_dir}: not a {FORMAT} v{VERSION} artifact "
            f"(format={spec.get('format')!r}, version={spec.get('version')!r})"
        )
    if not spec.get("base_model"):
        raise ValueError(f"{local_dir}: artifact.json names no base_model")
    if spec.get("stacking", "merge") != "merge":
        raise ValueError(f"{local_dir}: unknown stacking {spec.get('stacking')!r}")
    return spec


def resolve(artifact_uri: str, path: str) -> str:
    """An artifact path made usable from outside: ``./x`` joined onto the artifact's URI."""
    if path.startswith("./"):
        from georay.data.storage import is_s3, join_uri

        return (
            join_uri(artifact_uri, path[2:])
            if is_s3(artifact_uri)
            else str(Path(artifact_uri).resolve() / path[2:])
        )
    return path


def load_artifact(
    local_dir: str | Path, load_base: Callable[..., tuple[Any, Any]], dtype: Any
) -> tuple[Any, Any]:
    """Load base model + adapters (merged in order) + the artifact's processor.

    ``load_base`` is :func:`georay.models.vlm.load_vlm` (passed in to avoid a circular import).
    """
    from peft import PeftModel
    from transformers import AutoProcessor

    spec = read_artifact(local_dir)
    model, processor = load_base(resolve(str(local_dir), spec["base_model"]), dtype=dtype)
    for adapter in spec.get("adapters", []):
        path = resolve(str(local_dir), adapter["path"])
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
    if spec.get("processor"):
        processor = AutoProcessor.from_pretrained(resolve(str(local_dir), spec["processor"]))
    return model, processor


def trained_questions(local_dir: str | Path) -> list[str]:
    """The questions the last stage of an artifact was trained on (empty if not recorded).

    Small models answer the question they were trained on and little else; prediction can
    ask this one instead of a default.
    """
    stages = read_artifact(local_dir).get("stages") or [{}]
    return list(stages[-1].get("questions", []))


def start_point(local_dir: str | Path) -> tuple[str, bool, list[tuple[str, str]], list]:
    """What a new stage builds on: (base model source, base inside the artifact?,
    [(name, local adapter dir)], stages).

    ``local_dir`` is a local artifact folder. A base that lives inside it (``./base`` of a tiny
    run, ``./model`` of a full fine-tune) comes back as its absolute local folder with the flag
    set, so the new artifact can copy it and stand alone; the adapters likewise.
    """
    spec = read_artifact(local_dir)
    base, local = spec["base_model"], str(local_dir)
    adapters = [(a["name"], resolve(local, a["path"])) for a in spec.get("adapters", [])]
    return resolve(local, base), base.startswith("./"), adapters, list(spec.get("stages", []))


def write_artifact(
    out_dir: str | Path,
    *,
    base_model: str,
    processor: Any,
    adapters: list[tuple[str, str | Path]] = (),
    stages: list[dict] = (),
) -> Path:
    """Write an artifact folder locally (upload it afterwards for S3): the processor saved to
    ``./processor``, the ``(name, peft adapter folder)`` pairs of ``adapters`` copied to
    ``./adapters/<name>`` in stacking order, ``stages`` (free-form per-stage records) kept.
    ``base_model`` is ``./model`` if the caller saved full weights there."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(str(out / "processor"))
    entries = []
    for name, src in adapters:
        dst = out / "adapters" / name
        if Path(src).resolve() != dst.resolve():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        entries.append({"name": name, "path": f"./adapters/{name}"})
    spec = {
        "format": FORMAT,
        "version": VERSION,
        "base_model": str(base_model),
        "processor": "./processor",
        "stacking": "merge",
        "adapters": entries,
        "stages": list(stages),
    }
    (out / ARTIFACT_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return out
