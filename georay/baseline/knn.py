"""``georay baseline knn``: retrieval geolocation, the Im2GPS way (and PIGEON's refinement step).

Every query image is embedded with the encoder that embedded the gallery (the curate head's
recorded encoder), and placed where its k most similar gallery images were taken: the
similarity-weighted geodesic medoid of their locations (:mod:`georay.baseline.index`, which
also says why faiss and which index for which gallery size). The answer carries that gallery
image's country and city, so country and city metrics apply as to any other method.

Confidence (issue 20): the similarity weights of the ``--vote-neighbours`` nearest images
(softmax at ``--vote-temperature``), grouped by place (:func:`georay.baseline.index.place_votes`):
the answer's country and city probabilities and one candidate per country. A
``calibration.json`` next to the gallery (``georay calibrate --model GALLERY``) is applied with
no flag (:func:`georay.protocol.calibration.job_calibration`).

The gallery is a ``georay curate score --embeddings`` output: its ``embeddings/`` (never
recomputed) joined on ``image_id`` to where each image was taken, by default its own
``scores/`` (the scored manifest's lat, lon, country, city, split), or any table georay reads
(``--gallery-labels``: a manifest or a benchmark table such as MP-16's). The driver builds the
index once and ships it to every actor through the object store.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from georay import pipeline as pl
from georay.baseline.config import KnnConfig
from georay.baseline.index import Gallery, describe, locate, neighbour_weights, place_votes
from georay.baseline.threads import set_threads
from georay.curate.embedder import Embedder, EncoderSpec
from georay.data.storage import join_uri, read_bytes
from georay.data.vectors import build_index, normalise
from georay.errors import UserError
from georay.predict.rows import predictions_table, rows_of, run_predictions_job
from georay.protocol.calibration import Calibration, job_calibration
from georay.protocol.predictions import Resolved, add_cells, answer_row, candidate, with_confidence
from georay.runtime import init_ray

log = logging.getLogger(__name__)


def head_encoder(head: str) -> tuple[EncoderSpec, dict]:
    """The encoder a curate head recorded (weights resolved against the head's folder, as
    ``curate score`` does), and the head's info."""
    from georay.curate.head import load_head

    info = load_head(head).info
    spec = EncoderSpec(**info["encoder"]["spec"])
    if spec.weights:
        spec = dataclasses.replace(spec, weights=join_uri(head, spec.weights))
    return spec, info


def _check_gallery(gallery: str, info: dict) -> None:
    """Refuse a gallery embedded by another encoder than the head's (the curate job records
    ``model = <encoder id>+ridge:<fitted>``)."""
    try:
        job = json.loads(read_bytes(join_uri(gallery, "job.json")))
    except FileNotFoundError:
        raise UserError(f"--gallery {gallery}: no job.json; give a `georay curate score "
                        "--embeddings` output") from None  # fmt: skip
    want = f"{info['encoder']['id']}+ridge:{info['fitted']}"
    if job.get("model") != want:
        raise UserError(f"--gallery {gallery} was embedded by {job.get('model')!r}, not by "
                        f"--head's {want!r}: give the head that scored it")  # fmt: skip


def _embeddings(gallery: str) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, (n, dim) float32) of a curate output's embeddings/."""
    from georay.data.tables import read_table

    uri = join_uri(gallery, "embeddings")
    try:
        table = read_table(uri, ["image_id", "embedding"])
    except FileNotFoundError:
        raise UserError(f"--gallery {gallery}: no embeddings/; rerun `georay curate score` "
                        "with --embeddings") from None  # fmt: skip
    emb = table["embedding"].combine_chunks()
    dim = emb.type.list_size
    values = emb.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return table["image_id"].to_numpy(zero_copy_only=False), values.reshape(-1, dim)


