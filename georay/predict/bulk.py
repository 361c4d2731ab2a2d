"""Bulk geotagging: ``georay predict --input DIR|s3://prefix|MANIFEST --model ARTIFACT --output OUT``.

A bulk job on the shared skeleton (:func:`georay.pipeline.run_bulk_job`)::

    rows not committed yet -> fetch + EXIF GPS + decode at the size the model sees (CPU tasks)
      -> generate + parse + place (actor pool, a GPU per actor when present) -> committed parts

Pixels are decoded in CPU tasks, so the model actors only generate while the next blocks are
read and decoded beside them. Every input row ends in exactly one committed row of
``OUT/predictions/`` (``ok`` or ``error`` with a reason); a rerun with the same ``--output``
skips committed rows, and an output written by another model or input is refused.
``OUT/summary.json`` has the counts.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import numpy as np
import pyarrow as pa

from georay import pipeline as pl
from georay.models.vlm import load_processor, processor_max_pixels
from georay.pipeline.stages import images_of
from georay.predict.config import ModelSettings, PredictConfig
from georay.protocol.predictions import PREDICTIONS_SCHEMA, error_row

log = logging.getLogger(__name__)

SKIPPED_EXIF = "skipped: image has EXIF GPS"
ROW_KEYS = ("image_id", "uri", "status", "error", "exif_lat", "exif_lon")


def finish_row(row: dict, answer: dict | None, model: str) -> dict:
    """The predictions row of one input row: its answer, or why there is none, plus its ids."""
    if answer is None and row["status"] != pl.OK:
        answer = error_row(str(row["error"]), model)
    elif answer is None:  # skipped: its position is already known from EXIF
        answer = error_row("", model) | {"status": pl.OK, "error": None}
        answer["answer_error"] = SKIPPED_EXIF
    lat, lon = row.get("exif_lat"), row.get("exif_lon")
    return answer | {
        "image_id": str(row["image_id"]),
        "uri": str(row["uri"]),
        "exif_lat": None if lat is None or np.isnan(lat) else float(lat),
        "exif_lon": None if lon is None or np.isnan(lon) else float(lon),
    }


class PredictActor:
    """A Ray Data actor holding one :class:`Predictor` (the HF engine); batches in, rows out."""

    def __init__(self, settings: dict):
        from georay.predict.predictor import Predictor

        self.predictor = Predictor(ModelSettings(**settings))

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["image_id"])
        skip = np.asarray(batch.get("skip", np.zeros(n, bool)), dtype=bool)
        todo = np.flatnonzero(pl.ok_mask(batch) & ~skip)
        answers = dict(zip(todo.tolist(), self.predictor.predict(images_of(batch, todo)),
                           strict=True))  # fmt: skip
        rows = [{k: batch[k][i] for k in ROW_KEYS} for i in range(n)]
        out = [
            finish_row(row, answers.get(i), self.predictor.model_id) for i, row in enumerate(rows)
        ]
        return pa.Table.from_pylist(out, schema=PREDICTIONS_SCHEMA)


def summarize(writer: pl.PartWriter) -> dict:
    """``answered`` and ``skipped_exif`` counts of the committed prediction rows."""
    table = writer.read(["answered", "answer_error"])
    answered = table["answered"].to_pylist() if table.num_rows else []
    notes = table["answer_error"].to_pylist() if table.num_rows else []
    return {
        "answered": sum(bool(a) for a in answered),
        "skipped_exif": sum(note == SKIPPED_EXIF for note in notes),
    }


def predict(cfg: PredictConfig) -> dict:
    """Run the bulk job; returns (and writes to ``OUT/summary.json``) the counts.

    Returns
    -------
    dict
        The skeleton's counts (``rows_in``, ``rows_out``, ``ok``, ``error``, ``error_reasons``,
        ``rows_this_run``, ``elapsed_s``, ``rows_per_s``) plus ``answered`` and ``skipped_exif``.
    """

    model = None
    if cfg.engine == "vllm":
        from georay.predict.vllm_engine import resolve_model

        # In the driver, before Ray and the job record: exports an artifact once, and refuses
        # what vLLM cannot load in seconds rather than in a restarting engine actor.
        model = resolve_model(cfg)

    def stages(ds):
        if model is not None:
            from georay.predict.vllm_bulk import vllm_stages

            ds = pl.load_stage(ds, cfg, max_pixels=model.max_pixels, exif_gps=True,
                               skip_exif_gps=cfg.skip_exif_gps)  # fmt: skip
            return vllm_stages(ds, cfg, model)
        # Decoded at the size the model sees (the processor's cap), as in training and serving:
        # the same pixels whichever path an image takes.
        max_pixels = cfg.max_pixels or processor_max_pixels(load_processor(cfg.model))
        ds = pl.load_stage(
            ds, cfg, max_pixels=max_pixels, exif_gps=True, skip_exif_gps=cfg.skip_exif_gps
        )
        return ds.map_batches(
            PredictActor,
            fn_constructor_kwargs={"settings": asdict(ModelSettings.of(asdict(cfg)))},
            batch_format="numpy",
            **pl.actor_pool_options(cfg),
        )

    return pl.run_bulk_job(
        pl.BulkJob(
            name="predict",
            settings=cfg,
            identity={"model": cfg.model, "question": cfg.question, "engine": cfg.engine},
            tables=("predictions",),
            outputs=lambda _: {"predictions": PREDICTIONS_SCHEMA},
            stages=stages,
            summarize=summarize,
        )
    )


__all__ = ["PREDICTIONS_SCHEMA", "PredictConfig", "predict", "summarize"]
