"""The per-row reference implementation (the evaluate benchmark's baseline): matching rules,
per-cell tables, end-to-end figures, and agreement with the vectorized engine."""

import json
import math

import numpy as np
import pytest

from benchmarks.evaluate_reference import (
    cell_aggregates,
    city_matches,
    country_matches,
    summarize,
)
from georay.geo.metrics import CONVENTIONS


def test_country_matching_codes_names_aliases():
    pred = ["Switzerland", "U.S.A.", "uk", "Holland", "DEU", "Narnia", None, "France"]
    true = ["CH", "US", "GB", "NL", "DE", "NA", "FR", "DE"]
    assert list(country_matches(pred, true)) == [True] * 5 + [False] * 3


def test_city_matching_case_and_diacritics():
    assert list(city_matches(["zurich", "ZÜRICH ", "Geneva", "", None], ["Zürich"] * 5)) == [
        True, True, False, False, False,
    ]  # fmt: skip
    assert list(city_matches(["Geneva", "Kiev"], ["Genève", "Kyiv"])) == [True, True]
    # With countries: the same name in another country is not the city.
    ok = city_matches(["Paris", "Paris", "Paris"], ["Paris"] * 3, ["US", "France", None],
                      ["FR", "FR", None])  # fmt: skip
    assert list(ok) == [False, True, True]


def test_cell_aggregates():
    lat = [47.37, 47.371, -33.87, np.nan]
    lon = [8.54, 8.541, 151.21, 0.0]
    t = cell_aggregates(lat, lon, 5, distance_km=[10.0, np.nan, 30.0, 5.0],
                        country_correct=[True, False, True, True])  # fmt: skip
    assert t["n"] == [2, 1] and len(t["cell"]) == 2  # the NaN row has no cell
    assert t["country_accuracy"] == [0.5, 1.0]
    assert t["median_km"] == [10.0, 30.0]
    assert t["geoscore"][0] == pytest.approx(5000 * math.exp(-10 / 1492.7) / 2)
    json.dumps(t)


def test_summarize_end_to_end_json_ready():
    # Truth: the four shared photos (true country from coordinates) plus Zurich.
    tlat = [39.915556, 52.842781, 37.885, 37.814667, 47.37]
    tlon = [116.390833, 11.182857, -122.6225, -122.264167, 8.54]
    pred_country = ["China", "Germany", "Canada", "U.S.A.", None]
    pred_city = ["Beijing", None, None, "Oakland", None]
    out = summarize(tlat, tlon, pred_country, pred_city,
                    true_city=["Beijing", "Salzwedel", None, "Oakland", "Zürich"])  # fmt: skip
    c = out["country"]
    assert (c["n"], c["answered"], c["correct"]) == (5, 4, 3)
    assert c["precision"] == pytest.approx(0.75) and c["recall"] == pytest.approx(0.8)
    city = out["city"]
    assert (city["n"], city["answered"], city["correct"]) == (4, 2, 2)
    d = out["distance"]
    assert d["located"] == 4 and d["acc_25km"] == pytest.approx(2 / 5)  # Beijing, Oakland
    assert set(out["cells"]) == {"res3", "res5"}
    assert out["conventions"] == CONVENTIONS
    json.dumps(out, allow_nan=False)  # metrics.json must be strict JSON


def test_summarize_answered_flag_and_coordinates():
    out = summarize([47.37, 47.37], [8.54, 8.54], ["CH", "CH"], pred_lat=[47.37, 47.37],
                    pred_lon=[8.54, 8.54], answered=[True, False])  # fmt: skip
    assert out["country"]["answered"] == 1 and out["distance"]["located"] == 1
    assert out["distance"]["acc_1km"] == 0.5 and out["distance"]["geoscore"] == 2500.0
