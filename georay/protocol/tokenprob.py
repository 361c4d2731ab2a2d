"""A generated answer's token probabilities -> field probabilities and branch points (issue 20).

Every engine (transformers' ``generate``, vLLM in bulk or online) reports an answer as a
:class:`Scored`: its tokens, each token's log-probability under the model (raw: before any
logits processor, as vLLM's ``logprobs`` are), and the most probable tokens at each step. From
there the arithmetic is the same whoever generated it, so the engines agree:

* the **branch point** is the first token of the country value (:func:`locate`);
* the probability of a field is the product of the probabilities of the tokens from the branch
  point through the last token of that field's value (:func:`path_probability`): the country's
  is its value's tokens; the city's also counts the country before it (a right city needs the
  right country) and the tokens between (``', 'city': '``, ~1 once trained);
* alternatives are the most probable other tokens at the branch point (:func:`alternatives`);
  each is completed greedily by the engine, and its place's probability is computed the same way
  along its own path. The paths differ at the branch point, so they are disjoint events and the
  answer's probability plus its alternatives' sums to at most 1.

Pure Python + NumPy: no torch, no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from georay.protocol.answers import ParsedAnswer, value_span

# Tokens a branch may generate beyond what the answer took from the branch point to the end of
# its finest value: another country or city name may be a few tokens longer.
BRANCH_SLACK_TOKENS = 8


@dataclass
class Scored:
    """One generated answer with its token log-probabilities.

    Attributes
    ----------
    tokens
        Generated token ids, without the end-of-turn token and padding.
    logprobs
        Log-probability of each of ``tokens`` (same length).
    top
        Per step, the most probable ``(token, logprob)`` pairs, best first (empty lists where
        the engine gave none).
    text
        The decoded answer (special tokens skipped), exactly what the row's ``raw_text`` is.
    """

    tokens: list[int]
    logprobs: list[float]
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    text: str = ""


@dataclass(frozen=True)
class Fields:
    """Token positions of an answer's values: ``start`` is the country value's first token;
    ``country_end`` / ``city_end`` the last token of each value (None: not found)."""

    start: int
    country_end: int
    city_end: int | None

    @property
    def end(self) -> int:
        """Last token of the finest value named."""
        return self.country_end if self.city_end is None else max(self.city_end, self.country_end)


def token_ends(decode: Callable[[list[int]], str], tokens: Sequence[int]) -> list[int]:
    """Character offset in ``decode(tokens)`` where each token's text ends.

    Found by decoding each prefix (a byte-level token may hold half a character: its end is
    where the character completes), kept non-decreasing.
    """
    ends, last = [], 0
    for i in range(len(tokens)):
        last = max(last, len(decode(list(tokens[: i + 1]))))
        ends.append(last)
    return ends


def _token_range(ends: list[int], span: tuple[int, int]) -> tuple[int, int] | None:
    start, end = span
    first = next((i for i, e in enumerate(ends) if e > start), None)
    last = next((i for i, e in enumerate(ends) if e >= end), None)
    return None if first is None or last is None else (first, last)


def locate(
    scored: Scored, answer: ParsedAnswer, decode: Callable[[list[int]], str]
) -> Fields | None:
    """The token positions of the answered country (and city) in ``scored``; None where the
    country value is not written as such (nothing to branch on, no confidence)."""
    if not answer.answered or not answer.country:
        return None
    span = value_span(scored.text, "country", answer.country)
    if span is None:
        return None
    ends = token_ends(decode, scored.tokens)
    country = _token_range(ends, span)
    if country is None:
        return None
    city_span = value_span(scored.text, "city", answer.city) if answer.city else None
    city = _token_range(ends, city_span) if city_span else None
    return Fields(start=country[0], country_end=country[1], city_end=city[1] if city else None)


def path_probability(logprobs: Sequence[float], start: int, end: int) -> float:
    """``exp`` of the summed log-probabilities of tokens ``start..end`` (inclusive), in [0, 1]."""
    total = math.fsum(float(x) for x in logprobs[start : end + 1])
    return min(1.0, math.exp(min(total, 0.0)))


def alternatives(scored: Scored, at: int, n: int) -> list[tuple[int, float]]:
    """Up to ``n`` most probable tokens at step ``at`` other than the one generated."""
    if at >= len(scored.top) or n < 1:
        return []
    chosen = scored.tokens[at]
    out = [(t, lp) for t, lp in scored.top[at] if t != chosen and math.isfinite(lp)]
    return out[:n]


def branch_budget(fields: Fields) -> int:
    """Tokens a branch may generate: the answer's own from branch point to its finest value's
    end, plus :data:`BRANCH_SLACK_TOKENS`."""
    return fields.end - fields.start + 1 + BRANCH_SLACK_TOKENS


def extend(scored: Scored, at: int, token: int, logprob: float, rest: Scored,
           decode: Callable[[list[int]], str]) -> Scored:  # fmt: skip
    """The answer that branches off ``scored`` at step ``at`` with ``token`` and goes on with
    ``rest`` (the engine's greedy continuation)."""
    tokens = list(scored.tokens[:at]) + [token] + list(rest.tokens)
    logprobs = list(scored.logprobs[:at]) + [logprob] + list(rest.logprobs)
    return Scored(tokens=tokens, logprobs=logprobs, text=decode(tokens))
