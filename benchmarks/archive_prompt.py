"""Issue 21's second design: the gallery neighbours' places in the VLM's prompt (G3, Img2Loc).

The fused method (:mod:`georay.archive.fusion`) combines the VLM's answer with the neighbours
after generation. This design gives the neighbours to the VLM instead: the question gains one
line, ``Photos like this one were taken in: Lyon, France; Paris, France; ...`` (the k nearest
gallery photos, best first), and the model answers with them in view.

A tiny VLM answers only the question it was trained on (DESIGN "Models"), so stage 2 is trained
again for this design, from the demo run's stage-1 artifact with its preset and steps, on the
demo's location conversations, each given the line its view would get: the k nearest among a
random sample of the other train views, the sample as large as one of the benchmark's
galleries (so the hints are as good in training as at test). Then it answers the untagged
archive views with their neighbours among the tagged ones, the galleries of
:mod:`benchmarks.archive`. Places of gallery photos come from their points through the gazetteer,
as in the fused job.

Used by ``python -m benchmarks.archive --prompt-design`` (its table gains ``prompt`` rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HINT = "Photos like this one were taken in: {places}."


def hinted(question: str, places: list[str]) -> str:
    """``question`` with the neighbours' line (none when there are no neighbours)."""
    return f"{question}\n{HINT.format(places='; '.join(places))}" if places else question


class Points:
    """Photos with a known point: their unit embeddings and "City, Country" place names."""

    def __init__(self, ids: list[str], x: np.ndarray, lat: np.ndarray, lon: np.ndarray):
        from georay.data.vectors import normalise
        from georay.geo.gazetteer import get_gazetteer
        from georay.geo.places import city_of_coordinates

        gaz = get_gazetteer()
        city, country = city_of_coordinates(gaz, lat, lon)
        missing = np.equal(country, None)
        if missing.any():
            country[missing] = gaz.reverse(lat[missing], lon[missing]).country_code
        self.ids, self.x = ids, normalise(x)
        self.places = [
            ", ".join(p for p in (ci, co and gaz.country_name(co)) if p)
            for ci, co in zip(city, country, strict=True)
        ]

    def nearest(self, query: np.ndarray, pool: np.ndarray, k: int) -> list[str]:
        """Places of the ``k`` items of ``pool`` (indices) most similar to ``query``, best first."""
        sims = self.x[pool] @ query
        return [self.places[pool[j]] for j in np.argsort(-sims, kind="stable")[:k]]


def training_set(run: Path, emb: dict, truth: dict, sizes: list[int], k: int, seed: int) -> list:
    """The demo's stage-2 examples with the neighbours' line (see the module docstring)."""
    from dataclasses import replace

    from georay.protocol.sft import read_sft

    examples = [e for e in read_sft(run / "knowledge" / "location.jsonl") if e.id in emb]
    ids = [e.id for e in examples]
    points = Points(ids, np.stack([emb[i] for i in ids]),
                    np.array([truth[i]["lat"] for i in ids], float),
                    np.array([truth[i]["lon"] for i in ids], float))  # fmt: skip
    rng = np.random.default_rng([seed, 21])
    out = []
    for i, e in enumerate(examples):
        others = np.delete(np.arange(len(ids)), i)
        pool = rng.choice(others, min(int(rng.choice(sizes)), len(others)), replace=False)
        out.append(replace(e, question=hinted(e.question, points.nearest(points.x[i], pool, k))))
    return out


def train(run: Path, examples: list, out: Path, seed: int) -> dict:
    """Stage 2 on ``examples`` from the run's stage-1 artifact (the demo's preset and steps)."""
    from benchmarks.claims import train_local
    from georay.protocol.sft import write_sft

    out.mkdir(parents=True, exist_ok=True)
    write_sft(examples, out / "location-hinted.jsonl")
    return train_local("tiny_location", out / "location-hinted.jsonl",
                       str(run / "train" / "reasoning"), out / "model", 0, seed)  # fmt: skip


def answer(model_dir: Path, question: str, views: list[dict], gallery: Points, emb: dict,
           k: int, batch: int = 32) -> list[dict]:  # fmt: skip
    """Predictions rows for ``views`` (manifest rows), each asked with its neighbours' line."""
    from georay.data.images import decode_fit
    from georay.models.vlm import generate_answers, load_vlm, processor_max_pixels
    from georay.predict.place import rows_from_texts

    model, processor = load_vlm(str(model_dir))
    side = processor_max_pixels(processor)
    pool = np.arange(len(gallery.ids))
    rows = []
    for start in range(0, len(views), batch):
        chunk = views[start : start + batch]
        images = [decode_fit(Path(v["uri"]).read_bytes(), side) for v in chunk]
        questions = [hinted(question, gallery.nearest(_unit(emb[v["image_id"]]), pool, k))
                     for v in chunk]  # fmt: skip
        texts = generate_answers(model, processor, images, questions, max_new_tokens=32)
        found = rows_from_texts(texts, h3_resolution=3, model_id="prompt-design", method="vlm")
        rows += [{**r, "image_id": v["image_id"]} for r, v in zip(found, chunk, strict=True)]
    return rows


def _unit(x: np.ndarray) -> np.ndarray:
    from georay.data.vectors import normalise

    return normalise(np.asarray(x, dtype=np.float32)[None])[0]