def load_gallery(cfg: KnnConfig) -> tuple[Gallery, dict]:
    """Join the gallery's embeddings to where its images were taken and index them.

    Returns
    -------
    (Gallery, dict)
        The gallery, and what went into it (rows, rows without a location, split, index).
    """
    from georay.data.layouts import read_layout
    from georay.geo.gazetteer import get_gazetteer
    from georay.geo.places import city_of_coordinates

    ids, emb = _embeddings(cfg.gallery)
    labels_uri = cfg.gallery_labels or join_uri(cfg.gallery, "scores")
    labels, layout = read_layout(labels_uri, keep=("split",), flag="--gallery-labels")
    if cfg.gallery_split:
        if "split" not in labels.column_names:
            raise UserError(f"--gallery-split given but {labels_uri} has no 'split' column")
        labels = labels.filter(pc.fill_null(pc.equal(labels["split"], cfg.gallery_split), False))
    pos = pc.index_in(pa.array(ids, pa.string()), value_set=labels["image_id"].combine_chunks())
    matched = pc.is_valid(pos).to_numpy(zero_copy_only=False)
    rows = pc.fill_null(pos, 0).to_numpy(zero_copy_only=False).astype(np.int64)[matched]
    lat = labels["lat"].to_numpy(zero_copy_only=False).astype(float)[rows]
    lon = labels["lon"].to_numpy(zero_copy_only=False).astype(float)[rows]
    located = np.isfinite(lat) & np.isfinite(lon)
    keep = np.flatnonzero(matched)[located]
    if not len(keep):
        raise UserError(f"--gallery {cfg.gallery}: no embedded image has a location in "
                        f"{labels_uri}{' split ' + cfg.gallery_split if cfg.gallery_split else ''}")  # fmt: skip
    rows, lat, lon = rows[located], lat[located], lon[located]
    gaz = get_gazetteer()
    # Where a label has no country or city, the gazetteer's (the evaluation's convention).
    country = _column(labels, "country", rows)
    city = _column(labels, "city", rows)
    need = np.equal(country, None)
    if need.any():
        country[need] = gaz.reverse(lat[need], lon[need]).country_code
    need = np.equal(city, None)
    if need.any():
        city[need] = city_of_coordinates(gaz, lat[need], lon[need])[0]
    index = build_index(normalise(emb[keep]), cfg.index, nprobe=cfg.nprobe)
    gallery = Gallery(index, ids[keep].astype(object), lat, lon, country, city)
    info = {
        "gallery_rows": len(gallery),
        "gallery_embeddings": len(ids),
        "gallery_without_location": int(len(ids) - len(keep)),
        "gallery_split": cfg.gallery_split or None,
        "gallery_labels_layout": layout.record(),
        "index_type": type(index).__name__,
    }
    log.info("knn gallery: %s", info)
    return gallery, info


def _column(table: pa.Table, name: str, rows: np.ndarray) -> np.ndarray:
    if name not in table.column_names:
        return np.full(len(rows), None, dtype=object)
    values = table[name].to_numpy(zero_copy_only=False).astype(object)[rows]
    return np.array([v if isinstance(v, str) and v else None for v in values], dtype=object)


