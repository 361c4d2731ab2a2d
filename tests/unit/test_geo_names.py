"""Place-name normalization."""

import pytest

from georay.geo.names import city_key, normalize_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Zürich", "zurich"),
        ("  ZURICH ", "zurich"),
        ("U.S.A.", "usa"),
        ("Côte d'Ivoire", "cote divoire"),
        ("Łódź", "lodz"),
        ("Saint-Étienne", "saint etienne"),
        ("Bosnia & Herzegovina", "bosnia and herzegovina"),
        ("Straße", "strasse"),
        ("", ""),
        (None, ""),
        (3.5, ""),
    ],
)
def test_normalize_name(text, expected):
    assert normalize_name(text) == expected


def test_city_key_maps_exonyms():
    assert city_key("Geneva") == city_key("Genève") == "geneve"
    assert city_key("Kiev") == city_key("KYIV") and city_key("zurich") == city_key("Zürich")
    assert city_key("Springfield") == "springfield"
