"""The predictions table: what every geotagging job writes and the API answers (DESIGN contract).

One schema, used by the bulk job (its Parquet parts), the baselines, the online API (the fields
it answers with) and evaluation (the columns it reads). Beyond the DESIGN contract it carries
``country_code`` (ISO alpha-2 of the predicted country), ``resolution`` (which name placed the
point: ``city``, ``country`` or ``coords``), ``answer_error`` (why an ``ok`` row is not answered:
a refusal, an unknown place) and the photo's own EXIF GPS (``exif_lat``, ``exif_lon``).

Every predictor (the VLM, the zero-shot and retrieval baselines) turns its answer into a
:class:`Resolved` place and its row with :func:`answer_row` and :func:`add_cells`, so every
method's rows are placed and cell-indexed by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("uri", pa.string()),
        ("country", pa.string()),
        ("country_code", pa.string()),
        ("city", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("h3", pa.string()),
        ("reasons", pa.string()),
        ("raw_text", pa.string()),
        ("answered", pa.bool_()),
        ("resolution", pa.string()),
        ("answer_error", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("model", pa.string()),
        ("exif_lat", pa.float64()),
        ("exif_lon", pa.float64()),
    ]
)
# What a predictor fills in for one image (the rest comes from the input row).
ANSWER_FIELDS = tuple(
    n for n in PREDICTIONS_SCHEMA.names if n not in ("image_id", "uri", "exif_lat", "exif_lon")
)


def error_row(error: str, model: str) -> dict:
    """The answer fields of an image that could not be predicted."""
    row = dict.fromkeys(ANSWER_FIELDS)
    row.update(answered=False, status="error", error=error, model=model)
    return row


@dataclass(frozen=True)
class Resolved:
    """Where an answer points. ``level`` says what placed the point: ``"city"``,
    ``"country"`` (the country's place), ``"coords"`` (coordinates as answered) or None."""

    country: str | None
    country_code: str | None
    city: str | None
    lat: float | None
    lon: float | None
    level: str | None

    @property
    def usable(self) -> bool:
        return self.lat is not None and self.lon is not None


def answer_row(
    place: Resolved,
    model: str,
    *,
    raw_text: str | None = None,
    reasons: str | None = None,
    answered: bool = True,
    answer_error: str | None = None,
) -> dict:
    """The answer fields (:data:`ANSWER_FIELDS`) of an ``ok`` row placed at ``place``.

    ``answered`` is the predictor's own verdict (a parsed answer that named a place); a place
    without a point is never answered. ``h3`` is filled by :func:`add_cells`.
    """
    return {
        "country": place.country,
        "country_code": place.country_code,
        "city": place.city,
        "lat": place.lat,
        "lon": place.lon,
        "h3": None,
        "reasons": reasons,
        "raw_text": raw_text,
        "answered": answered and place.usable,
        "resolution": place.level,
        # Why an ok row is not answered (refusal, unknown place): kept apart from `error`,
        # which is null on every ok row as in the other contracts.
        "answer_error": answer_error or (None if place.usable else "place not found"),
        "status": "ok",
        "error": None,
        "model": model,
    }


def add_cells(rows: list[dict], h3_resolution: int) -> list[dict]:
    """Set ``h3`` of every row from its ``lat``/``lon`` (None where it has no point)."""
    from georay.geo.cells import latlng_to_cells

    if not rows:
        return rows
    lat = np.array([np.nan if r["lat"] is None else r["lat"] for r in rows], dtype=float)
    lon = np.array([np.nan if r["lon"] is None else r["lon"] for r in rows], dtype=float)
    for row, cell in zip(rows, latlng_to_cells(lat, lon, h3_resolution), strict=True):
        row["h3"] = cell
    return rows