class KnnActor(Embedder):
    """The curate :class:`~georay.curate.embedder.Embedder` (same encoder, same preprocessing)
    plus the gallery index: pixels in, predictions rows out."""

    def __init__(
        self,
        encoder: dict,
        gallery: list,
        settings: dict,
        per_node: int = 1,
        calibration: Calibration | None = None,
    ):
        import ray

        from georay.geo.gazetteer import get_gazetteer

        cfg = KnnConfig(**settings)
        super().__init__(encoder, keep_embedding=True, threads=cfg.torch_threads,
                         per_node=per_node)  # fmt: skip
        set_threads(cfg.torch_threads, per_node)
        self.cfg = cfg
        self.gallery = Gallery.from_arrays(ray.get(gallery[0]))
        self.gaz = get_gazetteer()
        self.model = knn_model_id(EncoderSpec(**encoder), cfg)
        self.calibration = calibration

    def place(self, j: int) -> Resolved:
        """Gallery item ``j``'s place, as an answer."""
        g, code = self.gallery, self.gallery.country[j]
        name = self.gaz.country_name(code) if code else None
        return Resolved(name, code, g.city[j], float(g.lat[j]), float(g.lon[j]), "coords")

    def confidence(self, row: dict, rows: np.ndarray, w: np.ndarray, best: int) -> dict:
        """Fill the confidence fields of ``row`` from the vote of its neighbours ``rows``
        (gallery items, most similar first), weighted ``w``; the answer is column ``best``."""
        g = self.gallery
        votes = place_votes(g.country[rows], g.city[rows], w, best, self.cfg.top_k)
        cands = [candidate(self.place(rows[i]), p) for i, p in votes.candidates]
        return with_confidence(row, country=votes.country, city=votes.city, candidates=cands,
                               top_k=self.cfg.top_k, calibration=self.calibration,
                               method="knn", min_confidence=self.cfg.min_confidence)  # fmt: skip

    def answers(self, ids: np.ndarray, emb: np.ndarray) -> list[dict]:
        """Answer rows of query embeddings ``emb`` (their image ids: ``ids``)."""
        cfg, g, k = self.cfg, self.gallery, self.cfg.neighbours
        # One search for both: the vote's neighbours include the answer's.
        wide, voters = g.search(emb, max(k, cfg.vote_neighbours),
                                exclude=ids if cfg.exclude_self else None)  # fmt: skip
        votes = neighbour_weights(wide, voters >= 0, cfg.vote_temperature)
        sims, rows = wide[:, :k], voters[:, :k]
        valid = rows >= 0
        safe = np.maximum(rows, 0)
        best = locate(g.lat[safe], g.lon[safe], sims, valid, cfg.temperature)
        out = []
        for q in range(len(emb)):
            if not valid[q].any():
                place = Resolved(None, None, None, None, None, None)
                out.append(answer_row(place, self.model, answer_error="empty gallery",
                                      method="knn"))  # fmt: skip
                continue
            n = int(valid[q].sum())  # valid neighbours come first
            near = [[str(g.image_id[r]), round(float(s), 4)]
                    for r, s in zip(rows[q, :n], sims[q, :n], strict=True)]  # fmt: skip
            reasons = describe(g.image_id[rows[q, :n]], sims[q, :n], int(best[q]))
            row = answer_row(self.place(rows[q, best[q]]), self.model, reasons=reasons,
                             raw_text=json.dumps({"neighbours": near}), method="knn")  # fmt: skip
            m = int((voters[q] >= 0).sum())  # valid voters come first, the medoid among them
            out.append(self.confidence(row, voters[q, :m], votes[q, :m], int(best[q])))
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        batch = super().__call__(batch)  # adds `embedding` (zeros on error rows)
        rows = np.flatnonzero(pl.ok_mask(batch))
        answers = {}
        if len(rows):
            ids = np.asarray(batch["image_id"], dtype=object)[rows]
            found = self.answers(ids, np.asarray(batch["embedding"])[rows])
            answers = dict(zip(rows.tolist(), add_cells(found, self.cfg.h3_resolution),
                               strict=True))  # fmt: skip
        return predictions_table(rows_of(batch), answers, self.model, method="knn")


def knn_model_id(spec: EncoderSpec, cfg: KnnConfig) -> str:
    """``knn:<encoder id>:k=10,t=0.05``: the ``model`` of every row and of job.json."""
    return f"knn:{spec.id}:k={cfg.neighbours},t={cfg.temperature:g}"


def knn(cfg: KnnConfig) -> dict:
    """Run the retrieval baseline as a bulk job; returns (and writes) ``OUT/summary.json``."""
    import ray

    spec, info = head_encoder(cfg.head)
    _check_gallery(cfg.gallery, info)
    calibration, calibration_id = job_calibration(cfg.calibration, cfg.gallery)
    init_ray(cfg.address)  # the gallery goes into this cluster's object store
    gallery, gallery_info = load_gallery(cfg)
    ref = ray.put(gallery.to_arrays())  # once; every actor reads it from the object store

    def stages(ds):
        ds = pl.load_stage(ds, cfg, side=info["side"])
        return ds.map_batches(
            KnnActor,
            fn_constructor_kwargs={
                "encoder": spec.to_dict(),
                "gallery": [ref],
                "settings": dataclasses.asdict(cfg),
                "per_node": pl.actors_per_node(cfg.num_actors),
                "calibration": calibration,
            },
            batch_format="numpy",
            **pl.actor_pool_options(cfg),
        )

    identity = {
        "model": knn_model_id(spec, cfg),
        "gallery": cfg.gallery,
        "gallery_labels": cfg.gallery_labels or join_uri(cfg.gallery, "scores"),
        "gallery_split": cfg.gallery_split or None,
        "index": cfg.index,
        "exclude_self": cfg.exclude_self,
        "vote": [cfg.vote_neighbours, cfg.vote_temperature],
        "calibration": calibration_id,
        "top_k": cfg.top_k,
        "min_confidence": cfg.min_confidence,
    }
    return run_predictions_job("baseline knn", cfg, identity, stages, extra=gallery_info)
