"""Human reasoning clues -> a concrete country (and city) per clue, or a recorded reason to drop it.

A clue is an image plus the free text a geolocation-game player wrote about it ("houses in
central Chile often have terracotta tiled roofs"), optionally with a country label. The paper
kept only clues that point to a concrete location (it used NER); georay keeps a clue when

1. it carries a country label the gazetteer knows (name, alias, alpha-2 or alpha-3 code), or
2. its text mentions exactly one country, directly or through a city name.

**Why no NER model.** Offline NER needs model weights, and none ships through a package registry
(spaCy's pipelines and the hub's NER models are downloads); more to the point, a NER "GPE" span
still has to be looked up in a gazetteer to become a country, so the gazetteer match *is* the
decision. The matcher below uses capitalization to tell names from words: a one-word country
mention must be capitalized ("turkey" the bird is not Türkiye), codes of up to three letters only
count in capitals ("in", "can", "and" are not India, Canada, Andorra), and a city counts only when
it is capitalized mid-sentence (so "Nice weather" at a sentence start is not the French city) or
is several words long, and has at least ``min_city_population`` inhabitants.

Every input row ends up as exactly one kept clue or one :class:`Dropped` row with a reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from georay.data.storage import parent_of, read_bytes, resolve_relative
from georay.data.tables import read_table, table_format
from georay.geo.gazetteer import Gazetteer
from georay.protocol.answers import parse_answer
from georay.protocol.sft import SftExample, parse_sft_text

# Column spellings accepted for each clue field (first present wins).
_FIELDS = {
    "image": ("image", "image_path", "uri", "path", "file", "image_id"),
    "text": ("text", "clue", "clues", "reasons", "reason", "reasoning", "description"),
    "country": ("country", "country_code", "label", "country_name"),
    "city": ("city", "city_name"),
}
# A word: letters/digits with inner periods, apostrophes and hyphens ("U.S.A", "d'Ivoire").
_WORD = re.compile(r"[^\W_](?:[\w.'’-]*[^\W_])?")
_SENTENCE_END = re.compile(r"[.!?:;]\s*$")
_MAX_NGRAM = 4  # "Bosnia and Herzegovina", "United States of America" (with "the": 5)


@dataclass(frozen=True)
class Clue:
    """One human clue as read: ``country``/``city`` are raw labels (None when absent)."""

    id: str
    image: str
    text: str
    country: str | None = None
    city: str | None = None


@dataclass(frozen=True)
class Dropped:
    """An input row that produced no training example, and why."""

    source: str  # "clues" or "manifest"
    id: str
    image: str | None
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Mention:
    """A place the text names: its country, and the city when the mention was a city."""

    text: str
    country_code: str
    city: str | None = None


def _first(record: dict, field: str) -> str | None:
    for key in _FIELDS[field]:
        value = record.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _records(uri: str) -> list[dict]:
    """Raw rows of a clue file, by suffix: .jsonl/.json (incl. the authors' SFT list), .csv,
    .parquet."""
    if table_format(uri) != "jsonl":  # a bad JSON line drops one clue, not the file: see below
        return read_table(uri).to_pylist()
    return _json_records(read_bytes(uri).decode("utf-8"))


def _json_records(text: str) -> list[dict]:
    """JSON list or JSON lines; an unparsable line becomes a ``{"_error": ...}`` row."""
    if text.lstrip().startswith("["):
        return parse_sft_text(text)
    rows: list[dict] = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            rows.append({"_error": f"line {i + 1}: invalid JSON: {err.msg}"})
    return rows


def read_clues(uri: str) -> tuple[list[Clue], list[Dropped]]:
    """Read clues from JSONL, JSON, CSV or Parquet, or the authors' SFT file.

    A row with ``conversations`` is an SFT record: the image comes from its ``<img>`` tag and the
    country and reasons from its answer (``{'country': ..., 'reasons': ...}``). Other rows use
    the columns ``image``, ``text`` and optional ``country``/``city`` (common aliases accepted).
    Relative image paths are resolved against the clue file's folder. Rows that are not a
    usable clue (no image, no text, bad JSON) come back as :class:`Dropped` with a reason.
    """
    base = parent_of(uri)
    clues: list[Clue] = []
    dropped: list[Dropped] = []
    for i, record in enumerate(_records(uri)):
        row_id = str(record.get("id") or i) if isinstance(record, dict) else str(i)
        try:
            clue = _clue_from(record, row_id)
        except ValueError as err:
            image = record.get("image") if isinstance(record, dict) else None
            dropped.append(Dropped("clues", row_id, image, "unreadable_record", str(err)))
            continue
        clues.append(
            Clue(clue.id, resolve_relative(clue.image, base), clue.text, clue.country, clue.city)
        )
    return clues, dropped


def _clue_from(record: object, row_id: str) -> Clue:
    if not isinstance(record, dict):
        raise ValueError(f"row is {type(record).__name__}, not an object")
    if "_error" in record:
        raise ValueError(record["_error"])
    if "conversations" in record:
        example = SftExample.from_record(record, default_id=row_id)
        parsed = parse_answer(example.answer)
        if not parsed.reasons:
            raise ValueError("SFT answer has no reasons")
        return Clue(example.id, example.image, parsed.reasons, parsed.country, parsed.city)
    image, text = _first(record, "image"), _first(record, "text")
    if not image:
        raise ValueError("row names no image")
    if not text:
        raise ValueError("row has no clue text")
    return Clue(row_id, image, text, _first(record, "country"), _first(record, "city"))


def _ngrams(text: str) -> Iterator[tuple[str, int, bool]]:
    """(n-gram, number of words, starts a sentence) for word n-grams of ``text``."""
    words = [(m.group(), m.start()) for m in _WORD.finditer(text)]
    for i, (_, start) in enumerate(words):
        sentence_start = i == 0 or bool(_SENTENCE_END.search(text[:start].rstrip() + " "))
        for n in range(1, min(_MAX_NGRAM + 1, len(words) - i) + 1):
            span = words[i : i + n]
            yield text[start : span[-1][1] + len(span[-1][0])], n, sentence_start


def _capitalized(word: str) -> bool:
    return word[:1].isupper()


def find_places(
    text: str, gazetteer: Gazetteer, min_city_population: int = 100_000
) -> list[Mention]:
    """Countries and cities that ``text`` names (gazetteer lookups of word n-grams), in order
    of appearance, overlapping n-grams all reported. Cities smaller than
    ``min_city_population`` do not count: small places share names with common words."""
    case_matters = any(c.isupper() for c in text)
    found: list[Mention] = []
    for gram, n, sentence_start in _ngrams(text):
        words = gram.split()
        first_cap = _capitalized(words[0]) or (words[0].lower() == "the" and n > 1)
        if case_matters and not first_cap:
            continue
        if n == 1 and len(gram.replace(".", "")) <= 3 and not gram.replace(".", "").isupper():
            continue  # "in", "can", "and", "per" are ISO codes too; only capitals count
        code = gazetteer.country_code(gram)
        if code:
            found.append(Mention(gram, code))
            continue
        if n == 1 and sentence_start and case_matters:
            continue  # a capital at a sentence start says nothing about being a name
        if case_matters and not _capitalized(words[-1]):
            continue
        place = gazetteer.city(gram)
        if place is not None and place.population >= min_city_population:
            found.append(Mention(gram, place.country_code, place.name))
    return found


@dataclass(frozen=True)
class Located:
    """Where a clue points: ``country_code`` and ``city``, or ``drop_reason`` when nowhere.

    ``note`` flags a kept clue worth a look (``label_differs_from_text``).
    """

    country_code: str | None
    city: str | None = None
    drop_reason: str | None = None
    note: str | None = None


def locate_clue(clue: Clue, gazetteer: Gazetteer, min_city_population: int = 100_000) -> Located:
    """The country (ISO alpha-2) and city a clue points to, or why it points nowhere.

    A given label wins over the text, because the text may contrast countries ("unlike
    Argentina, ..."); a label the text contradicts is kept with a note. Without a label the
    text must name exactly one country (directly or through a city), else ``drop_reason`` is
    ``no_place_mention`` or ``ambiguous_place`` (``unknown_country_label`` for a bad label).
    """
    mentions = find_places(clue.text, gazetteer, min_city_population)
    countries = sorted({m.country_code for m in mentions})
    if clue.country:
        code = gazetteer.country_code(clue.country)
        if code is None:
            return Located(None, drop_reason="unknown_country_label")
        note = "label_differs_from_text" if countries and code not in countries else None
        return Located(code, clue.city, note=note)
    if not countries:
        return Located(None, drop_reason="no_place_mention")
    if len(countries) > 1:
        return Located(None, drop_reason="ambiguous_place")
    cities = [m.city for m in mentions if m.city]
    return Located(countries[0], clue.city or (cities[0] if cities else None))
