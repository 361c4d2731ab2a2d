"""Answers -> predictions rows, and the predictions job: what every geotagging method shares.

The VLM on either engine and both baselines answer the ``ok`` rows of a batch (the answer fields
of :mod:`georay.protocol.predictions`, cells added); :func:`predictions_table` adds each input
row's ids and EXIF GPS, and gives every row without an answer its reason. :func:`run_predictions_job`
is the bulk job that writes them to ``OUT/predictions/`` with ``OUT/summary.json``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from georay import pipeline as pl
from georay.protocol.predictions import PREDICTIONS_SCHEMA, error_row

SKIPPED_EXIF = "skipped: image has EXIF GPS"
ROW_KEYS = ("image_id", "uri", "status", "error", "exif_lat", "exif_lon")


def _coordinate(value) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def finish_row(row: dict, answer: dict | None, model: str) -> dict:
    """The predictions row of one input row: its answer, or why there is none, plus its ids."""
    if answer is None and row["status"] != pl.OK:
        answer = error_row(str(row["error"]), model)
    elif answer is None:  # skipped: its position is already known from EXIF
        answer = error_row("", model) | {"status": pl.OK, "error": None}
        answer["answer_error"] = SKIPPED_EXIF
    return answer | {
        "image_id": str(row["image_id"]),
        "uri": str(row["uri"]),
        "exif_lat": _coordinate(row.get("exif_lat")),
        "exif_lon": _coordinate(row.get("exif_lon")),
    }


def rows_of(batch: dict[str, np.ndarray]) -> list[dict]:
    """The input rows of a numpy batch (the :data:`ROW_KEYS` it has)."""
    keys = [k for k in ROW_KEYS if k in batch]
    return [{k: batch[k][i] for k in keys} for i in range(len(batch["image_id"]))]


def predictions_table(rows: list[dict], answers: dict[int, dict], model: str) -> pa.Table:
    """Predictions rows of input ``rows``: ``answers`` (row index -> answer fields, cells
    added) for the rows answered, the row's reason for every other one (:func:`finish_row`)."""
    out = [finish_row(row, answers.get(i), model) for i, row in enumerate(rows)]
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


def run_predictions_job(
    name: str,
    cfg: pl.BulkSettings,
    identity: dict,
    stages: Callable,
    extra: dict | None = None,
) -> dict:
    """A bulk job writing ``OUT/predictions/`` (the predictions schema) and ``OUT/summary.json``.

    Returns
    -------
    dict
        The skeleton's counts (``rows_in``, ``rows_out``, ``ok``, ``error``, ``error_reasons``,
        ``rows_this_run``, ``elapsed_s``, ``rows_per_s``) plus :func:`summarize`'s and ``extra``.
    """
    return pl.run_bulk_job(
        pl.BulkJob(
            name=name,
            settings=cfg,
            identity=identity,
            tables=("predictions",),
            outputs=lambda _: {"predictions": PREDICTIONS_SCHEMA},
            stages=stages,
            summarize=lambda writer: {**summarize(writer), **(extra or {})},
        )
    )
