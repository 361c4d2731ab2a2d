"""From generated text to a predictions row: parse the answer, place it, add its H3 cell.

Every engine (transformers' ``generate``, vLLM in bulk or online) ends here, so a model's words
become the same row whichever engine produced them. No torch, no Ray.
"""

from __future__ import annotations

from georay.predict.resolve import resolve_answer
from georay.protocol.answers import parse_answer
from georay.protocol.predictions import add_cells, answer_row, error_row


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
            rows.append(error_row(f"generate failed: {type(text).__name__}: {text}", model_id))
            continue
        answer = parse_answer(text)
        place = resolve_answer(answer, gazetteer)
        rows.append(answer_row(place, model_id, raw_text=text, reasons=answer.reasons,
                               answered=answer.answered, answer_error=answer.error))  # fmt: skip
    return add_cells(rows, h3_resolution)
