"""Clue ingestion: formats, country normalization, place mentions, drops with reasons, counts."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from georay.geo.gazetteer import get_gazetteer
from georay.knowledge import KnowledgeConfig, build
from georay.knowledge.clues import Clue, find_places, locate_clue, read_clues
from georay.protocol.prompts import LOCATION_QUESTION, REASONING_QUESTION
from georay.protocol.sft import read_sft

CLUES = [
    # label given as a name, an alpha-2 code, an alpha-3 code, an alias, with diacritics
    {"image": "images/a.jpg", "text": "Terracotta tiled roofs.", "country": "Chile"},
    {"image": "images/b.jpg", "text": "Yellow licence plates.", "country": "nl"},
    {"image": "images/c.jpg", "text": "Bollards with red reflectors.", "country": "AUT"},
    {"image": "images/d.jpg", "text": "Green motorway signs.", "country": "U.S.A."},
    {"image": "images/e.jpg", "text": "Orange-striped kerbs.", "country": "Côte d'Ivoire"},
    # no label: the text names the place
    {"image": "images/f.jpg", "text": "Houses in central Chile have tiled roofs."},
    {"image": "images/g.jpg", "text": "The tram wires look like those around Tokyo."},
    # drops
    {"image": "images/h.jpg", "text": "A road with a car and a turkey on it."},
    {"image": "images/i.jpg", "text": "Unlike Argentina, Chile paints its kerbs."},
    {"image": "images/j.jpg", "text": "Snow on the hills.", "country": "Atlantis"},
    {"image": "images/k.jpg", "text": ""},
    {"text": "no image here", "country": "FR"},
    {"image": "images/a.jpg", "text": "Terracotta  tiled roofs.", "country": "CL"},  # duplicate
]
EXPECTED_DROPS = {
    "no_place_mention": 1,
    "ambiguous_place": 1,
    "unknown_country_label": 1,
    "unreadable_record": 2,
    "duplicate": 1,
}


@pytest.fixture(scope="module")
def gaz():
    return get_gazetteer()


def _write(tmp_path, fmt: str) -> str:
    if fmt == "jsonl":
        path = tmp_path / "clues.jsonl"
        path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CLUES))
        return str(path)
    keys = ("image", "text", "country")
    table = pa.table({k: [c.get(k) for c in CLUES] for k in keys})
    path = tmp_path / f"clues.{fmt}"
    (pq.write_table if fmt == "parquet" else pacsv.write_csv)(table, path)
    return str(path)


@pytest.mark.parametrize(
    "text, code",
    [("Chile", "CL"), ("cl", "CL"), ("CHL", "CL"), ("U.S.A.", "US"), ("Holland", "NL"),
     ("Cote d'Ivoire", "CI"), ("Côte d’Ivoire", "CI"), ("the Netherlands", "NL")],
)  # fmt: skip
def test_country_label_normalized(gaz, text, code):
    assert locate_clue(Clue("1", "x.jpg", "Some clue.", country=text), gaz).country_code == code


def test_place_mentions(gaz):
    codes = lambda t: sorted({m.country_code for m in find_places(t, gaz)})  # noqa: E731
    assert codes("Houses in central Chile have tiled roofs.") == ["CL"]
    assert codes("We can see a car in the road and a turkey.") == []  # codes/words in lower case
    assert codes("Signs in the U.S.A. are green.") == ["US"]
    assert codes("It looks like the area near Tokyo.") == ["JP"]  # through a city
    assert codes("Nice weather today.") == []  # a capital at a sentence start is not a name
    assert codes("Driving on the left, yellow rear plates: UK.") == ["GB"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_build_counts_and_drops(tmp_path, fmt):
    out = tmp_path / "out"
    summary = build(KnowledgeConfig(output=str(out), clues=_write(tmp_path, fmt)))
    s = summary["reasoning"]
    assert s["rows_in"] == len(CLUES) == s["kept"] + s["dropped"]
    assert s["dropped_by_reason"] == EXPECTED_DROPS
    dropped = [json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()]
    assert len(dropped) == s["dropped"] and all(d["reason"] for d in dropped)
    examples = read_sft(out / "reasoning.jsonl")
    assert len(examples) == s["kept"] == 7
    answers = {e.id: ast.literal_eval(e.answer) for e in examples}
    assert {k: v["country"] for k, v in answers.items()} == {
        "a": "Chile", "b": "Netherlands", "c": "Austria", "d": "United States",
        "e": "Cote d'Ivoire", "f": "Chile", "g": "Japan",
    }  # fmt: skip
    assert answers["a"]["reasons"] == "Terracotta tiled roofs."
    assert all(e.question == REASONING_QUESTION for e in examples)
    # relative image paths are resolved against the clue file's folder
    assert examples[0].image == str(tmp_path / "images" / "a.jpg")
    assert json.loads((out / "summary.json").read_text())["reasoning"] == s


def _turns(image: str, answer: str) -> list[dict]:
    user = f"Picture 1: <img>{image}</img>\n{REASONING_QUESTION}"
    return [{"from": "user", "value": user}, {"from": "assistant", "value": answer}]


def test_authors_sft_file_as_clues(tmp_path):
    authors = [  # the authors' file: a JSON list, the image only in the <img> tag
        {"id": "identity_0", "conversations": _turns("images/chile_001.jpg",
         "{'country': 'Chile', 'reasons': 'Terracotta roofs of central Chile.'}")},
        {"id": "identity_1", "conversations": _turns("/data/in.jpg",
         "{'country': 'India', 'reasons': 'Tuk-tuks.'}")},
        {"id": "broken"},
    ]  # fmt: skip
    path = tmp_path / "georeasoner_sft.json"
    path.write_text(json.dumps(authors))
    clues, dropped = read_clues(str(path))
    assert [(c.country, c.text) for c in clues] == [
        ("Chile", "Terracotta roofs of central Chile."),
        ("India", "Tuk-tuks."),
    ]
    assert clues[1].image == "/data/in.jpg"
    assert [(d.id, d.reason) for d in dropped] == [("broken", "unreadable_record")]


def _manifest(tmp_path) -> str:
    table = pa.table(
        {
            "image_id": ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"],
            "uri": [f"images/m{i}.jpg" for i in range(1, 9)],
            "lat": [47.37, 35.68, None, -33.45, 48.85, 52.52, None, 40.0],
            "lon": [8.54, 139.69, None, -70.66, 2.35, 13.40, None, -3.7],
            "country": ["CH", None, "FR", "CL", "FR", "DE", None, "XX"],
            "city": ["Zürich", None, None, "Santiago", "Paris", "Berlin", None, "Madrid"],
            "split": ["train", "train", "train", "train", "train", "test", "train", "train"],
            "status": ["ok", "ok", "ok", "ok", "error", "ok", "ok", "ok"],
            "locatability": [0.9, 0.8, 0.7, 0.3, 0.9, 0.9, 0.9, 0.9],
        }
    )
    path = tmp_path / "scores.parquet"
    pq.write_table(table, path)
    return str(path)


def test_location_from_manifest(tmp_path):
    out = tmp_path / "out"
    summary = build(KnowledgeConfig(output=str(out), manifest=_manifest(tmp_path)))
    s = summary["location"]
    assert s["rows_in"] == 8 == s["kept"] + s["dropped"]
    assert s["dropped_by_reason"] == {
        "no_city": 1, "low_locatability": 1, "curate_error": 1, "held_out_split": 1,
        "no_country": 1, "unknown_country": 1,
    }  # fmt: skip
    examples = {e.id: e for e in read_sft(out / "location.jsonl")}
    assert sorted(examples) == ["m1", "m2"]
    assert ast.literal_eval(examples["m1"].answer) == {"country": "Switzerland", "city": "Zürich"}
    # country and city filled from the coordinates (the city the point is in, not a district)
    assert ast.literal_eval(examples["m2"].answer) == {"country": "Japan", "city": "Tokyo"}
    assert examples["m1"].question == LOCATION_QUESTION
    assert examples["m1"].image == str(tmp_path / "images" / "m1.jpg")


def _clues_on_m6_and_m1(tmp_path) -> Path:
    """Clues on a held-out (m6, split test) and a training view (m1) of ``_manifest``."""
    clues = tmp_path / "clues.jsonl"
    rows = [{"image": "images/m6.jpg", "text": "German signs.", "country": "DE"},
            {"image": "images/m1.jpg", "text": "Swiss signs.", "country": "CH"}]  # fmt: skip
    clues.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return clues


def test_clues_on_held_out_images_dropped(tmp_path):
    clues = _clues_on_m6_and_m1(tmp_path)
    out = tmp_path / "out"
    summary = build(
        KnowledgeConfig(output=str(out), clues=str(clues), manifest=_manifest(tmp_path))
    )
    assert summary["reasoning"]["dropped_by_reason"] == {"held_out_split": 1}
    assert [e.id for e in read_sft(out / "reasoning.jsonl")] == ["m1"]


def test_config_validation():
    with pytest.raises(ValueError, match="nothing to build"):
        KnowledgeConfig(output="x")
    with pytest.raises(ValueError, match="min_locatability"):
        KnowledgeConfig(output="x", clues="c.jsonl", min_locatability=2.0)


def test_cli(tmp_path):
    from support import georay_ok

    out = tmp_path / "cli"
    georay_ok("knowledge", "--clues", _write(tmp_path, "jsonl"), "--output", str(out),
              "--min-city-population", "50000")  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reasoning"]["kept"] == 7
    assert summary["config"]["min_city_population"] == 50000
    assert not (out / "location.jsonl").exists()
