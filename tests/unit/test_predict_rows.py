"""Answers -> predictions rows (what every method writes), and the engines chosen in one place."""

from __future__ import annotations

import math

import numpy as np

from georay.predict import config
from georay.predict.engine import ENGINES
from georay.predict.rows import SKIPPED_EXIF, predictions_table, rows_of
from georay.protocol.predictions import PREDICTIONS_SCHEMA, Resolved, add_cells, answer_row


def _batch() -> dict[str, np.ndarray]:
    """A numpy batch as the load stage leaves it: answered, failed, skipped (has EXIF GPS)."""
    return {
        "image_id": np.array(["a", "b", "c"], dtype=object),
        "uri": np.array(["/x/a.jpg", "/x/b.jpg", "/x/c.jpg"], dtype=object),
        "status": np.array(["ok", "error", "ok"], dtype=object),
        "error": np.array([None, "missing file: /x/b.jpg", None], dtype=object),
        "exif_lat": np.array([math.nan, math.nan, 47.4]),
        "exif_lon": np.array([math.nan, math.nan, 8.5]),
    }


def test_rows_carry_ids_answers_reasons_and_exif():
    place = Resolved("Switzerland", "CH", "Zurich", 47.37, 8.54, "city")
    answer = add_cells([answer_row(place, "m", raw_text="{...}")], 5)[0]
    table = predictions_table(rows_of(_batch()), {0: answer}, "m")
    assert table.schema == PREDICTIONS_SCHEMA
    a, b, c = table.to_pylist()
    assert (a["image_id"], a["uri"], a["city"], a["status"], a["answered"]) == (
        "a", "/x/a.jpg", "Zurich", "ok", True)  # fmt: skip
    assert a["h3"] is not None and (a["exif_lat"], a["exif_lon"]) == (None, None)
    assert (b["status"], b["error"], b["answered"], b["model"]) == (
        "error", "missing file: /x/b.jpg", False, "m")  # fmt: skip
    # Skipped for its EXIF GPS: placed there, by method exif, not asked.
    assert (c["status"], c["error"], c["answer_error"], c["answered"], c["method"]) == (
        "ok", None, None, True, "exif")  # fmt: skip
    assert (c["exif_lat"], c["exif_lon"]) == (47.4, 8.5) == (c["lat"], c["lon"])
    assert c["country_code"] == "CH" and c["raw_text"] is None


def test_a_skipped_row_without_a_point_says_why():
    batch = {k: v[2:] for k, v in _batch().items()}
    batch["exif_lat"][:] = math.nan
    (row,) = predictions_table(rows_of(batch), {}, "m").to_pylist()
    assert (row["status"], row["answer_error"], row["answered"]) == ("ok", SKIPPED_EXIF, False)


def test_a_batch_without_exif_columns_gets_null_exif():
    """The baselines' batches (no EXIF read): the same rows, EXIF null."""
    batch = {k: v for k, v in _batch().items() if not k.startswith("exif")}
    rows = predictions_table(rows_of(batch), {}, "knn").to_pylist()
    assert [r["exif_lat"] for r in rows] == [None, None, None]
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]


def test_every_engine_the_settings_accept_is_registered():
    assert set(ENGINES) == set(config.ENGINES)
    for engine in ENGINES.values():
        assert all(callable(getattr(engine, m)) for m in ("check", "bulk_stages", "online"))
