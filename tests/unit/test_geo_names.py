"""Place-name normalization."""

import pytest

from georay.geo.names import normalize_name


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
