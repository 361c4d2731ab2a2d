"""The predictions table: what every geotagging job writes and the API answers (DESIGN contract).

One schema, used by the bulk job (its Parquet parts), the baselines, the online API (the fields
it answers with) and evaluation (the columns it reads). Beyond the DESIGN contract it carries
``country_code`` (ISO alpha-2 of the predicted country), ``resolution`` (which name placed the
point: ``city``, ``country`` or ``coords``), ``answer_error`` (why an ``ok`` row is not answered:
a refusal, an unknown place) and the photo's own EXIF GPS (``exif_lat``, ``exif_lon``).

Confidence (issue 20), the same for every method: ``country_confidence`` and ``city_confidence``
(the probability that the answered country / city is right, in [0, 1]; null on error rows and
where a method gives none), ``candidates`` (the top-k places, each ``{country, country_code,
city, lat, lon, probability}``, the answer first, then most probable first; ``probability`` is
that of the place at the finest level the candidate names: its city when it names one, else its
country, so the candidates of a row are disjoint places and their probabilities sum to <= 1) and
``abstained`` (the country confidence is under the job's minimum; the row keeps its answer).
A producer fills them with :func:`with_confidence` after :func:`answer_row` (which also applies
the model's calibration, :mod:`georay.protocol.calibration`).

Every predictor (the VLM, the zero-shot and retrieval baselines) turns its answer into a
:class:`Resolved` place and its row with :func:`answer_row` and :func:`add_cells`, so every
method's rows are placed and cell-indexed by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from georay.protocol.calibration import Calibration

# One place in a row's top-k (DESIGN predictions contract, issue 20).
CANDIDATE_TYPE = pa.struct(
    [
        ("country", pa.string()),
        ("country_code", pa.string()),
        ("city", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("probability", pa.float64()),
    ]
)
CANDIDATE_FIELDS = tuple(f.name for f in CANDIDATE_TYPE)
# What a row without scores carries: nothing known, nothing abstained.
NO_CONFIDENCE = {
    "country_confidence": None,
    "city_confidence": None,
    "candidates": None,
    "abstained": False,
}
DEFAULT_TOP_K = 5

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
        ("method", pa.string()),
        ("exif_lat", pa.float64()),
        ("exif_lon", pa.float64()),
        ("country_confidence", pa.float64()),
        ("city_confidence", pa.float64()),
        ("candidates", pa.list_(CANDIDATE_TYPE)),
        ("abstained", pa.bool_()),
        # WKB point of (lon, lat), null without a point: GeoParquet (georay.protocol.geoparquet)
        ("geometry", pa.binary()),
    ]
)
# How a row was placed (DESIGN predictions contract, issue 21).
METHODS = ("exif", "vlm", "knn", "zeroshot", "fused")
# What a predictor fills in for one image (the rest comes from the input row).
ANSWER_FIELDS = tuple(
    n
    for n in PREDICTIONS_SCHEMA.names
    if n not in ("image_id", "uri", "exif_lat", "exif_lon", "geometry")
)


def _method(method: str | None) -> str | None:
    if method is not None and method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def error_row(error: str, model: str, method: str | None = None) -> dict:
    """The answer fields of an image that could not be predicted (``method``: the one that
    failed, when known)."""
    row = dict.fromkeys(ANSWER_FIELDS)
    row.update(answered=False, status="error", error=error, model=model, method=_method(method))
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
    method: str | None = None,
) -> dict:
    """The answer fields (:data:`ANSWER_FIELDS`) of an ``ok`` row placed at ``place``.

    ``answered`` is the predictor's own verdict (a parsed answer that named a place); a place
    without a point is never answered. ``h3`` is filled by :func:`add_cells`. ``method`` (one
    of :data:`METHODS`) says how the row was placed.
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
        "method": _method(method),
        **NO_CONFIDENCE,
    }


def _probability(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    p = float(value)
    if not 0.0 <= p <= 1.0:  # NaN fails too
        raise ValueError(f"{what} must be a probability in [0, 1], got {value!r}")
    return p


def candidate(place: Resolved, probability: float) -> dict:
    """One ``candidates`` entry: ``place`` with its probability (of its city when it names
    one, else of its country)."""
    return {
        "country": place.country,
        "country_code": place.country_code,
        "city": place.city,
        "lat": place.lat,
        "lon": place.lon,
        "probability": _probability(probability, "candidate probability"),
    }


def is_abstained(confidence: float | None, min_confidence: float) -> bool:
    """True where a country confidence is under ``min_confidence``.

    A row without a confidence never abstains: the method cannot say, and dropping every row
    of a method that gives no scores would be silent data loss (evaluation counts such rows).
    """
    return confidence is not None and confidence < min_confidence


def abstain(row: dict, min_confidence: float) -> dict:
    """Set ``abstained`` of one row (in place, returned) from its ``country_confidence``.

    An error row stays null; an ``ok`` row abstains when its confidence is under
    ``min_confidence`` (0, the default of every job, never abstains) and keeps its answer and
    candidates either way: one row per input.
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
    if row.get("status") != "ok":
        row["abstained"] = None
        return row
    row["abstained"] = is_abstained(row.get("country_confidence"), min_confidence)
    return row


def with_confidence(
    row: dict,
    *,
    country: float | None,
    city: float | None = None,
    candidates: list[dict] | None = None,
    top_k: int = DEFAULT_TOP_K,
    calibration: Calibration | None = None,
    method: str = "",
    min_confidence: float = 0.0,
) -> dict:
    """Fill the confidence fields of an ``ok`` row made by :func:`answer_row` (in place,
    returned).

    Parameters
    ----------
    row : dict
        An :func:`answer_row` row (an error row is left as it is: its fields stay null).
    country, city : float or None
        Probability that the answered country / city is right (None: the method has none).
    candidates : list of dict, optional
        :func:`candidate` entries, the answer first; the rest are ordered most probable first
        and cut to ``top_k`` places in all.
    top_k : int
        Most places kept in ``candidates``.
    calibration : Calibration, optional
        The model's calibration (:func:`georay.protocol.calibration.load_calibration`): the
        raw probabilities given here are calibrated before abstention is decided.
    method : str
        The method whose maps to use (a file with one method's maps serves any name).
    min_confidence : float
        Rows whose (calibrated) country confidence is under this abstain (:func:`abstain`).

    Raises
    ------
    ValueError
        A probability outside [0, 1], or candidates whose probabilities sum to more than 1.
    """
    if row.get("status") != "ok":
        return abstain(row, min_confidence)
    row["country_confidence"] = _probability(country, "country_confidence")
    row["city_confidence"] = _probability(city, "city_confidence")
    if candidates is not None:
        head, rest = candidates[:1], sorted(candidates[1:], key=lambda c: -c["probability"])
        kept = [dict(c) for c in (head + rest)[: max(top_k, 1)]]
        total = sum(_probability(c["probability"], "candidate probability") for c in kept)
        if total > 1.0 + 1e-6:
            raise ValueError(f"candidate probabilities sum to {total:.6f} > 1")
        candidates = kept
    row["candidates"] = candidates
    if calibration is not None:
        calibration.apply_row(row, method)
    return abstain(row, min_confidence)


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
