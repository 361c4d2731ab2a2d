"""``georay predict --gallery G`` and ``--gallery-from-exif``: the fused method as a bulk job.

The ``predict`` command runs :func:`predict`: without a gallery it is the VLM alone
(:func:`georay.predict.bulk.predict`); with one, every photo is placed by
:mod:`georay.archive.fusion`::

    rows not committed yet -> fetch + EXIF GPS + decode at the VLM's size (CPU tasks)
      -> one actor: the VLM's answer (and candidates); the photo decoded again at the encoder's
         side, embedded by the curate head's encoder, its k nearest gallery images (faiss);
         fusion -> committed parts (``method = fused``)

One actor pool holds both models (the VLM and the small CLIP encoder): two pools on a small
node would each take a CPU and starve the decode tasks (DESIGN, toolchain facts).

``--gallery-from-exif``: a first pass reads the input's EXIF GPS and embeds the photos that
have it (cached in ``OUT/gallery/exif.parquet``, so a rerun does not embed them again); those
photos become the gallery, and in the bulk job their rows are placed at their EXIF point
(``method = exif``, never asked), the rest fused with that gallery. Every input row once.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from georay import pipeline as pl
from georay.archive.fusion import Fusion, Neighbours, fuse, vlm_candidates
from georay.baseline.index import Gallery
from georay.baseline.knn import _check_gallery, head_encoder, load_gallery
from georay.curate.embedder import Embedder, EncoderSpec
from georay.data.storage import join_uri
from georay.data.tables import is_folder
from georay.errors import UserError
from georay.pipeline.stages import images_of
from georay.predict.config import ModelSettings, PredictConfig
from georay.predict.rows import predictions_table, rows_of, run_predictions_job
from georay.protocol.predictions import (
    DEFAULT_TOP_K,
    Resolved,
    add_cells,
    answer_row,
    candidate,
    with_confidence,
)
from georay.runtime import init_ray

log = logging.getLogger(__name__)

EXIF_GALLERY = "gallery/exif.parquet"


def predict(cfg: PredictConfig) -> dict:
    """``georay predict``: the VLM alone, or fused with a gallery when one is given."""
    if not cfg.fused:
        from georay.predict.bulk import predict as vlm_alone

        return vlm_alone(cfg)
    return predict_fused(cfg)


def fused_model_id(cfg: PredictConfig, spec: EncoderSpec) -> str:
    """``fused:<model>+knn:<encoder>:k=5,t=0.05,vote=20/0.01,scene=0.95,w=1/1``: the ``model``
    of every fused row."""
    return (f"fused:{cfg.model}+knn:{spec.id}:k={cfg.neighbours},t={cfg.temperature:g},"
            f"vote={cfg.vote_neighbours}/{cfg.vote_temperature:g},"
            f"scene={cfg.same_scene_similarity:g},"
            f"w={cfg.fusion_vlm_weight:g}/{cfg.fusion_knn_weight:g}")  # fmt: skip


def fusion_of(cfg: PredictConfig) -> Fusion:
    """The :class:`Fusion` settings of a ``georay predict`` config."""
    return Fusion(vlm=cfg.fusion_vlm_weight, knn=cfg.fusion_knn_weight,
                  neighbours=cfg.neighbours, temperature=cfg.temperature,
                  vote_temperature=cfg.vote_temperature,
                  same_scene=cfg.same_scene_similarity)  # fmt: skip


def predict_fused(cfg: PredictConfig) -> dict:
    """Run the fused bulk job; returns (and writes) ``OUT/summary.json``."""
    import ray

    from georay.models.vlm import load_processor, processor_max_pixels

    spec, info = head_encoder(cfg.head)
    if cfg.gallery:  # a bad gallery is refused before Ray starts
        _check_gallery(cfg.gallery, info)
        if not is_folder(join_uri(cfg.gallery, "embeddings")):
            raise UserError(f"--gallery {cfg.gallery}: no embeddings/; rerun `georay curate "
                            "score` with --embeddings")  # fmt: skip
        gallery, gallery_info = load_gallery(cfg)
        init_ray(cfg.address)
    else:
        init_ray(cfg.address)
        gallery, gallery_info = exif_gallery(cfg, spec, info["side"])
    ref = ray.put(gallery.to_arrays())
    load = {"side": info["side"], "max_image_pixels": cfg.max_image_pixels,
            "max_file_bytes": cfg.max_file_bytes, "fetch": cfg.fetch_policy()}  # fmt: skip

    def stages(ds):
        max_pixels = cfg.max_pixels or processor_max_pixels(load_processor(cfg.model))
        ds = pl.load_stage(ds, cfg, max_pixels=max_pixels, exif_gps=True,
                           skip_exif_gps=cfg.skip_exif_gps or cfg.gallery_from_exif)  # fmt: skip
        return ds.map_batches(
            FusedActor,
            fn_constructor_kwargs={
                "settings": dataclasses.asdict(cfg),
                "encoder": spec.to_dict(),
                "gallery": [ref],
                "load": load,
                "per_node": pl.actors_per_node(cfg.num_actors),
            },
            batch_format="numpy",
            **pl.actor_pool_options(cfg),
        )

    identity = {
        "model": fused_model_id(cfg, spec),
        "question": cfg.question,
        "engine": cfg.engine,
        "gallery": cfg.gallery or "exif",
        "gallery_split": cfg.gallery_split or None,
        "head": cfg.head,
    }
    return run_predictions_job("predict", cfg, identity, stages, extra=gallery_info)


class FusedActor:
    """The VLM (:class:`~georay.predict.predictor.Predictor`), the gallery encoder
    (:class:`~georay.curate.embedder.Embedder`, decoding at its own side) and the gallery:
    decoded rows in, fused predictions rows out."""

    def __init__(self, settings: dict, encoder: dict, gallery: list, load: dict, per_node: int):
        import ray
        import torch

        from georay.geo.gazetteer import get_gazetteer
        from georay.predict.predictor import Predictor

        names = {f.name for f in dataclasses.fields(PredictConfig) if f.init}
        self.cfg = PredictConfig(**{k: v for k, v in settings.items() if k in names})
        self.predictor = Predictor(ModelSettings.of(settings))
        # The encoder runs on the VLM's torch threads, as `predict` alone gives them (Ray's, from
        # the actor's CPUs): left to itself the Embedder takes all the node's CPUs per actor,
        # and the VLM's generate then ran at 3x the time per photo (BENCHMARKS "archive").
        self.embedder = Embedder(encoder, keep_embedding=True, per_node=per_node, decode=load,
                                 threads=torch.get_num_threads())  # fmt: skip
        self.gallery = Gallery.from_arrays(ray.get(gallery[0]))
        self.fusion = fusion_of(self.cfg)
        self.gaz = get_gazetteer()
        self.model = fused_model_id(self.cfg, EncoderSpec(**encoder))

    def neighbours(self, batch: dict[str, np.ndarray], todo: np.ndarray) -> list[Neighbours]:
        """Each ``todo`` row's gallery neighbours (none where its encoder decode failed)."""
        g, n = self.gallery, len(todo)
        ids = np.asarray(batch["image_id"], dtype=object)[todo]
        sub = {"image_id": ids, "uri": np.asarray(batch["uri"], dtype=object)[todo],
               "status": np.array([pl.OK] * n, dtype=object),
               "error": np.array([None] * n, dtype=object)}  # fmt: skip
        embedded = self.embedder(sub)
        found = [Neighbours(*(np.zeros(0, t) for t in (object, float, float, float, object,
                                                       object)))] * n  # fmt: skip
        if "embedding" not in embedded:
            return found
        exclude = ids if self.cfg.exclude_self else None
        k = max(self.cfg.neighbours, self.cfg.vote_neighbours)  # the vote's include the place's
        sims, rows = g.search(np.asarray(embedded["embedding"]), k, exclude)
        ok = pl.ok_mask(embedded)
        for q in np.flatnonzero(ok):
            r = rows[q][rows[q] >= 0]
            found[q] = Neighbours(g.image_id[r], sims[q][: len(r)], g.lat[r], g.lon[r],
                                  g.country[r], g.city[r])  # fmt: skip
        return found

    def answer(self, vlm: dict, nb: Neighbours) -> dict:
        """The fused row of one photo from the VLM's row and its neighbours."""
        if vlm.get("status") != pl.OK:
            return vlm | {"method": "fused", "model": self.model}
        fused = fuse(vlm_candidates(vlm), nb, self.fusion)
        if fused.country_code is None:  # neither side named a place: the VLM's unanswered row
            return vlm | {"method": "fused", "model": self.model}
        places = []
        for code, p in fused.probabilities.items():
            where = fused.places[code]
            level = "coords" if where["how"] == "scene" else "city" if where["city"] else "country"
            places.append((Resolved(self.gaz.country_name(code), code, where["city"],
                                    where["lat"], where["lon"], level), p))  # fmt: skip
        best, p_best = places[0]
        near = ", ".join(f"{i} {c}/{t} ({s:.3f})" for i, c, t, s in
                         zip(nb.image_id[:3], nb.country[:3], nb.city[:3], nb.sims[:3],
                             strict=False))  # fmt: skip
        reasons = (f"fused ({fused.how}): VLM {vlm.get('country_code')}/{vlm.get('city')}; "
                   f"nearest: {near or 'none'}. {vlm.get('reasons') or ''}").strip()  # fmt: skip
        row = answer_row(best, self.model, raw_text=vlm.get("raw_text"), reasons=reasons,
                         method="fused")  # fmt: skip
        cands = [candidate(place, p) for place, p in places]
        return with_confidence(row, country=p_best, candidates=cands, top_k=DEFAULT_TOP_K,
                               min_confidence=0.0)  # fmt: skip

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["image_id"])
        skip = np.asarray(batch.get("skip", np.zeros(n, bool)), dtype=bool)
        todo = np.flatnonzero(pl.ok_mask(batch) & ~skip)
        answers: dict[int, dict] = {}
        if len(todo):
            vlm = self.predictor.predict(images_of(batch, todo))
            nbs = self.neighbours(batch, todo)
            found = [self.answer(v, nb) for v, nb in zip(vlm, nbs, strict=True)]
            found = add_cells(found, self.cfg.h3_resolution)
            answers = dict(zip(todo.tolist(), found, strict=True))
        return predictions_table(rows_of(batch), answers, self.model, method="fused",
                                 h3_resolution=self.cfg.h3_resolution)  # fmt: skip


