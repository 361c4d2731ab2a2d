"""The synthetic street-view world: a labelled, learnable stand-in for GSV imagery.

``generate_world`` draws ``n`` views of ``countries`` real countries (the first K of a fixed,
diverse list; coordinates jittered around each country's most populous real cities from the
gazetteer), and writes, under ``output`` (local folder or ``s3://`` prefix)::

    images/<image_id>.jpg   640x480 JPEGs (plus --corrupt broken files for robustness tests)
    manifest.parquet        DESIGN manifest columns (uri relative to the manifest) + split, view,
                            ade20k_fractions (exact class-area fractions, list<float32>[150]);
                            with --duplicates, duplicate_of (the view a planted copy copies)
    clues.jsonl             one human-style reasoning clue per view: {image, text, country, city}
    world.json              the countries, their cities and the cues that identify them
    pretrain.jsonl          SFT records "Describe the street scene." -> the cues seen, never a
                            place name (train split): the tiny model's stand-in for pretraining

Everything is a pure function of the config: each view draws from its own
``default_rng([seed, index])``, JPEGs use a fixed quality and no metadata, JSON keys are sorted
and Parquet is written without timestamps, so the same command gives byte-identical files
(also with ``--workers``, since results are collected in order).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from georay.data.ade20k import NUM_CLASSES
from georay.data.images import encode_jpeg
from georay.data.manifest import write_manifest
from georay.data.storage import join_uri, write_bytes
from georay.protocol.prompts import DESCRIBE_QUESTION
from georay.protocol.sft import SftExample, write_sft
from georay.synth.config import SynthConfig
from georay.synth.draw import (
    CITY_PANELS,
    SKYLINES,
    STYLES,
    CountryStyle,
    draw_low_locatability,
    draw_street,
    fractions,
)
from georay.synth.formats import with_exif_gps

log = logging.getLogger(__name__)

SOURCE = "georay-synth"
CORRUPT_KINDS = ("truncated", "zero_bytes", "not_an_image", "huge_header")
# Planted copies, as re-uploads make them: the same bytes, a re-encode at another JPEG quality,
# a smaller copy, and a copy with 1% of its width trimmed off one edge.
DUPLICATE_KINDS = ("exact", "jpeg", "resize", "trim")
_SHAPE_WORDS = {
    "rect": "rectangular",
    "wide": "wide rectangular",
    "tall": "tall rectangular",
    "circle": "round",
    "triangle": "triangular",
    "diamond": "diamond-shaped",
    "octagon": "octagonal",
}


@dataclass(frozen=True)
class City:
    name: str
    lat: float
    lon: float
    population: int


@dataclass(frozen=True)
class Country:
    style: CountryStyle
    name: str
    cities: tuple[City, ...]


def build_world(countries: int, cities_per_country: int, min_sep_km: float = 50.0) -> list[Country]:
    """The first ``countries`` styles with their most populous, well-separated real cities.

    Cities closer than ``min_sep_km`` to a more populous pick are skipped, so boroughs of one
    metropolis (Brooklyn next to New York City) do not count as separate cities.
    """
    from georay.geo.distance import haversine_km
    from georay.geo.gazetteer import get_gazetteer

    gaz = get_gazetteer()
    world = []
    for style in STYLES[:countries]:
        picked: list[City] = []
        for place in gaz.cities(style.code, limit=200):
            if (
                picked
                and np.nanmin(
                    haversine_km(
                        place.lat, place.lon, [c.lat for c in picked], [c.lon for c in picked]
                    )
                )
                < min_sep_km
            ):
                continue
            picked.append(City(place.name, float(place.lat), float(place.lon), place.population))
            if len(picked) == cities_per_country:
                break
        if len(picked) < cities_per_country:
            raise ValueError(f"gazetteer has too few cities for {style.code}")
        world.append(Country(style, gaz.country_name(style.code), tuple(picked)))
    return world


def split_of(image_id: str, test_share: float, val_share: float = 0.0) -> str:
    """``"test"``, ``"val"`` or ``"train"``, stable for an id (hash, not position). The val
    share is taken from above the test share, so adding one leaves the test split as it was."""
    u = int.from_bytes(hashlib.blake2b(image_id.encode(), digest_size=8).digest(), "big") / 2**64
    if u < test_share:
        return "test"
    return "val" if u < test_share + val_share else "train"


def _near(city: City, rng: np.random.Generator) -> tuple[float, float]:
    """A point within ~15 km of a city centre (most within 5 km)."""
    r_km = min(abs(rng.normal(0.0, 4.0)), 15.0)
    bearing = rng.uniform(0.0, 2 * math.pi)
    lat = city.lat + r_km * math.cos(bearing) / 111.32
    lon = city.lon + r_km * math.sin(bearing) / (111.32 * max(0.1, math.cos(math.radians(lat))))
    return round(lat, 6), round((lon + 180.0) % 360.0 - 180.0, 6)


def clue_text(country: Country, city_idx: int, low: bool, rng: np.random.Generator) -> str:
    """A human-style reasoning clue naming the cues drawn in the view and a concrete place."""
    s, city = country.style, country.cities[city_idx].name
    if low:
        options = [
            f"Not much to go on: mostly sky, a {s.wall_desc} wall and {s.veg_desc}. Walls like "
            f"that are common in {country.name}, so I'd guess {city}, with low confidence.",
            f"Only a {s.wall_desc} wall and {s.veg_desc} are visible, no road or signs. That "
            f"still hints at {country.name}; {city} is a guess.",
        ]
        return options[int(rng.integers(len(options)))]
    panel = CITY_PANELS[city_idx % len(CITY_PANELS)][2]
    skyline = SKYLINES[city_idx % len(SKYLINES)][2]
    shape = _SHAPE_WORDS[s.sign_shape]
    marking = s.marking_desc
    options = [
        f"{marking[0].upper() + marking[1:]} and {s.wall_desc} buildings with {s.roof_desc} roofs "
        f"like these are typical of {country.name}; the {panel} {shape} sign with {s.script_desc} "
        f"lettering and the {skyline} point to {city}.",
        f"This looks like {country.name}: {s.veg_desc}, {s.wall_desc} facades and {marking}. A "
        f"{panel} {shape} sign written in {s.script_desc} among {skyline} suggests {city}.",
        f"I'd say {city}, {country.name}. {shape[0].upper() + shape[1:]} signs with "
        f"{s.script_desc} writing and {marking} give the country away, and a {panel} sign panel "
        f"with {skyline} fits {city}.",
        f"{s.wall_desc[0].upper() + s.wall_desc[1:]} walls, {s.roof_desc} roofs and "
        f"{s.veg_desc} are what you see in {country.name}. The {s.script_desc} text on the "
        f"{panel} {shape} sign and the {skyline} narrow it down to {city}.",
    ]
    return options[int(rng.integers(len(options)))]


# How a script looks, in words that name no language or country ("Thai", "French" would).
_SCRIPT_LOOKS = {
    "latin": "Latin",
    "cjk": "square ideographic",
    "arabic": "flowing right-to-left",
    "devanagari": "top-barred",
    "cyrillic": "Cyrillic",
    "thai": "looped",
    "hangul": "block-syllable",
}


def scene_text(country: Country, city_idx: int, low: bool, rng: np.random.Generator) -> str:
    """A plain description of the cues drawn in the view that never names a place.

    The tiny world's stand-in for pretraining: a real VLM arrives knowing how to see and say
    "terracotta roofs" or "a yellow sign panel"; the tiny model learns it from these, so the
    LoRA stages only have to learn what the paper teaches, which places such cues point to.
    """
    s = country.style
    if low:
        return f"Mostly sky, a {s.wall_desc} wall and {s.veg_desc}; no road and no signs."
    panel = CITY_PANELS[city_idx % len(CITY_PANELS)][2]
    skyline = SKYLINES[city_idx % len(SKYLINES)][2]
    parts = [
        f"{s.wall_desc} buildings with {s.roof_desc} roofs",
        f"{s.marking_desc} on the road",
        f"a {panel} {_SHAPE_WORDS[s.sign_shape]} sign with {_SCRIPT_LOOKS[s.script]} lettering",
        f"{s.veg_desc}",
        f"{skyline} behind",
    ]
    order = rng.permutation(len(parts))
    text = "; ".join(parts[i] for i in order)
    return "A street: " + text + "."


def _draw_one(task: tuple) -> tuple[bytes, np.ndarray]:
    """Draw and encode one view (module level so a process pool can run it)."""
    seed, index, style_idx, city_idx, low, width, height, quality = task
    rng = np.random.default_rng([seed, index, 1])
    style = STYLES[style_idx]
    if low:
        pixels, labels = draw_low_locatability(style, width, height, rng)
    else:
        pixels, labels = draw_street(style, city_idx, width, height, rng)
    return encode_jpeg(pixels, quality), fractions(labels)


def duplicate_bytes(kind: str, jpeg: bytes) -> bytes:
    """A copy of an encoded view as re-uploads make it (one of :data:`DUPLICATE_KINDS`)."""
    import io

    from PIL import Image

    if kind == "exact":
        return jpeg
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    w, h = image.size
    if kind == "resize":
        image = image.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.BILINEAR)
    elif kind == "trim":
        image = image.crop((0, 0, w - max(1, w // 100), h))
    return encode_jpeg(np.asarray(image), 60 if kind == "jpeg" else 85)


def _corrupt_bytes(kind: str, good_jpeg: bytes) -> bytes:
    if kind == "truncated":
        return good_jpeg[: len(good_jpeg) // 3]
    if kind == "zero_bytes":
        return b""
    if kind == "not_an_image":
        return b"This is a text file with a .jpg name, not an image.\n"
    # huge_header: a valid tiny JPEG whose frame header claims 60000 x 60000 pixels (3.6
    # gigapixels): decoders must refuse it from the header instead of allocating.
    tiny = bytearray(encode_jpeg(np.zeros((8, 8, 3), np.uint8), 75))
    sof = tiny.find(b"\xff\xc0")
    tiny[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2
    return bytes(tiny)


def _map(tasks: list[tuple], workers: int, progress: bool):
    """Yield ``_draw_one(task)`` for each task, in order (so output bytes never depend on
    ``workers``). A process pool that cannot start (e.g. a ``__main__`` that spawn cannot
    re-import) falls back to drawing in this process instead of hanging."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="synth", unit="img", disable=not progress)
    done = 0
    if workers > 1 and len(tasks) >= 64:
        import multiprocessing as mp

        # spawn: safe next to threads (pyarrow, tqdm) that fork would copy mid-flight.
        try:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                for result in pool.map(_draw_one, tasks, chunksize=16):
                    yield result
                    done += 1
                    bar.update()
        except BrokenProcessPool as err:
            log.warning("synth process pool failed (%s); drawing in this process", err)
    for task in tasks[done:]:
        yield _draw_one(task)
        bar.update()
    bar.close()


