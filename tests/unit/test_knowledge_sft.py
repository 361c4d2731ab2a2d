"""The SFT file: Qwen-VL conversation records, the authors' JSON list, chat messages."""

from __future__ import annotations

import json

import pytest

from georay.protocol.prompts import REASONING_QUESTION, build_messages
from georay.protocol.sft import (
    SftExample,
    read_sft,
    split_user_value,
    write_sft,
)

# The shape of a record in the GeoReasoner authors' SFT file (Qwen-VL finetune format): a JSON
# list, no "image" key, the image only inside the <img> tag of the user turn.
AUTHORS = [
    {
        "id": "identity_0",
        "conversations": [
            {
                "from": "user",
                "value": "Picture 1: <img>images/chile_001.jpg</img>\n" + REASONING_QUESTION,
            },
            {
                "from": "assistant",
                "value": "{'country': 'Chile', 'reasons': 'Terracotta roofs of central Chile.'}",
            },
        ],
    },
    {
        "id": "identity_1",
        "conversations": [
            {"from": "user", "value": "Picture 1: <img>/data/in.jpg</img>\nWhere is this?"},
            {"from": "assistant", "value": "{'country': 'India', 'reasons': 'Tuk-tuks.'}"},
        ],
    },
]


def test_round_trip(tmp_path):
    examples = [
        SftExample("a", "/x/a.jpg", REASONING_QUESTION, "{'country': 'Chile', 'reasons': 'r'}"),
        SftExample("b", "s3://bucket/b.jpg", "Q?", "{'country': 'Côte d\\'Ivoire', 'city': 'x'}"),
    ]
    path = tmp_path / "out" / "sft.jsonl"
    assert write_sft(examples, path) == 2
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    assert record["image"] == "/x/a.jpg"
    assert record["conversations"][0] == {
        "from": "user",
        "value": f"Picture 1: <img>/x/a.jpg</img>\n{REASONING_QUESTION}",
    }
    assert record["conversations"][1]["from"] == "assistant"
    assert read_sft(path) == examples


def test_authors_json_list_accepted(tmp_path):
    path = tmp_path / "georeasoner_sft.json"
    path.write_text(json.dumps(AUTHORS, indent=2))
    examples = read_sft(path)
    assert [e.id for e in examples] == ["identity_0", "identity_1"]
    assert examples[0].image == "images/chile_001.jpg"
    assert examples[0].question == REASONING_QUESTION
    assert examples[1].question == "Where is this?"
    assert examples[1].answer.startswith("{'country': 'India'")


def test_chat_messages():
    ex = SftExample("a", "/x/a.jpg", "Q?", "A")
    assert build_messages(ex.question, ex.answer) == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A"}]},
    ]


@pytest.mark.parametrize(
    "record, message",
    [
        ({"id": "x"}, "conversations"),
        (
            {
                "conversations": [
                    {"from": "user", "value": "no image"},
                    {"from": "assistant", "value": "A"},
                ]
            },
            "no image",
        ),  # fmt: skip
        (
            {
                "conversations": [
                    {"from": "assistant", "value": "A"},
                    {"from": "user", "value": "<img>a</img>Q"},
                ]
            },
            "user then assistant",
        ),  # fmt: skip
        ({"conversations": [{"from": "user", "value": "<img>a</img>Q"}] * 3}, "multi-turn"),
    ],
)
def test_bad_records_named(tmp_path, record, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=message):
        read_sft(path)


def test_split_user_value_rejects_two_images():
    assert split_user_value("Picture 1: <img>a.jpg</img>\nQ") == ("a.jpg", "Q")
    assert split_user_value("just text") == (None, "just text")
    with pytest.raises(ValueError, match="2 images"):
        split_user_value("<img>a</img><img>b</img>Q")
