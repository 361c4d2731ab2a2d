"""From generated text to a predictions row: parse the answer, place it, add its H3 cell.

Every engine (transformers' ``generate``, vLLM in bulk or online) ends here, so a model's words
become the same row whichever engine produced them. No torch, no Ray.
"""

from __future__ import annotations

import numpy as np

from georay.geo.cells import latlng_to_cells
from georay.predict.resolve import resolve_answer
from georay.protocol.answers import parse_answer
from georay.protocol.predictions import error_row


def rows_from_texts(
    texts: list[str | Exception], *, h3_resolution: int, model_id: str, gazetteer=None
) -> list[dict]:
    """Parse, resolve and cell-index generated texts (an Exception gives an error row).

    Parameters
    ----------
    texts
        What the model wrote for each image, or the exception generating it raised.
    h3_resolution
        Resolution of the ``h3`` column.
    model_id
        Recorded in each row's ``model``.
    gazetteer
        :class:`georay.geo.gazetteer.Gazetteer` (default: the shared one).

    Returns
    -------
    list of dict
        The :data:`georay.protocol.predictions.ANSWER_FIELDS` of each text.
    """
    if gazetteer is None:
        from georay.geo.gazetteer import get_gazetteer

        gazetteer = get_gazetteer()
    rows = []
    for text in texts:
        if isinstance(text, Exception):
            reason = f"generate failed: {type(text).__name__}: {text}"
            rows.append(error_row(reason, model_id))
            continue
        answer = parse_answer(text)
        place = resolve_answer(answer, gazetteer)
        rows.append(
            {
                "country": place.country,
                "country_code": place.country_code,
                "city": place.city,
                "lat": place.lat,
                "lon": place.lon,
                "h3": None,
                "reasons": answer.reasons,
                "raw_text": text,
                "answered": answer.answered and place.usable,
                "resolution": place.level,
                # Why an ok row is not answered (refusal, unknown place): kept apart from
                # `error`, which is null on every ok row as in the other contracts.
                "answer_error": answer.error or (None if place.usable else "place not found"),
                "status": "ok",
                "error": None,
                "model": model_id,
            }
        )
    lat = np.array([np.nan if r["lat"] is None else r["lat"] for r in rows], dtype=float)
    lon = np.array([np.nan if r["lon"] is None else r["lon"] for r in rows], dtype=float)
    if rows:
        for row, cell in zip(rows, latlng_to_cells(lat, lon, h3_resolution), strict=True):
            row["h3"] = cell
    return rows
