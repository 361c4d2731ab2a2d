"""Build the two SFT files: stage-1 reasoning conversations from human clues, stage-2 location
conversations from a curated manifest, plus what was dropped and why.

Answers carry the country **name** ("Chile", not "CL"), as the paper's data does: names are what
a language model has seen in pre-training, so they are easier targets than codes. The name is
the gazetteer's short display name of the ISO code the input was normalized to, so "Chile",
"CL", "CHL" and "chile" all train the same target. The evaluator accepts names and codes alike.

Outputs in ``output`` (local folder or ``s3://`` prefix):
``reasoning.jsonl``, ``location.jsonl`` (DESIGN "sft" JSONL), ``dropped.jsonl`` (one row per
input row that made no example: source, id, image, reason, detail) and ``summary.json`` (counts
per source: rows in = kept + dropped, drops by reason, examples per country, conventions).
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from georay.data.manifest import read_manifest
from georay.data.storage import join_uri, write_bytes
from georay.geo.gazetteer import Gazetteer, get_gazetteer
from georay.geo.places import city_of_coordinates
from georay.knowledge.clues import Clue, Dropped, locate_clue, read_clues
from georay.knowledge.config import KnowledgeConfig
from georay.protocol.prompts import (
    LOCATION_QUESTION,
    REASONING_QUESTION,
    location_answer,
    reasoning_answer,
)
from georay.protocol.sft import SftExample, write_sft

log = logging.getLogger(__name__)

CONVENTIONS = {
    "answer_country": "country display name from the offline GeoNames/ISO gazetteer "
    "(inputs normalized to ISO 3166-1 alpha-2 first: names, aliases, alpha-2/alpha-3 codes)",
    "clue_location": "kept when the clue has a known country label, or when its text names "
    "exactly one country (directly or via a city of >= min_city_population); label wins over text",
    "stage2_city": "manifest 'city' column; where missing, the most populous GeoNames place "
    "within 10 km of (lat, lon) if it lies in the row's country (georay.geo.places, the "
    "convention evaluation uses for truth without a city)",
    "held_out": "rows (and clues about images) whose manifest 'split' differs from the "
    "configured split are excluded, so evaluation images are never trained on",
}


def _held_out(manifest: pa.Table | None, split: str) -> set[str]:
    """Image ids and URIs the manifest puts in another split than ``split``."""
    if manifest is None or not split or "split" not in manifest.column_names:
        return set()
    other = manifest.filter(pc.fill_null(pc.not_equal(manifest["split"], split), False))
    return set(other["image_id"].to_pylist()) | set(other["uri"].to_pylist())


def _image_keys(image: str) -> tuple[str, str]:
    return image, posixpath.splitext(posixpath.basename(image))[0]


@dataclass
class Built:
    """Examples of one stage, the input rows dropped, and counts for the summary."""

    examples: list[SftExample] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    countries: Counter = field(default_factory=Counter)  # ISO code -> examples
    notes: Counter = field(default_factory=Counter)  # kept rows worth a look

    def summary(self, rows_in: int) -> dict:
        """Counts: rows in = kept + dropped; drops by reason; examples per country."""
        return {
            "rows_in": rows_in,
            "kept": len(self.examples),
            "dropped": len(self.dropped),
            "dropped_by_reason": dict(Counter(d.reason for d in self.dropped).most_common()),
            "examples_by_country": dict(self.countries.most_common()),
            "notes": dict(self.notes),
        }


def reasoning_examples(
    clues: list[Clue], gazetteer: Gazetteer, cfg: KnowledgeConfig, held_out: set[str]
) -> Built:
    """Stage-1 examples from clues (one example or one dropped row per clue)."""
    out = Built()
    examples, dropped, notes = out.examples, out.dropped, out.notes
    seen: dict[str, int] = {}
    dupes: set[tuple[str, str]] = set()
    for clue in clues:
        if held_out and any(k in held_out for k in _image_keys(clue.image)):
            why = f"the manifest puts this image in another split than {cfg.split!r}"
            dropped.append(Dropped("clues", clue.id, clue.image, "held_out_split", why))
            continue
        key = (clue.image, " ".join(clue.text.split()))
        if key in dupes:
            dropped.append(Dropped("clues", clue.id, clue.image, "duplicate"))
            continue
        dupes.add(key)
        where = locate_clue(clue, gazetteer, cfg.min_city_population)
        if where.drop_reason:
            dropped.append(
                Dropped("clues", clue.id, clue.image, where.drop_reason, clue.text[:200])
            )
            continue
        notes.update([where.note] if where.note else [])
        stem = _image_keys(clue.image)[1]
        seen[stem] = seen.get(stem, 0) + 1
        ex_id = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
        answer = reasoning_answer(gazetteer.country_name(where.country_code), key[1])
        examples.append(SftExample(ex_id, clue.image, REASONING_QUESTION, answer))
        out.countries[where.country_code] += 1
    return out


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table[name].to_numpy(zero_copy_only=False)


def location_examples(table: pa.Table, gazetteer: Gazetteer, cfg: KnowledgeConfig) -> Built:
    """Stage-2 examples from a curated manifest (vectorized filters, one loop to write rows)."""
    n = len(table)
    reason = np.full(n, None, dtype=object)

    def drop(mask: np.ndarray, why: str) -> None:
        reason[(reason == None) & mask] = why  # noqa: E711 (element-wise on an object array)

    if "status" in table.column_names:
        drop(_column(table, "status") != "ok", "curate_error")
    if cfg.split and "split" in table.column_names:
        drop(_column(table, "split") != cfg.split, "held_out_split")
    if cfg.min_locatability is not None and "locatability" in table.column_names:
        loc = pc.fill_null(pc.cast(table["locatability"], pa.float64()), np.nan)
        drop(~(loc.to_numpy(zero_copy_only=False) >= cfg.min_locatability), "low_locatability")

    country = _column(table, "country").astype(object)
    city = _column(table, "city").astype(object)
    lat, lon = _column(table, "lat").astype(float), _column(table, "lon").astype(float)
    live = reason == None  # noqa: E711
    no_country = np.flatnonzero(live & np.equal(country, None))
    if len(no_country):  # country of a coordinate: the nearest GeoNames place (as evaluation)
        country[no_country] = gazetteer.reverse(lat[no_country], lon[no_country]).country_code
    no_city = np.flatnonzero(live & np.equal(city, None) & np.not_equal(country, None))
    if len(no_city):  # the city a point is in, with the evaluator's convention
        names, codes = city_of_coordinates(gazetteer, lat[no_city], lon[no_city])
        same = codes == country[no_city]
        city[no_city[same]] = names[same]
    drop(np.equal(country, None), "no_country")
    drop(np.equal(city, None), "no_city")

    names: dict[str, str | None] = {}
    out = Built()
    image_id, uri = _column(table, "image_id"), _column(table, "uri")
    for i in np.flatnonzero(reason == None):  # noqa: E711
        code = country[i]
        if code not in names:
            names[code] = gazetteer.country_name(code) if gazetteer.country_code(code) else None
        if names[code] is None:
            reason[i] = "unknown_country"
            continue
        answer = location_answer(names[code], str(city[i]))
        out.examples.append(SftExample(str(image_id[i]), str(uri[i]), LOCATION_QUESTION, answer))
        out.countries[code] += 1
    out.dropped = [
        Dropped("manifest", str(image_id[i]), str(uri[i]), str(reason[i]))
        for i in np.flatnonzero(reason != None)  # noqa: E711
    ]
    return out


def build(cfg: KnowledgeConfig) -> dict:
    """Write the stage-1/stage-2 SFT files, the dropped rows and a summary; return the summary.

    Every input row (clue or manifest row) becomes exactly one example or one dropped row.
    """
    gazetteer = get_gazetteer()
    manifest = read_manifest(cfg.manifest) if cfg.manifest else None
    splits = read_manifest(cfg.splits) if cfg.splits else manifest
    summary: dict = {"config": asdict(cfg), "conventions": CONVENTIONS}
    dropped: list[Dropped] = []
    if cfg.clues:
        clues, unreadable = read_clues(cfg.clues)
        stage1 = reasoning_examples(clues, gazetteer, cfg, _held_out(splits, cfg.split))
        stage1.dropped[:0] = unreadable
        write_sft(stage1.examples, join_uri(cfg.output, "reasoning.jsonl"))
        summary["reasoning"] = stage1.summary(len(clues) + len(unreadable))
        dropped += stage1.dropped
    if manifest is not None:
        stage2 = location_examples(manifest, gazetteer, cfg)
        write_sft(stage2.examples, join_uri(cfg.output, "location.jsonl"))
        summary["location"] = stage2.summary(len(manifest))
        dropped += stage2.dropped
    lines = "".join(json.dumps(asdict(d), ensure_ascii=False) + "\n" for d in dropped)
    write_bytes(join_uri(cfg.output, "dropped.jsonl"), lines.encode("utf-8"))
    write_bytes(join_uri(cfg.output, "summary.json"), json.dumps(summary, indent=2).encode())
    for stage in ("reasoning", "location"):
        if stage in summary:
            s = summary[stage]
            log.info("%s: %d in, %d kept, %d dropped %s", stage, s["rows_in"], s["kept"],
                     s["dropped"], s["dropped_by_reason"])  # fmt: skip
    return summary
