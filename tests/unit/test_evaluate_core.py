"""The metric core: cells, the city of a coordinate, and a 1M-row run against numpy."""

from __future__ import annotations

import h3
import numpy as np
import pyarrow as pa
import pytest

from georay.evaluate.evaluator import cell_table, country_table, headline
from georay.evaluate.score import h3_cells, score
from georay.geo.gazetteer import get_gazetteer
from georay.geo.names import normalize_name
from georay.geo.places import city_of_coordinates


def test_cells_match_h3():
    rng = np.random.default_rng(1)
    lat, lon = rng.uniform(-89, 89, 500), rng.uniform(-180, 180, 500)
    lat[3] = np.nan
    cells = h3_cells(lat, lon, [3, 5])
    for res in (3, 5):
        got = [h3.int_to_str(int(c)) if c else None for c in cells[res]]
        want = [
            None if np.isnan(a) else h3.latlng_to_cell(a, b, res)
            for a, b in zip(lat, lon, strict=True)
        ]
        assert got == want


def test_city_of_coordinates():
    gaz = get_gazetteer()
    names, codes = city_of_coordinates(
        gaz, np.array([47.3769, 48.83, 37.8044, np.nan]), np.array([8.5417, 2.36, -122.2712, 0])
    )
    # central Zürich is Zürich (not "Zürich (Kreis 1)"), Paris 13e is Paris, Oakland is not SF
    assert names.tolist() == ["Zürich", "Paris", "Oakland", None]
    assert codes.tolist() == ["CH", "FR", "US", None]


def _world(n: int, seed: int = 0) -> tuple[pa.Table, pa.Table, dict]:
    """n truth rows near the 3,000 most populous places; predictions by name (30% wrong), 5%
    unanswered; the expected figures computed here with plain numpy."""
    gaz = get_gazetteer()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 3000, n)
    lat = gaz.lat[idx] + rng.normal(0, 0.05, n)
    lon = gaz.lon[idx] + rng.normal(0, 0.05, n)
    pidx = np.where(rng.random(n) < 0.3, rng.integers(0, 3000, n), idx)
    answered = rng.random(n) > 0.05
    codes = gaz.codes[:3000].astype(str)
    names = {c: gaz.country_name(c) for c in np.unique(codes)}
    ids = pa.array(np.char.add("i", np.arange(n).astype(str)))
    truth = pa.table({"image_id": ids, "lat": lat, "lon": lon,
                      "country": pa.array(gaz.codes[idx].astype(str)),
                      "city": pa.array(gaz.names[idx].astype(str))})  # fmt: skip
    pred_country = np.vectorize(names.get, otypes=[object])(gaz.codes[pidx].astype(str))
    pred = pa.table({"image_id": ids, "lat": pa.nulls(n, pa.float64()),
                     "lon": pa.nulls(n, pa.float64()), "country": pa.array(pred_country, pa.string()),
                     "city": pa.array(gaz.names[pidx].astype(str)),
                     "country_code": pa.nulls(n, pa.string()), "answered": pa.array(answered),
                     "status": pa.array(np.full(n, "ok"))})  # fmt: skip
    # Independent expectations. The predicted point of a (country, city) pair is the most
    # populous place of that name in that country: index pidx itself unless a more populous
    # namesake (names equal after normalization) exists in the same country.
    first: dict[tuple[str, str], int] = {}
    for i in range(3000):
        first.setdefault((gaz.codes[i], normalize_name(gaz.names[i])), i)
    point = np.array([first[(gaz.codes[i], normalize_name(gaz.names[i]))] for i in range(3000)])
    point = point[pidx]
    d = np.array([h3.great_circle_distance((a, b), (gaz.lat[p], gaz.lon[p]), unit="km")
                  for a, b, p in zip(lat[:2000], lon[:2000], point[:2000], strict=True)])  # fmt: skip
    correct = (gaz.codes[pidx] == gaz.codes[idx]) & answered
    expected = {
        "country_correct": int(correct.sum()),
        "answered": int(answered.sum()),
        "distance_head": np.where(answered[:2000], d, np.nan),
    }
    return truth, pred, expected


@pytest.mark.slow  # ~10 s on 2 idle cores, past 30 s on a loaded machine
def test_one_million_rows():
    n = 1_000_000
    truth, pred, expected = _world(n)
    gaz = get_gazetteer()
    gaz.city("warm-up")  # the name index is built once per process
    scored, orphans = score(truth, pred, gaz, [3, 5])
    metrics = headline(scored)
    tables = [country_table(scored), cell_table(scored, 3), cell_table(scored, 5)]
    assert metrics["n"] == n and len(orphans) == 0
    assert metrics["country"]["answered"] == expected["answered"]
    assert metrics["country"]["correct"] == expected["country_correct"]
    np.testing.assert_allclose(
        scored.distance_km[:2000], expected["distance_head"], rtol=1e-5, equal_nan=True
    )
    assert sum(tables[0]["n"].to_pylist()) == n
    assert sum(tables[2]["n"].to_pylist()) == n
