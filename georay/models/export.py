"""Export a training artifact as plain Hugging Face checkpoints that any engine loads as is.

A georay artifact is a base model plus LoRA adapters merged in order (:mod:`~georay.models.artifact`);
only georay knows how to put it together. :func:`export_merged` does it once and writes the
result with ``save_pretrained``, so transformers (``AutoModelForImageTextToText``), vLLM
(``LLM(model=DIR)``) and ``ray.serve.llm`` load it with no georay code::

    OUTPUT/                 base + every adapter merged: config.json, model.safetensors,
                            processor and tokenizer files (chat template included), georay.json
    OUTPUT/base/            (lora_stage2) base + every adapter but the last, merged
    OUTPUT/adapter/         (lora_stage2) the last adapter as it was trained (a peft LoRA folder)

``base/`` + ``adapter/`` let vLLM serve the last stage as a LoRA over a merged base
(``LoRARequest``), so several location adapters can share one base model (DESIGN "Engines for
generation"). ``georay.json`` records the questions the artifact was trained on: a model
answers those best, and a server that loads the export can ask them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from georay.errors import UserError

EXPORT_FILE = "georay.json"
FORMAT = "georay-vlm-export"
VERSION = 1


def export_merged(model: str, output: str, *, lora_stage2: bool = False) -> dict:
    """Write the training artifact ``model`` (local or ``s3://``) into the local folder
    ``output`` as laid out in the module notes (``base/`` and ``adapter/`` with ``lora_stage2``).

    Returns ``merged`` (the output folder), ``base`` and ``adapter`` (folders, or None),
    ``adapters`` (names merged, in order) and ``questions`` (the last stage's).

    Raises
    ------
    georay.errors.UserError
        ``model`` is not an artifact, ``output`` is ``s3://``, or ``lora_stage2`` is asked of an
        artifact with no adapters (a full fine-tune).
    FileExistsError
        ``output`` is not empty: a stale ``base/`` or weights file must not end up beside new
        ones.
    """
    from georay.data.storage import is_s3
    from georay.models import artifact
    from georay.models.vlm import load_vlm, localize

    if is_s3(output):
        raise UserError(f"export writes a local folder, not {output}; upload it afterwards")
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    local = localize(model)
    if not artifact.is_artifact(local):
        raise UserError(f"{model} is not a georay artifact (no {artifact.ARTIFACT_FILE})")
    spec = artifact.read_artifact(local)
    adapters = [(a["name"], artifact.resolve(local, a["path"])) for a in spec["adapters"]]
    if lora_stage2 and not adapters:
        raise UserError(f"{model} has no adapters (a full fine-tune): nothing to serve as LoRA")

    # Merge in the artifact's order, exactly as load_vlm does; stop before the last adapter to
    # save the stage-1 base on the way, so the base model is loaded once.
    merged, processor = load_vlm(artifact.resolve(local, spec["base_model"]))
    if spec.get("processor"):
        processor = _processor(artifact.resolve(local, spec["processor"]))
    questions = artifact.trained_questions(local)
    record = _record(model, spec, questions)
    result: dict[str, Any] = {"base": None, "adapter": None}
    for i, (name, path) in enumerate(adapters):
        if lora_stage2 and i == len(adapters) - 1:
            merged_names = [n for n, _ in adapters[:i]]
            result["base"] = _save(
                merged, processor, out / "base", {**record, "merged": merged_names}
            )
            result["adapter"] = _copy_adapter(path, out / "adapter", name)
        merged = _merge(merged, path)
    names = [n for n, _ in adapters]
    result["merged"] = _save(merged, processor, out, {**record, "merged": names})
    return {**result, "adapters": names, "questions": questions}


def _processor(path: str) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path)


def _merge(model: Any, adapter_dir: str) -> Any:
    """``model`` with one peft adapter applied and merged into its weights."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()


def _record(source: str, spec: dict, questions: list[str]) -> dict:
    """What ``georay.json`` says: where the export came from and what it was trained to answer."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "source": str(source),
        "questions": questions,
        "stages": [
            {"stage": s.get("stage"), "questions": list(s.get("questions", []))}
            for s in spec.get("stages", [])
        ],
    }


def _save(model: Any, processor: Any, folder: Path, record: dict) -> str:
    """``save_pretrained`` model, generation config and processor, plus ``georay.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    (folder / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return str(folder)


def _copy_adapter(src: str, dst: Path, name: str) -> str:
    """Copy a peft adapter folder (config + weights) for vLLM's ``LoRARequest``."""
    shutil.copytree(src, dst)
    (dst / EXPORT_FILE).write_text(json.dumps({"format": FORMAT, "adapter": name}) + "\n")
    return str(dst)


def read_export(folder: str | Path) -> dict:
    """The ``georay.json`` of an exported folder (merged checkpoint, ``base/`` or ``adapter/``)."""
    return json.loads((Path(folder) / EXPORT_FILE).read_text())
