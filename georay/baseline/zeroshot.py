"""``georay baseline zeroshot``: CLIP zero-shot geolocation, as StreetCLIP does it.

The country is the caption ``"A Street View photo in {country}."`` most similar to the image
among the candidate countries; then the city is the most similar of that country's most
populous GeoNames places (``"A Street View photo from {city}, {country}."``), and the answer
is placed at that city through the gazetteer, as the VLM predictor places a named city. Any
CLIP with both towers works: open_clip (``tiny`` built in code, named models with pretrained
weights) or a transformers ``CLIPModel`` (StreetCLIP is one), from a folder, ``s3://`` or a
hub id. A bulk job on :func:`georay.pipeline.run_bulk_job`: resumable, one row per image, error
rows for images that cannot be read.

Confidence (issue 20): the country's softmax probability over the candidate countries (at CLIP's
trained logit scale), the city's is that times its softmax among the country's cities; the
candidates are the top-k countries, each at its most probable city. A ``calibration.json`` next
to the encoder's folder, or ``--calibration``, is applied (:func:`georay.protocol.calibration.job_calibration`).
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from georay import pipeline as pl
from georay.baseline.config import ZeroShotConfig
from georay.baseline.threads import set_threads
from georay.errors import UserError
from georay.predict.rows import predictions_table, rows_of, run_predictions_job
from georay.protocol.calibration import Calibration, job_calibration
from georay.protocol.predictions import Resolved, add_cells, answer_row, candidate, with_confidence

LOGIT_SCALE = 100.0  # CLIP's learned temperature at the end of training, for probabilities
TEXT_BATCH = 256


def candidate_countries(names: list[str], gazetteer) -> list[str]:
    """ISO codes of the given countries (codes or names), or of every country with a place.

    Raises
    ------
    UserError
        A name that is no country (all such names are listed).
    """
    if not names:
        return sorted({str(c) for c in gazetteer.codes})
    codes = [gazetteer.country_code(n) for n in names]
    unknown = [n for n, c in zip(names, codes, strict=True) if c is None]
    if unknown:
        raise UserError(f"--countries: not a country: {unknown}")
    return list(dict.fromkeys(codes))


class ZeroShotActor:
    """A Ray Data actor holding one CLIP, the country captions' embeddings and, filled as
    countries come up, each country's city captions' embeddings."""

    def __init__(self, settings: dict, per_node: int = 1, calibration: Calibration | None = None):
        import torch

        from georay.geo.gazetteer import get_gazetteer
        from georay.models.clip import load_zero_shot

        self.cfg = ZeroShotConfig(**settings)
        set_threads(self.cfg.torch_threads, per_node)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.clip = load_zero_shot(self.cfg.encoder, self.cfg.pretrained, seed=self.cfg.seed,
                                   device=device)  # fmt: skip
        self.gaz = get_gazetteer()
        self.codes = candidate_countries(self.cfg.countries, self.gaz)
        self.names = [self.gaz.country_name(c) for c in self.codes]
        captions = [self.cfg.country_caption.format(country=n) for n in self.names]
        self.country_text = self._texts(captions)
        self.cities: dict[str, tuple[list, np.ndarray | None]] = {}
        self.calibration = calibration

    def _texts(self, captions: list[str]) -> np.ndarray:
        parts = [self.clip.encode_texts(captions[i : i + TEXT_BATCH])
                 for i in range(0, len(captions), TEXT_BATCH)]  # fmt: skip
        return np.concatenate(parts)

    def _cities(self, j: int) -> tuple[list, np.ndarray | None]:
        code = self.codes[j]
        if code not in self.cities:
            places = self.gaz.cities(code, limit=self.cfg.cities_per_country)
            captions = [self.cfg.city_caption.format(city=p.name, country=self.names[j])
                        for p in places]  # fmt: skip
            self.cities[code] = (places, self._texts(captions) if places else None)
        return self.cities[code]

    def _best_city(self, j: int, emb: np.ndarray) -> tuple[Resolved, float]:
        """Country ``j`` at its most probable city (softmax over its city captions), and that
        city's probability within the country (1 for a country without places: unplaced)."""
        places, text = self._cities(j)
        if text is None:  # a country without GeoNames places: placed nowhere
            return Resolved(self.names[j], self.codes[j], None, None, None, None), 1.0
        p_city = _softmax(LOGIT_SCALE * (text @ emb))
        c = int(np.argmax(p_city))
        city = places[c]
        place = Resolved(self.names[j], self.codes[j], city.name, city.lat, city.lon, "city")
        return place, float(p_city[c])

    def answer(self, emb: np.ndarray) -> dict:
        """The answer row of one image embedding (normalised), with its confidences: the
        country's softmax probability, the city's joint one (country times city within it),
        and the top-k countries, each at its most probable city."""
        p_country = _softmax(LOGIT_SCALE * (self.country_text @ emb))
        top = np.argsort(-p_country, kind="stable")[: self.cfg.top_k]  # top[0]: the answer
        best = [self._best_city(int(j), emb) for j in top]
        # A candidate's probability is its city's (country times city within it), or its
        # country's where it has no city: distinct places, summing to <= 1.
        joint = [float(p_country[j]) * p for j, (_, p) in zip(top, best, strict=True)]
        place, p_city = best[0]
        j = int(top[0])
        note = {"country": self.names[j], "p_country": round(float(p_country[j]), 4)}
        if place.city is not None:
            note.update(city=place.city, p_city=round(p_city, 4))
        row = answer_row(
            place, self.clip.id, raw_text=json.dumps(note, ensure_ascii=False), method="zeroshot"
        )
        return with_confidence(
            row,
            country=float(p_country[j]),
            city=joint[0] if place.city is not None else None,
            candidates=[candidate(p, q) for (p, _), q in zip(best, joint, strict=True)],
            top_k=self.cfg.top_k,
            calibration=self.calibration,
            method="zeroshot",
            min_confidence=self.cfg.min_confidence,
        )

    def __call__(self, batch: dict[str, np.ndarray]):
        rows = np.flatnonzero(pl.ok_mask(batch))
        answers = {}
        if len(rows):
            emb = self.clip.encode_images(np.stack(pl.images_of(batch, rows)))
            found = add_cells([self.answer(e) for e in emb], self.cfg.h3_resolution)
            answers = dict(zip(rows.tolist(), found, strict=True))
        return predictions_table(rows_of(batch), answers, self.clip.id, method="zeroshot")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def model_folder(cfg: ZeroShotConfig) -> str:
    """Where ``georay calibrate`` stores this model's calibration by default: the encoder's
    folder (a transformers CLIP folder or ``s3://`` prefix), else the folder of an open_clip
    checkpoint file; "" for a built-in or hub model (give ``--calibration``)."""
    import os

    if cfg.encoder.startswith("s3://") or os.path.isdir(cfg.encoder):
        return cfg.encoder
    if cfg.pretrained and os.path.isfile(cfg.pretrained):
        return os.path.dirname(os.path.abspath(cfg.pretrained))
    return ""


