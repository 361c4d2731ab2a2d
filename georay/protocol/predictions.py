"""The predictions table: what every geotagging job writes and the API answers (DESIGN contract).

One schema, used by the bulk job (its Parquet parts), the baselines, the online API (the fields
it answers with) and evaluation (the columns it reads). Beyond the DESIGN contract it carries
``country_code`` (ISO alpha-2 of the predicted country), ``resolution`` (which name placed the
point: ``city``, ``country`` or ``coords``), ``answer_error`` (why an ``ok`` row is not answered:
a refusal, an unknown place) and the photo's own EXIF GPS (``exif_lat``, ``exif_lon``).
"""

from __future__ import annotations

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
