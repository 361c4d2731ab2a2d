"""The evaluation report against an independent computation on a small crafted set.

Distances are recomputed with ``h3.great_circle_distance`` (not the haversine georay uses),
country/city precision, recall and F1 are counted by hand from the table below, and the set
covers: a truth row without prediction, a prediction without truth, duplicate predictions,
names vs codes vs aliases, diacritics, truth given only as coordinates, an ``answered=False`` row,
an error row and an answer that names no real country.
"""

from __future__ import annotations

import json
import struct

import h3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from georay.evaluate import EvaluateConfig, evaluate
from georay.geo.gazetteer import get_gazetteer

# id, truth (lat, lon, country, city), prediction (country, city, lat, lon, answered, status)
TRUTH = [
    ("zrh", 47.3769, 8.5417, "CH", "Zürich"),
    ("tyo", 35.6762, 139.6503, "Japan", "Tokyo"),
    ("scl", -33.4489, -70.6693, None, None),  # coordinates only
    ("par", 48.8566, 2.3522, "FR", "Paris"),  # no prediction
    ("sao", -23.5505, -46.6333, "BR", "São Paulo"),
    ("abj", 5.3600, -4.0083, "CI", "Abidjan"),
    ("oak", 37.8044, -122.2712, "US", "Oakland"),
    ("ber", 52.5200, 13.4050, "DE", "Berlin"),
]
PRED = [
    ("zrh", "Switzerland", "Zurich", None, None, True, "ok"),  # name vs code, diacritics
    ("tyo", "JP", "Osaka", None, None, True, "ok"),  # code vs name; wrong city
    ("tyo", "France", "Paris", None, None, True, "ok"),  # duplicate: the first row counts
    ("scl", "Argentina", "Buenos Aires", None, None, True, "ok"),  # wrong country
    ("sao", "Brasil", "Sao Paulo", -23.5505, -46.6333, True, "ok"),  # alias, given coordinates
    ("abj", "Ivory Coast", "Abidjan", None, None, False, "ok"),  # answered=False
    ("oak", None, None, None, None, None, "error"),  # error row
    ("ber", "Atlantis", None, None, None, True, "ok"),  # answered, no real country
    ("ghost", "France", "Paris", None, None, True, "ok"),  # no truth row
]
# By hand: country answered = zrh, tyo, scl, sao, ber (5 of 8); correct = zrh, tyo, sao (3).
# City (truth known for all 8; scl's from its coordinates): answered = zrh, tyo, scl, sao (4);
# correct = zrh, sao (2).
COUNTRY = {"answered": 5, "correct": 3, "precision": 3 / 5, "recall": 5 / 8}
CITY = {"answered": 4, "correct": 2, "precision": 2 / 4, "recall": 4 / 8}


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r)


def _write(tmp_path) -> tuple[str, str]:
    cols = ("image_id", "lat", "lon", "country", "city")
    truth = pa.table({c: [row[i] for row in TRUTH] for i, c in enumerate(cols)})
    pcols = ("image_id", "country", "city", "lat", "lon", "answered", "status")
    pred = pa.table(
        {c: pa.array([row[i] for row in PRED]) for i, c in enumerate(pcols)},
    ).cast(pa.schema([(c, t) for c, t in zip(pcols, [pa.string()] * 3 + [pa.float64()] * 2
                                             + [pa.bool_(), pa.string()], strict=True)]))  # fmt: skip
    pq.write_table(truth, tmp_path / "truth.parquet")
    pq.write_table(pred, tmp_path / "pred.parquet")
    return str(tmp_path / "pred.parquet"), str(tmp_path / "truth.parquet")


def _expected_distances() -> dict[str, float]:
    """Independent distances: h3's great-circle formula, predicted points looked up by hand."""
    gaz = get_gazetteer()
    points = {
        "zrh": gaz.city("Zurich", "CH"),
        "tyo": gaz.city("Osaka", "JP"),
        "scl": gaz.city("Buenos Aires", "AR"),
    }
    truth = {row[0]: (row[1], row[2]) for row in TRUTH}
    out = {k: h3.great_circle_distance(truth[k], (p.lat, p.lon), unit="km") for k, p in
           points.items()}  # fmt: skip
    out["sao"] = h3.great_circle_distance(truth["sao"], (-23.5505, -46.6333), unit="km")
    return out  # every other row has no predicted location: a miss


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    pred, truth = _write(tmp)
    out = tmp / "report"
    metrics = evaluate(EvaluateConfig(predictions=pred, truth=truth, output=str(out)))
    return metrics, out


def test_precision_recall_f1_by_hand(report):
    metrics, _ = report
    assert metrics["n"] == len(TRUTH)
    for level, expected in (("country", COUNTRY), ("city", CITY)):
        got = metrics[level]
        for key, value in expected.items():
            assert got[key] == pytest.approx(value), (level, key)
        assert got["f1"] == pytest.approx(_f1(expected["precision"], expected["recall"]))