def _with_exif_only(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ok rows of a loaded batch whose EXIF has GPS."""
    keep = pl.ok_mask(batch) & np.isfinite(np.asarray(batch["exif_lat"], dtype=float))
    return {k: np.asarray(v)[keep] for k, v in batch.items()}


def exif_gallery(cfg: PredictConfig, spec: EncoderSpec, side: int) -> tuple[Gallery, dict]:
    """The gallery of the input's own photos with EXIF GPS: embedded once (then cached in
    ``OUT/gallery/exif.parquet``), placed at their EXIF point."""
    from georay.data.tables import read_table
    from georay.pipeline.inputs import read_input

    cache = join_uri(cfg.output, EXIF_GALLERY)
    try:
        table = read_table(cache)
        cached = True
    except (FileNotFoundError, UserError):
        read = read_input(cfg.input, block_rows=cfg.block_rows, columns=cfg.input_columns,
                          image_root=cfg.image_root)  # fmt: skip
        ds = pl.load_stage(read.ds, cfg, side=side, exif_gps=True)
        ds = ds.map_batches(_with_exif_only, batch_format="numpy").map_batches(
            Embedder,
            fn_constructor_kwargs={"encoder": spec.to_dict(), "keep_embedding": True,
                                   "per_node": pl.actors_per_node(cfg.num_actors)},
            batch_format="numpy",
            **pl.actor_pool_options(cfg),
        )  # fmt: skip
        table = _exif_table(ds)
        _write_atomic(table, cache)
        cached = False
    if not table.num_rows:
        raise UserError(f"--gallery-from-exif: no photo of {cfg.input} has EXIF GPS")
    gallery = gallery_of_points(table, cfg.index, cfg.nprobe)
    info = {"gallery_rows": len(gallery), "gallery_from_exif": True,
            "gallery_cached": cached, "index_type": type(gallery.index).__name__}  # fmt: skip
    log.info("exif gallery: %s", info)
    return gallery, info


def _exif_table(ds) -> pa.Table:
    parts = []
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        if not len(batch["image_id"]) or "embedding" not in batch:
            continue
        emb = np.asarray(batch["embedding"], dtype=np.float32)
        parts.append(pa.table({
            "image_id": pa.array(batch["image_id"].astype(str)),
            "lat": pa.array(batch["exif_lat"], pa.float64()),
            "lon": pa.array(batch["exif_lon"], pa.float64()),
            "embedding": pa.FixedSizeListArray.from_arrays(emb.reshape(-1), emb.shape[1]),
        }))  # fmt: skip
    if not parts:
        return pa.table({"image_id": pa.array([], pa.string())})
    return pa.concat_tables(parts)


def _write_atomic(table: pa.Table, uri: str) -> None:
    import io

    import pyarrow.parquet as pq

    from georay.data.storage import write_bytes

    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes(uri, buf.getvalue())  # one put (S3) / one write after the whole pass


def gallery_of_points(table: pa.Table, index: str, nprobe: int) -> Gallery:
    """A :class:`Gallery` of ``image_id, lat, lon, embedding`` rows, the country and city of
    each point from the gazetteer (the evaluation's convention)."""
    from georay.data.vectors import build_index, normalise
    from georay.geo.gazetteer import get_gazetteer
    from georay.geo.places import city_of_coordinates

    emb = table["embedding"].combine_chunks()
    x = emb.values.to_numpy(zero_copy_only=False).reshape(-1, emb.type.list_size)
    lat = pc.fill_null(table["lat"], np.nan).to_numpy(zero_copy_only=False)
    lon = pc.fill_null(table["lon"], np.nan).to_numpy(zero_copy_only=False)
    gaz = get_gazetteer()
    city, country = city_of_coordinates(gaz, lat, lon)
    missing = np.equal(country, None)
    if missing.any():
        country[missing] = gaz.reverse(lat[missing], lon[missing]).country_code
    ids = table["image_id"].to_numpy(zero_copy_only=False).astype(object)
    return Gallery(build_index(normalise(x), index, nprobe=nprobe), ids, lat, lon, country, city)