def exif_tagged(n: int, share: float, seed: int) -> np.ndarray:
    """Which of ``n`` drawn views carry EXIF GPS: ``round(share * n)`` of them, drawn with a
    generator of their own so tagging moves nothing else of the world."""
    tagged = np.zeros(n, dtype=bool)
    tagged[np.random.default_rng([seed, 4]).permutation(n)[: round(share * n)]] = True
    return tagged


def generate_world(cfg: SynthConfig, progress: bool | None = None) -> dict[str, Any]:
    """Draw the world described by ``cfg`` and write it under ``cfg.output``.

    ``progress`` shows a progress bar (default: when stderr is a terminal).

    Returns
    -------
    dict
        Summary: output, images, corrupt, countries (codes), low_locatability (count), train, val, test.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    world = build_world(cfg.countries, cfg.cities_per_country)
    k = len(world)
    # Balanced countries: index i gets country perm[i] (an even share each, shuffled).
    assign = np.random.default_rng([cfg.seed, 0]).permutation(np.arange(cfg.n) % k)
    rows: dict[str, list] = {c: [] for c in ("image_id", "uri", "lat", "lon", "country", "city")}
    extra: dict[str, list] = {"split": [], "view": [], "ade20k_fractions": []}
    tasks, clues, scenes = [], [], []
    for i in range(cfg.n):
        rng = np.random.default_rng([cfg.seed, i, 0])
        ci = int(assign[i])
        country = world[ci]
        city_idx = int(rng.integers(len(country.cities)))
        low = bool(rng.random() < cfg.low_locatability)
        lat, lon = _near(country.cities[city_idx], rng)
        image_id = f"synth-s{cfg.seed}-{i:06d}"
        rel = f"images/{image_id}.jpg"
        for key, value in zip(
            rows,
            (image_id, rel, lat, lon, country.style.code, country.cities[city_idx].name),
            strict=True,
        ):
            rows[key].append(value)
        extra["split"].append(split_of(image_id, cfg.test_share, cfg.val_share))
        extra["view"].append("low_locatability" if low else "street")
        text = clue_text(country, city_idx, low, rng)
        if extra["split"][-1] == "train":  # pretraining never sees the held-out views
            scene = scene_text(country, city_idx, low, rng)
            scenes.append(SftExample(image_id, rel, DESCRIBE_QUESTION, scene))
        clues.append(
            {
                "image": rel,
                "text": text,
                "country": country.name,
                "city": country.cities[city_idx].name,
            }
        )
        tasks.append(
            (
                cfg.seed,
                i,
                STYLES.index(country.style),
                city_idx,
                low,
                cfg.width,
                cfg.height,
                cfg.jpeg_quality,
            )
        )

    workers = cfg.workers or (os.cpu_count() or 1)
    first_jpeg = b""
    # Planted copies: sources drawn with their own seed, so they do not move the other views.
    sources = np.random.default_rng([cfg.seed, 3]).choice(cfg.n, cfg.duplicates, replace=True)
    wanted = set(sources.tolist())
    copied: dict[int, bytes] = {}
    tagged = exif_tagged(cfg.n, cfg.exif_share, cfg.seed)
    for i, (jpeg, frac) in enumerate(_map(tasks, workers, progress)):
        first_jpeg = first_jpeg or jpeg  # untagged: the broken files carry no GPS
        if tagged[i]:
            jpeg = with_exif_gps(jpeg, rows["lat"][i], rows["lon"][i])
        write_bytes(join_uri(cfg.output, rows["uri"][i]), jpeg)
        extra["ade20k_fractions"].append(frac)
        if i in wanted:
            copied[i] = jpeg
    extra["duplicate_of"] = [None] * len(rows["image_id"])
    for j, src in enumerate(sources.tolist()):
        kind = DUPLICATE_KINDS[j % len(DUPLICATE_KINDS)]
        image_id = f"synth-s{cfg.seed}-dup-{j:04d}-{kind}"
        rel = f"images/{image_id}.jpg"
        write_bytes(join_uri(cfg.output, rel), duplicate_bytes(kind, copied[src]))
        for key in rows:
            rows[key].append({"image_id": image_id, "uri": rel}.get(key, rows[key][src]))
        extra["split"].append(extra["split"][src])  # a copy never leaks across splits
        extra["view"].append("duplicate")
        extra["ade20k_fractions"].append(extra["ade20k_fractions"][src])
        extra["duplicate_of"].append(rows["image_id"][src])

    if cfg.corrupt and not first_jpeg:
        first_jpeg = _draw_one(
            (cfg.seed, -1, 0, 0, False, cfg.width, cfg.height, cfg.jpeg_quality)
        )[0]
    for j in range(cfg.corrupt):
        kind = CORRUPT_KINDS[j % len(CORRUPT_KINDS)]
        country = world[j % k]
        image_id = f"synth-s{cfg.seed}-corrupt-{j:03d}-{kind}"
        rel = f"images/{image_id}.jpg"
        write_bytes(join_uri(cfg.output, rel), _corrupt_bytes(kind, first_jpeg))
        lat, lon = _near(country.cities[0], np.random.default_rng([cfg.seed, j, 2]))
        for key, value in zip(
            rows,
            (image_id, rel, lat, lon, country.style.code, country.cities[0].name),
            strict=True,
        ):
            rows[key].append(value)
        extra["split"].append(split_of(image_id, cfg.test_share, cfg.val_share))
        extra["view"].append("corrupt")
        extra["ade20k_fractions"].append(None)
        extra["duplicate_of"].append(None)

    table = pa.table(
        {
            **{
                k: pa.array(v, pa.float64() if k in ("lat", "lon") else pa.string())
                for k, v in rows.items()
            },
            "source": pa.array([SOURCE] * len(rows["image_id"]), pa.string()),
            "split": pa.array(extra["split"], pa.string()),
            "view": pa.array(extra["view"], pa.string()),
            "ade20k_fractions": pa.array(
                [None if f is None else f.tolist() for f in extra["ade20k_fractions"]],
                pa.list_(pa.float32()),
            ),
        }
    )
    if cfg.duplicates:  # only then, so worlds without copies keep their exact bytes
        table = table.append_column("duplicate_of", pa.array(extra["duplicate_of"], pa.string()))
    if cfg.exif_share:  # likewise: only worlds with tagged views have the column
        # A byte copy keeps the EXIF block; a re-encoded copy (and a broken file) has none.
        copies = [DUPLICATE_KINDS[j % len(DUPLICATE_KINDS)] == "exact" and bool(tagged[s])
                  for j, s in enumerate(sources.tolist())]  # fmt: skip
        flags = tagged.tolist() + copies + [False] * cfg.corrupt
        table = table.append_column("exif_gps", pa.array(flags, pa.bool_()))
    write_manifest(table, join_uri(cfg.output, "manifest.parquet"))
    write_bytes(
        join_uri(cfg.output, "clues.jsonl"),
        "".join(json.dumps(c, ensure_ascii=False, sort_keys=True) + "\n" for c in clues).encode(),
    )
    write_bytes(join_uri(cfg.output, "world.json"), _world_json(cfg, world).encode())
    write_sft(scenes, join_uri(cfg.output, "pretrain.jsonl"))
    n_low = sum(v == "low_locatability" for v in extra["view"])
    n_test = sum(s == "test" for s in extra["split"])
    n_val = sum(s == "val" for s in extra["split"])
    return {
        "output": cfg.output,
        "images": cfg.n,
        "corrupt": cfg.corrupt,
        "duplicates": cfg.duplicates,
        "countries": [c.style.code for c in world],
        "low_locatability": n_low,
        "train": len(extra["split"]) - n_test - n_val,
        "val": n_val,
        "test": n_test,
    }


def _world_json(cfg: SynthConfig, world: list[Country]) -> str:
    countries = []
    for c in world:
        s = c.style
        countries.append(
            {
                "code": s.code,
                "name": c.name,
                "cues": {
                    "walls": s.wall_desc,
                    "roofs": s.roof_desc,
                    "road_markings": s.marking_desc,
                    "sign_shape": _SHAPE_WORDS[s.sign_shape],
                    "script": s.script_desc,
                    "vegetation": s.veg_desc,
                    "traffic_lights": s.traffic_lights,
                    "fences": s.fences,
                },
                "cities": [
                    {
                        "name": city.name,
                        "lat": city.lat,
                        "lon": city.lon,
                        "population": int(city.population),
                        "sign_panel": CITY_PANELS[i][2],
                        "skyline": SKYLINES[i][2],
                    }
                    for i, city in enumerate(c.cities)
                ],
            }
        )
    doc = {
        "generator": "georay synth",
        "config": {
            k: getattr(cfg, k)
            for k in (
                "n",
                "countries",
                "seed",
                "width",
                "height",
                "low_locatability",
                "corrupt",
                "test_share",
                "val_share",
                "cities_per_country",
                "jpeg_quality",
            )
        },
        "num_classes": NUM_CLASSES,
        "countries": countries,
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=2) + "\n"