def test_km_figures_independent(report):
    metrics, out = report
    dist = _expected_distances()
    for r in (1, 25, 200, 750, 2500):
        expected = sum(d < r for d in dist.values()) / len(TRUTH)  # unanswered rows are misses
        assert metrics["acc_km"][str(r)] == pytest.approx(expected), r
    assert metrics["acc_km"]["25"] == pytest.approx(2 / 8)  # Zurich and São Paulo
    assert metrics["median_km"] == pytest.approx(sorted(dist.values())[1:3][0] / 2
                                                 + sorted(dist.values())[1:3][1] / 2, rel=1e-4)  # fmt: skip
    import math

    geo = sum(5000 * math.exp(-d / 1492.7) for d in dist.values()) / len(TRUTH)
    assert metrics["geoscore"] == pytest.approx(geo, rel=1e-4)
    rows = pq.read_table(out / "rows.parquet").to_pydict()
    got = dict(zip(rows["image_id"], rows["distance_km"], strict=True))
    for key, d in dist.items():
        assert got[key] == pytest.approx(d, rel=1e-4), key


def test_accounting_and_tables(report):
    metrics, out = report
    inputs = metrics["inputs"]
    assert inputs["unmatched_predictions"] == 1
    assert inputs["prediction_duplicates"] == 1
    assert inputs["truth_without_prediction"] == 1
    assert inputs["truth_country_from_coordinates"] == 1
    assert pq.read_table(out / "unmatched_predictions.parquet")["image_id"].to_pylist() == ["ghost"]
    countries = pq.read_table(out / "countries.parquet").to_pylist()
    by_code = {row["country"]: row for row in countries}
    assert sum(row["n"] for row in countries) == len(TRUTH)
    assert by_code["CL"]["n"] == 1 and by_code["CL"]["country_accuracy"] == 0
    assert by_code["CH"]["country_accuracy"] == 1 and by_code["CH"]["city_accuracy"] == 1
    for res in (3, 5):
        cells = pq.read_table(out / f"cells_res{res}.parquet")
        assert sum(cells["n"].to_pylist()) == len(TRUTH)
        zrh = h3.latlng_to_cell(47.3769, 8.5417, res)
        row = cells.filter(pa.compute.equal(cells["cell"], zrh)).to_pylist()
        assert row and row[0]["country_accuracy"] == 1.0 and row[0]["country"] == "CH"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["country"] == metrics["country"]
    assert {"distance", "within_r_km", "join", "country_matching"} <= set(on_disk["conventions"])


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_and_plots(report):
    metrics, out = report
    text = (out / "report.md").read_text()
    assert "## Conventions" in text and "| country |" in text
    for name in metrics["figures"].values():
        assert f"]({name})" in text
        data = (out / name).read_bytes()
        width, height = _png_size(data)
        assert width > 600 and height > 250 and len(data) > 20_000, name
        from PIL import Image

        colors = Image.open(out / name).convert("RGB").getcolors(maxcolors=1 << 20)
        assert len(colors) > 50, f"{name} looks blank"


def test_truth_without_city_column_and_csv(tmp_path):
    (tmp_path / "truth.csv").write_text("image_id,lat,lon\na,47.3769,8.5417\nb,35.6762,139.6503\n")
    (tmp_path / "pred.jsonl").write_text(
        '{"image_id": "a", "country": "CH", "city": "Zürich"}\n{"image_id": "b", "country": "KR"}\n'
    )
    cfg = EvaluateConfig(predictions=str(tmp_path / "pred.jsonl"), truth=str(tmp_path / "truth.csv"),
                         output=str(tmp_path / "out"), h3_resolution=[4], plots=False)  # fmt: skip
    metrics = evaluate(cfg)
    assert metrics["country"]["correct"] == 1 and metrics["country"]["answered"] == 2
    assert metrics["inputs"]["truth_city_from_coordinates"] == 2
    assert metrics["city"]["correct"] == 1  # Zürich is the nearest GeoNames place to (a)
    assert (tmp_path / "out" / "cells_res4.parquet").exists()


def test_config_validation():
    with pytest.raises(ValueError, match="0..15"):
        EvaluateConfig(predictions="p", truth="t", output="o", h3_resolution=[16])
    assert EvaluateConfig(
        predictions="p", truth="t", output="o", h3_resolution="5,3"
    ).h3_resolution == [3, 5]


def test_nothing_to_score_still_reports(tmp_path):
    """Truth with no usable place and no matching prediction: figures are 0/None, not a crash."""
    (tmp_path / "truth.csv").write_text("image_id,country\na,Atlantis\nb,\n")
    (tmp_path / "pred.jsonl").write_text('{"image_id": "x", "country": "France"}\n')
    out = tmp_path / "out"
    metrics = evaluate(EvaluateConfig(predictions=str(tmp_path / "pred.jsonl"),
                                      truth=str(tmp_path / "truth.csv"), output=str(out)))  # fmt: skip
    assert metrics["n"] == 2 and metrics["country"]["n"] == 0 and metrics["median_km"] is None
    assert metrics["inputs"]["truth_without_country"] == 2
    assert metrics["inputs"]["truth_without_location"] == 2
    assert metrics["inputs"]["unmatched_predictions"] == 1
    assert all((out / f).exists() for f in metrics["figures"].values())
    strict = lambda c: pytest.fail(f"metrics.json holds {c}, which is not JSON")  # noqa: E731
    json.loads((out / "metrics.json").read_text(), parse_constant=strict)
