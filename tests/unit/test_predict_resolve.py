"""Parsed answers to places through the real offline gazetteer."""

from __future__ import annotations

import pytest

from georay.geo.distance import haversine_km
from georay.geo.gazetteer import get_gazetteer
from georay.predict.resolve import resolve_answer
from georay.protocol.answers import parse_answer


@pytest.fixture(scope="module")
def gazetteer():
    return get_gazetteer()


def _resolve(text, gazetteer):
    return resolve_answer(parse_answer(text), gazetteer)


def test_city_within_country(gazetteer):
    place = _resolve("{'country': 'Switzerland', 'city': 'Zurich'}", gazetteer)
    assert (place.country, place.country_code, place.level) == ("Switzerland", "CH", "city")
    assert float(haversine_km(place.lat, place.lon, 47.37, 8.54)) < 10


def test_same_city_name_lands_in_the_predicted_country(gazetteer):
    france = _resolve("{'country': 'France', 'city': 'Paris'}", gazetteer)
    texas = _resolve("{'country': 'USA', 'city': 'Paris'}", gazetteer)
    assert (france.country_code, texas.country_code) == ("FR", "US")
    assert float(haversine_km(france.lat, france.lon, texas.lat, texas.lon)) > 5000


def test_unknown_city_falls_back_to_the_country_place(gazetteer):
    place = _resolve("{'country': 'Japan', 'city': 'Qwxyzburg'}", gazetteer)
    assert (place.country_code, place.level, place.city) == ("JP", "country", "Qwxyzburg")
    assert place.usable
    assert gazetteer.reverse(place.lat, place.lon).country_code[0] == "JP"


def test_country_only_and_codes(gazetteer):
    assert _resolve("{'country': 'DE'}", gazetteer).country == "Germany"
    assert _resolve('{"country": "U.S.A."}', gazetteer).country_code == "US"


def test_unknown_country_is_not_placed_even_with_a_known_city(gazetteer):
    place = _resolve("{'country': 'Atlantis', 'city': 'Paris'}", gazetteer)
    assert not place.usable
    assert (place.country, place.country_code) == ("Atlantis", None)


def test_model_coordinates_used_only_when_names_fail(gazetteer):
    coords = _resolve("{'country': 'Atlantis', 'lat': 10.5, 'lon': -20.25}", gazetteer)
    assert (coords.lat, coords.lon, coords.level) == (10.5, -20.25, "coords")
    named = _resolve("{'country': 'Italy', 'city': 'Rome', 'lat': 0, 'lon': 0}", gazetteer)
    assert named.level == "city" and named.lat > 40


def test_unanswered_has_no_place(gazetteer):
    assert not _resolve("I cannot tell.", gazetteer).usable
