"""From generated text to a predictions row: parse the answer, place it, add its H3 cell.

Every engine (transformers' ``generate``, vLLM in bulk or online) ends here, so a model's words
become the same row whichever engine produced them. No torch, no Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from georay.predict.resolve import resolve_answer
from georay.protocol import tokenprob
from georay.protocol.answers import parse_answer
from georay.protocol.predictions import (
    Resolved,
    add_cells,
    answer_row,
    candidate,
    error_row,
    with_confidence,
)
from georay.protocol.tokenprob import Scored


def rows_from_texts(
    texts: list[str | Exception],
    *,
    h3_resolution: int,
    model_id: str,
    gazetteer=None,
    method: str = "vlm",
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
    method
        Recorded in each row's ``method`` (the model's own answer: ``vlm``).

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
            rows.append(error_row(f"generate failed: {type(text).__name__}: {text}", model_id,
                                  method))  # fmt: skip
            continue
        answer = parse_answer(text)
        place = resolve_answer(answer, gazetteer)
        rows.append(answer_row(place, model_id, raw_text=text, reasons=answer.reasons,
                               answered=answer.answered, answer_error=answer.error,
                               method=method))  # fmt: skip
    return add_cells(rows, h3_resolution)


# ---------------------------------------------------------------------------------------------
# Confidence (issue 20): the same steps for every engine. An engine generates the answers with
# their token probabilities (Scored), asks plan_confidence which alternatives to complete, runs
# those greedy continuations its own way, and hands them to confidence_rows.


@dataclass(frozen=True)
class Branch:
    """One alternative to complete: answer ``row`` takes ``token`` (log-probability
    ``logprob``) at its branch point ``at`` instead of its own; the engine continues greedily
    from ``prefix`` (the answer's tokens before ``at``, then ``token``) for at most
    ``max_new_tokens``."""

    row: int
    at: int
    token: int
    logprob: float
    prefix: tuple[int, ...]
    max_new_tokens: int


@dataclass
class Plan:
    """What :func:`plan_confidence` found in a batch of answers, for :func:`confidence_rows`."""

    scored: list
    fields: list
    branches: list[Branch] = dataclass_field(default_factory=list)


def plan_confidence(scored: list, decode: Callable[[list[int]], str], top_k: int) -> Plan:
    """Locate each answer's values and list the ``top_k - 1`` alternatives to complete.

    Parameters
    ----------
    scored
        :class:`~georay.protocol.tokenprob.Scored` answers (an Exception where generation failed).
    decode
        Token ids -> text, as the engine decodes (special tokens skipped).
    top_k
        Places wanted per row, the answer included.
    """
    fields, branches = [], []
    for i, item in enumerate(scored):
        found = None
        if isinstance(item, Scored):
            found = tokenprob.locate(item, parse_answer(item.text), decode)
        fields.append(found)
        if found is None:
            continue
        budget = tokenprob.branch_budget(found)
        for token, logprob in tokenprob.alternatives(item, found.start, top_k - 1):
            prefix = (*item.tokens[: found.start], token)
            branches.append(Branch(i, found.start, token, logprob, prefix, budget))
    return Plan(scored=scored, fields=fields, branches=branches)


def _alternative(branch: Branch, answer: Scored, rest: Scored, decode, gazetteer):
    """(place, probability) of a completed branch, or None where it names no known country."""
    path = tokenprob.extend(answer, branch.at, branch.token, branch.logprob, rest, decode)
    parsed = parse_answer(path.text)
    found = tokenprob.locate(path, parsed, decode)
    if found is None or found.start != branch.at:
        return None  # its country does not start where it branched: not the same event space
    if found.city_end is None:
        parsed.city = None
    place = resolve_answer(parsed, gazetteer)
    if place.country_code is None:
        return None
    return place, tokenprob.path_probability(path.logprobs, found.start, found.end)


def _row_candidates(row: dict, found, answer: Scored, alternatives: list):
    """(country, city, candidates) of one answered row: the answer first, then its distinct
    alternatives (the same place reached by two branches: their probabilities add up, since
    the branches are disjoint paths)."""
    country = tokenprob.path_probability(answer.logprobs, found.start, found.country_end)
    city = None
    if found.city_end is not None:
        city = tokenprob.path_probability(answer.logprobs, found.start, found.end)
    named_city = row["city"] if city is not None else None
    mine = Resolved(row["country"], row["country_code"], named_city, row["lat"], row["lon"], None)
    merged: dict[tuple, list] = {}
    for place, p in alternatives:
        key = (place.country_code, place.city)
        if key == (mine.country_code, mine.city):
            continue
        merged.setdefault(key, [place, 0.0])[1] += p
    head = candidate(mine, country if city is None else city)
    return country, city, [head] + [candidate(place, min(p, 1.0)) for place, p in merged.values()]


def confidence_rows(
    plan: Plan,
    continuations: list,
    decode: Callable[[list[int]], str],
    *,
    top_k: int,
    h3_resolution: int,
    model_id: str,
    calibration=None,
    min_confidence: float = 0.0,
    gazetteer=None,
) -> list[dict]:
    """Predictions rows of a planned batch: :func:`rows_from_texts` plus the confidence fields.

    ``continuations`` holds the engine's greedy completion of each of ``plan.branches`` (a
    :class:`~georay.protocol.tokenprob.Scored` of the new tokens only), in order. Every row
    goes through :func:`~georay.protocol.predictions.with_confidence` (method ``vlm``), which
    applies ``calibration`` and ``min_confidence``.
    """
    if gazetteer is None:
        from georay.geo.gazetteer import get_gazetteer

        gazetteer = get_gazetteer()
    texts = [s.text if isinstance(s, Scored) else s for s in plan.scored]
    rows = rows_from_texts(texts, h3_resolution=h3_resolution, model_id=model_id,
                           gazetteer=gazetteer)  # fmt: skip
    found_alts: dict[int, list] = {}
    for branch, rest in zip(plan.branches, continuations, strict=True):
        alt = _alternative(branch, plan.scored[branch.row], rest, decode, gazetteer)
        if alt is not None:
            found_alts.setdefault(branch.row, []).append(alt)
    for i, row in enumerate(rows):
        found = plan.fields[i]
        if found is None or not row["answered"]:
            with_confidence(row, country=None, min_confidence=min_confidence)
            continue
        country, city, cands = _row_candidates(row, found, plan.scored[i], found_alts.get(i, []))
        with_confidence(row, country=country, city=city, candidates=cands, top_k=top_k,
                        calibration=calibration, method="vlm",
                        min_confidence=min_confidence)  # fmt: skip
    return rows
