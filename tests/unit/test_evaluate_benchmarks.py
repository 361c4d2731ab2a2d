"""`georay evaluate` on benchmark truth tables as published, and several methods side by side.

Expected figures are counted by hand from the rows below; distances come from
``h3.great_circle_distance``, not georay's haversine.
"""

from __future__ import annotations

import json

import h3
import numpy as np
import pyarrow.parquet as pq
import pytest
from support import IM2GPS3K_COLUMNS, OSV5M_COLUMNS, georay_ok, im2gps3k_row, osv5m_row

from georay.cli import main
from georay.evaluate import EvaluateConfig, evaluate

# OSV-5M test.csv rows: id, lat, lon, country (ISO, as OSV-5M writes it), city.
OSV = [
    ("101", 48.8566, 2.3522, "FR", "Paris"),
    ("102", -22.5609, 17.0658, "NA", "Windhoek"),  # Namibia: "NA" must not read as missing
    ("103", 35.6762, 139.6503, "JP", "Tokyo"),
    ("104", -33.8688, 151.2093, "AU", "Sydney"),  # no prediction
]
# Predictions of the image folder (ids are file names without .jpg): country, city, lat, lon.
PRED = [
    ("101", "France", "Paris", 48.8566, 2.3522),  # exact
    ("102", "Namibia", None, -22.5609, 17.1658),  # right country, no city, ~10 km off
    ("103", "KR", "Seoul", 37.5665, 126.9780),  # wrong country and city
]


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    return h3.great_circle_distance(a, b, unit="km")


def _write_osv(tmp_path) -> tuple[str, str]:
    truth = tmp_path / "test.csv"
    truth.write_text(OSV5M_COLUMNS + "\n" + "\n".join(osv5m_row(*r) for r in OSV) + "\n")
    pred = tmp_path / "pred.jsonl"
    keys = ("image_id", "country", "city", "lat", "lon")
    pred.write_text("".join(json.dumps(dict(zip(keys, r, strict=True))) + "\n" for r in PRED))
    return str(truth), str(pred)


def test_osv5m_truth_by_hand(tmp_path):
    truth, pred = _write_osv(tmp_path)
    m = evaluate(EvaluateConfig(predictions=pred, truth=truth, output=str(tmp_path / "r"),
                                plots=False))  # fmt: skip
    assert m["inputs"]["truth_layout"]["layout"] == "osv5m"
    # Country: answered 101, 102, 103 (3 of 4), correct 101, 102. City: answered 101, 103,
    # correct 101 (Windhoek is known but unanswered).
    assert (m["country"]["answered"], m["country"]["correct"]) == (3, 2)
    assert m["country"]["precision"] == pytest.approx(2 / 3)
    assert m["country"]["recall"] == pytest.approx(3 / 4)
    assert (m["city"]["answered"], m["city"]["correct"]) == (2, 1)
    assert m["city"]["f1"] == pytest.approx(2 * 0.5 * 0.5 / (0.5 + 0.5))
    d = {r[0]: _km((t[1], t[2]), (r[3], r[4])) for r, t in zip(PRED, OSV, strict=False)}
    assert d["101"] == pytest.approx(0, abs=1e-6) and 9 < d["102"] < 12 and 1000 < d["103"] < 1300
    dist = np.array([d["101"], d["102"], d["103"], np.inf])  # 104: no prediction, a miss
    for r in (1, 25, 200, 750, 2500):
        assert m["acc_km"][str(r)] == pytest.approx(float(np.mean(dist < r)))
    geoscore = np.mean([5000 * np.exp(-x / 1492.7) for x in dist[:3]] + [0.0])
    assert m["geoscore"] == pytest.approx(geoscore, rel=1e-5)  # h3: radius 6371.0088 km
    assert m["median_km"] == pytest.approx(d["102"], rel=1e-5)


