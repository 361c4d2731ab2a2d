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
from georay.protocol.geoparquet import with_geometry
from georay.protocol.predictions import (
    PREDICTIONS_SCHEMA,
    Resolved,
    add_cells,
    answer_row,
    error_row,
)

SKIPPED_EXIF = "skipped: image has EXIF GPS"
ROW_KEYS = ("image_id", "uri", "status", "error", "exif_lat", "exif_lon")
EXIF_MODEL = "exif"  # the `model` of a row placed by its own EXIF GPS


def _coordinate(value) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def exif_answer(lat: float, lon: float, h3_resolution: int, gazetteer=None) -> dict:
    """The answer fields of a photo placed by its own EXIF GPS (``method = exif``): the EXIF
    point as it is, with the gazetteer's country and city of that point (the evaluation's
    convention for coordinates), certain (confidence 1)."""
    from georay.geo.places import city_of_coordinates

    if gazetteer is None:
        from georay.geo.gazetteer import get_gazetteer

        gazetteer = get_gazetteer()
    city, code = city_of_coordinates(gazetteer, np.array([lat]), np.array([lon]))
    code = code[0] or gazetteer.reverse(lat, lon).country_code[0]
    name = gazetteer.country_name(code) if code else None
    place = Resolved(name, code, city[0], float(lat), float(lon), "coords")
    row = answer_row(place, EXIF_MODEL, method="exif", reasons="EXIF GPS of the photo")
    row.update(country_confidence=1.0, city_confidence=1.0 if city[0] else None)
    return add_cells([row], h3_resolution)[0]


def finish_row(
    row: dict, answer: dict | None, model: str, method: str | None, h3_resolution: int
) -> dict:
    """The predictions row of one input row: its answer, or why there is none, plus its ids.

    An ``ok`` row without an answer was skipped for its EXIF GPS: it is placed there
    (:func:`exif_answer`).
    """
    lat, lon = _coordinate(row.get("exif_lat")), _coordinate(row.get("exif_lon"))
    if answer is None and row["status"] != pl.OK:
        answer = error_row(str(row["error"]), model, method)
    elif answer is None and lat is not None and lon is not None:
        answer = exif_answer(lat, lon, h3_resolution)
    elif answer is None:  # skipped without a point: nothing can place it
        answer = error_row("", model, method) | {"status": pl.OK, "error": None}
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


def predictions_table(
    rows: list[dict],
    answers: dict[int, dict],
    model: str,
    *,
    method: str | None = None,
    h3_resolution: int = 5,
) -> pa.Table:
    """Predictions rows of input ``rows``: ``answers`` (row index -> answer fields, cells
    added) for the rows answered, the row's reason for every other one (:func:`finish_row`).

    ``method`` is recorded on the error rows (which method failed); ``h3_resolution`` is that of
    the rows placed by their EXIF GPS.
    """
    out = [finish_row(row, answers.get(i), model, method, h3_resolution)
           for i, row in enumerate(rows)]  # fmt: skip
    return pa.Table.from_pylist(out, schema=PREDICTIONS_SCHEMA)


def summarize(writer: pl.PartWriter) -> dict:
    """``answered``, ``skipped_exif`` (rows placed by their EXIF GPS, not asked) and rows per
    ``method`` of the committed prediction rows."""
    table = writer.read(["answered", "method"])
    answered = table["answered"].to_pylist() if table.num_rows else []
    methods = table["method"].to_pylist() if table.num_rows else []
    per_method: dict[str, int] = {}
    for m in methods:
        per_method[m or "none"] = per_method.get(m or "none", 0) + 1
    return {
        "answered": sum(bool(a) for a in answered),
        "skipped_exif": per_method.get("exif", 0),
        "methods": per_method,
    }


def geoparquet_parts(parts: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """The predictions part as GeoParquet (:func:`georay.protocol.geoparquet.with_geometry`)."""
    return {**parts, "predictions": with_geometry(parts["predictions"])}


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
            finish=geoparquet_parts,
            summarize=lambda writer: {**summarize(writer), **(extra or {})},
        )
    )
