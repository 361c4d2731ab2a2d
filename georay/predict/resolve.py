"""From a parsed answer (names) to a place on the map, through the offline gazetteer.

A GeoReasoner model answers with names, not coordinates. So that name-only models get km metrics
and H3 cells too, a predicted city is looked up *within the predicted country* (``"Paris"`` said
for Texas must not land in France), else the country's own place (its capital or most populous
place, the gazetteer's convention for a country-only text). Coordinates the model wrote itself are
used only when no name resolves. (:class:`~georay.protocol.predictions.Resolved`, the place an
answer points to, lives with the predictions schema: every predictor builds its rows from one.)
"""

from __future__ import annotations

from typing import Protocol

from georay.protocol.answers import ParsedAnswer
from georay.protocol.predictions import Resolved


class _Place(Protocol):
    name: str
    country_code: str
    lat: float
    lon: float


class _Gazetteer(Protocol):
    def city(self, name: str, country_code: str | None = None) -> _Place | None: ...
    def country_place(self, country: str) -> _Place | None: ...
    def country_code(self, text: str) -> str | None: ...
    def country_name(self, code: str) -> str: ...


def resolve_answer(answer: ParsedAnswer, gazetteer: _Gazetteer) -> Resolved:
    """Resolve a parsed answer to a country (name + ISO code) and a point.

    Parameters
    ----------
    answer : ParsedAnswer
        The parsed model answer.
    gazetteer : Gazetteer
        ``georay.geo.gazetteer.get_gazetteer()`` (or anything with its four methods used here).

    Returns
    -------
    Resolved
        ``country`` is the gazetteer's name when the code resolved, else the model's text;
        ``city`` is always the model's text (what it predicted, for city-level metrics).
    """
    code = gazetteer.country_code(answer.country) if answer.country else None
    if code is None:
        # An unknown country: a bare city name could be anywhere (Paris, Texas), so only
        # coordinates the model wrote itself can place it.
        if answer.lat is not None and answer.lon is not None:
            return Resolved(answer.country, None, answer.city, answer.lat, answer.lon, "coords")
        return Resolved(answer.country, None, answer.city, None, None, None)
    country = gazetteer.country_name(code)
    place = gazetteer.city(answer.city, code) if answer.city else None
    if place is not None:
        return Resolved(country, code, answer.city, place.lat, place.lon, "city")
    place = gazetteer.country_place(code)
    if place is not None:
        return Resolved(country, code, answer.city, place.lat, place.lon, "country")
    if answer.lat is not None and answer.lon is not None:
        return Resolved(country, code, answer.city, answer.lat, answer.lon, "coords")
    return Resolved(country, code, answer.city, None, None, None)


__all__ = ["Resolved", "resolve_answer"]