def test_im2gps3k_truth_gets_country_and_city_from_coordinates(tmp_path):
    rows = [("1_a_b@N00.jpg", 48.8566, 2.3522), ("2_c_d@N00.jpg", 35.6762, 139.6503)]
    truth = tmp_path / "im2gps3k_places365.csv"
    truth.write_text(IM2GPS3K_COLUMNS + "\n" + "\n".join(im2gps3k_row(*r) for r in rows) + "\n")
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"image_id": "1_a_b@N00", "country": "FR", "city": "Paris"}\n'
                    '{"image_id": "2_c_d@N00", "country": "Japan", "city": "Osaka"}\n')  # fmt: skip
    m = evaluate(EvaluateConfig(predictions=str(pred), truth=str(truth),
                                output=str(tmp_path / "r"), plots=False))  # fmt: skip
    layout = m["inputs"]["truth_layout"]
    assert layout["layout"] == "im2gps"
    assert layout["columns"] == {"image_id": "IMG_ID", "lat": "LAT", "lon": "LON"}
    assert m["inputs"]["truth_country_from_coordinates"] == 2
    assert m["inputs"]["truth_city_from_coordinates"] == 2
    assert (m["country"]["correct"], m["city"]["correct"]) == (2, 1)
    assert "truth_completion" in m["conventions"] and "truth_layout" in m["conventions"]


def test_unknown_truth_layout_is_one_error_line(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("photo,y,x\na.jpg,1,2\n")
    (tmp_path / "p.csv").write_text("image_id,country\na,FR\n")
    argv = ["evaluate", "--predictions", str(tmp_path / "p.csv"), "--truth",
            str(tmp_path / "t.csv"), "--output", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "columns ['photo', 'y', 'x'] match no known layout" in err
    assert "osv5m (id, latitude, longitude" in err and "--truth-columns" in err
    assert main([*argv, "--truth-columns", "id=photo,lat=y,lon=x", "--no-plots"]) == 0


def test_methods_side_by_side(tmp_path):
    truth, pred = _write_osv(tmp_path)
    oracle = tmp_path / "oracle.csv"
    oracle.write_text("image_id,lat,lon,country\n"
                      + "".join(f"{r[0]},{r[1]},{r[2]},{r[3]}\n" for r in OSV))  # fmt: skip
    out = tmp_path / "r"
    shown = georay_ok("evaluate", "--truth", truth, "--output", str(out), "--predictions",
                      f"vlm={pred}", f"oracle={oracle}")  # fmt: skip
    assert "| figure | vlm | oracle |" in shown and "| < 25 km | 0.5000 | 1.0000 |" in shown
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["methods"]) == ["vlm", "oracle"] and m["primary_method"] == "vlm"
    alone = evaluate(EvaluateConfig(predictions=pred, truth=truth, output=str(tmp_path / "a"),
                                    plots=False))  # fmt: skip
    for key in ("country", "city", "acc_km", "geoscore", "median_km"):
        assert m["methods"]["vlm"][key] == alone[key] == m[key]
    assert m["methods"]["oracle"]["country"]["correct"] == 4
    assert m["methods"]["oracle"]["city"]["answered"] == 0  # it names no city
    assert m["methods"]["oracle"]["acc_km"]["1"] == 1.0
    countries = pq.read_table(out / "countries.parquet")
    assert {"vlm.country_accuracy", "oracle.country_accuracy", "oracle.median_km"} <= set(
        countries.column_names
    )
    by_code = {r["country"]: r for r in countries.to_pylist()}
    assert by_code["JP"]["vlm.country_accuracy"] == 0 and by_code["JP"]["oracle.country_accuracy"]
    cells = pq.read_table(out / "cells_res3.parquet")
    assert sum(cells["n"].to_pylist()) == len(OSV) and "oracle.acc_25km" in cells.column_names
    rows = pq.read_table(out / "rows.parquet")
    assert rows.num_rows == 2 * len(OSV) and set(rows["method"].to_pylist()) == {"vlm", "oracle"}
    report = (out / "report.md").read_text()
    assert "## Headline: methods side by side" in report and "| oracle country acc." in report
    assert "![methods](methods.png)" in report and (out / "methods.png").stat().st_size > 20_000
