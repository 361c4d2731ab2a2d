"""``georay baseline zeroshot``: CLIP zero-shot geolocation, as StreetCLIP does it.

The country is the caption ``"A Street View photo in {country}."`` most similar to the image
among the candidate countries; then the city is the most similar of that country's most
populous GeoNames places (``"A Street View photo from {city}, {country}."``), and the answer
is placed at that city through the gazetteer, as the VLM predictor places a named city. Any
CLIP with both towers works: open_clip (``tiny`` built in code, named models with pretrained
weights) or a transformers ``CLIPModel`` (StreetCLIP is one), from a folder, ``s3://`` or a
hub id. A bulk job on :func:`georay.pipeline.run_bulk_job`: resumable, one row per image, error
rows for images that cannot be read.
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
from georay.protocol.predictions import Resolved, add_cells, answer_row

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

    def __init__(self, settings: dict, per_node: int = 1):
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

    def answer(self, emb: np.ndarray) -> dict:
        """The answer row of one image embedding (normalised)."""
        p_country = _softmax(LOGIT_SCALE * (self.country_text @ emb))
        j = int(np.argmax(p_country))
        places, text = self._cities(j)
        note = {"country": self.names[j], "p_country": round(float(p_country[j]), 4)}
        if text is None:  # a country without GeoNames places: placed nowhere, unanswered
            place = Resolved(self.names[j], self.codes[j], None, None, None, None)
        else:
            p_city = _softmax(LOGIT_SCALE * (text @ emb))
            c = places[int(np.argmax(p_city))]
            note.update(city=c.name, p_city=round(float(p_city.max()), 4))
            place = Resolved(self.names[j], self.codes[j], c.name, c.lat, c.lon, "city")
        return answer_row(place, self.clip.id, raw_text=json.dumps(note, ensure_ascii=False))

    def __call__(self, batch: dict[str, np.ndarray]):
        rows = np.flatnonzero(pl.ok_mask(batch))
        answers = {}
        if len(rows):
            emb = self.clip.encode_images(np.stack(pl.images_of(batch, rows)))
            found = add_cells([self.answer(e) for e in emb], self.cfg.h3_resolution)
            answers = dict(zip(rows.tolist(), found, strict=True))
        return predictions_table(rows_of(batch), answers, self.clip.id)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def zeroshot(cfg: ZeroShotConfig) -> dict:
    """Run the zero-shot baseline as a bulk job; returns (and writes) ``OUT/summary.json``."""
    from georay.geo.gazetteer import get_gazetteer
    from georay.models.clip import clip_side, encoder_id, is_open_clip

    countries = candidate_countries(cfg.countries, get_gazetteer())  # a typo fails here
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
    }
    return run_predictions_job("baseline zeroshot", cfg, identity, stages)
