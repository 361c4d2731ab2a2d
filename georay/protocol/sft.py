"""The supervised fine-tuning (SFT) file: Qwen-VL conversation records, read, written, converted.

One record per line (JSONL), the DESIGN "sft" contract::

    {"id": "...", "image": "PATH",
     "conversations": [{"from": "user", "value": "Picture 1: <img>PATH</img>\\nQUESTION"},
                       {"from": "assistant", "value": "{'country': 'India', 'reasons': '...'}"}]}

This is the format of the GeoReasoner authors' published SFT data (Qwen-VL's fine-tuning
format), which is a JSON *list* of such records, usually without the ``image`` key: there the
image lives only in the ``<img>`` tag of the user turn. :func:`read_sft` accepts both; the
``image`` key we write is a convenience for readers that do not want to parse tags.

Training code does not see this format: an example's question and answer become the
chat-template messages of :func:`georay.protocol.prompts.build_messages` (one image placeholder,
then the question; the answer as the assistant turn).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from georay.protocol.prompts import QWEN_VL_IMAGE_TEMPLATE

# "Picture 1: <img>PATH</img>\nQUESTION" -> PATH, QUESTION. Qwen-VL numbers pictures from 1; a
# record with more than one picture is not a single-image example and is rejected.
_IMG_TAG = re.compile(r"<img>(.*?)</img>", re.DOTALL)
_PICTURE_PREFIX = re.compile(r"^\s*Picture\s+\d+\s*:\s*")


@dataclass(frozen=True)
class SftExample:
    """One single-image, single-turn training example."""

    id: str  # stable (the image id for examples built by georay)
    image: str  # local path or s3:// URI, as the trainer will open it
    question: str  # without the image tag
    answer: str  # e.g. "{'country': 'India', 'reasons': '...'}"

    def to_record(self) -> dict:
        """The Qwen-VL conversation record (the JSONL line, as a dict)."""
        user = QWEN_VL_IMAGE_TEMPLATE.format(image=self.image, question=self.question)
        return {
            "id": self.id,
            "image": self.image,
            "conversations": [
                {"from": "user", "value": user},
                {"from": "assistant", "value": self.answer},
            ],
        }

    @classmethod
    def from_record(cls, record: dict, default_id: str = "") -> SftExample:
        """Parse a Qwen-VL conversation record; raise ValueError saying what is wrong with it."""
        if not isinstance(record, dict):
            raise ValueError(f"record is {type(record).__name__}, not an object")
        turns = record.get("conversations")
        if not isinstance(turns, list) or len(turns) < 2:
            raise ValueError("record has no user/assistant 'conversations' pair")
        if len(turns) > 2:
            # Later user turns carry no image; splitting them would invent examples.
            raise ValueError(f"multi-turn record ({len(turns)} turns) is not supported")
        user, assistant = turns
        roles = (str(user.get("from", "")).lower(), str(assistant.get("from", "")).lower())
        if roles[0] not in ("user", "human") or roles[1] not in ("assistant", "gpt"):
            raise ValueError(f"expected user then assistant turns, got {roles}")
        image, question = split_user_value(str(user.get("value", "")))
        image = str(record.get("image") or image or "")
        if not image:
            raise ValueError("record names no image (no 'image' key and no <img> tag)")
        answer = str(assistant.get("value", "")).strip()
        if not question or not answer:
            raise ValueError("record has an empty question or answer")
        return cls(str(record.get("id") or default_id), image, question, answer)


def split_user_value(value: str) -> tuple[str | None, str]:
    """Split a Qwen-VL user turn into (image path or None, question text)."""
    tags = _IMG_TAG.findall(value)
    if len(tags) > 1:
        raise ValueError(f"user turn has {len(tags)} images; only single-image records work")
    question = _IMG_TAG.sub("", value)
    question = _PICTURE_PREFIX.sub("", question).strip()
    return (tags[0].strip() if tags else None), question


def parse_sft_text(text: str) -> list[dict]:
    """Records from SFT file contents: a JSON list (the authors' file) or JSON lines."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        records = json.loads(stripped)
        if not isinstance(records, list):
            raise ValueError("SFT JSON file must hold a list of records")
        return records
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_sft(path: str | Path) -> list[SftExample]:
    """Read an SFT file (JSONL or the authors' JSON list), local or ``s3://``.

    Raises
    ------
    ValueError
        On the first malformed record, naming its position (ingestion that must survive bad
        records uses :func:`parse_sft_text` and :meth:`SftExample.from_record` per record).
    """
    from georay.data.storage import read_bytes

    examples = []
    for i, record in enumerate(parse_sft_text(read_bytes(str(path)).decode("utf-8"))):
        try:
            examples.append(SftExample.from_record(record, default_id=f"identity_{i}"))
        except ValueError as err:
            raise ValueError(f"{path}: record {i}: {err}") from err
    return examples


def write_sft(examples: Iterable[SftExample], path: str | Path) -> int:
    """Write examples as JSONL (local or ``s3://``); return how many were written."""
    from georay.data.storage import write_bytes

    lines = [json.dumps(ex.to_record(), ensure_ascii=False) for ex in examples]
    write_bytes(str(path), ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    return len(lines)