def zeroshot(cfg: ZeroShotConfig) -> dict:
    """Run the zero-shot baseline as a bulk job; returns (and writes) ``OUT/summary.json``."""
    from georay.geo.gazetteer import get_gazetteer
    from georay.models.clip import clip_side, encoder_id, is_open_clip

    countries = candidate_countries(cfg.countries, get_gazetteer())  # a typo fails here
    calibration, calibration_id = job_calibration(cfg.calibration, model_folder(cfg))
    side = clip_side(cfg.encoder, cfg.pretrained)
    model = encoder_id(cfg.encoder, cfg.pretrained) if is_open_clip(cfg.encoder) else (
        f"transformers:{cfg.encoder}")  # fmt: skip

    def stages(ds):
        ds = pl.load_stage(ds, cfg, side=side)
        return ds.map_batches(
            ZeroShotActor,
            fn_constructor_kwargs={
                "settings": asdict(cfg),
                "per_node": pl.actors_per_node(cfg.num_actors),
                "calibration": calibration,
            },  # fmt: skip
            batch_format="numpy",
            **pl.actor_pool_options(cfg),
        )

    identity = {
        "model": model,
        "seed": cfg.seed,
        "countries": countries if cfg.countries else "all",
        "cities_per_country": cfg.cities_per_country,
        "captions": [cfg.country_caption, cfg.city_caption],
        "calibration": calibration_id,
        "top_k": cfg.top_k,
        "min_confidence": cfg.min_confidence,
    }
    return run_predictions_job("baseline zeroshot", cfg, identity, stages)
