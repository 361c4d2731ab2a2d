"""benchmarks.archive_prompt's prompt line and neighbour search (no model, no Ray)."""

from __future__ import annotations

import numpy as np

from benchmarks.archive_prompt import Points, hinted


def test_the_question_gains_one_line_naming_the_neighbours_places():
    q = "Which country and city is the image located?"
    assert hinted(q, []) == q  # no gallery neighbour: the question the model was trained on
    got = hinted(q, ["Paris, France", "Madrid, Spain"])
    assert got == f"{q}\nPhotos like this one were taken in: Paris, France; Madrid, Spain."


def test_nearest_names_the_most_similar_pool_items_places_best_first():
    # Three photos at Paris, Madrid and Tokyo centres; embeddings along three axes.
    x = np.eye(3, dtype=np.float32) * 7.0  # unnormalised: Points normalises
    points = Points(["p", "m", "t"], x, np.array([48.8566, 40.4168, 35.6895]),
                    np.array([2.3522, -3.7038, 139.6917]))  # fmt: skip
    assert points.places == ["Paris, France", "Madrid, Spain", "Tokyo, Japan"]
    query = np.array([0.2, 0.9, 0.4], dtype=np.float32)
    query /= np.linalg.norm(query)
    assert points.nearest(query, np.arange(3), 2) == ["Madrid, Spain", "Tokyo, Japan"]
    # Only the pool is searched: without Madrid, Tokyo comes first.
    assert points.nearest(query, np.array([0, 2]), 2) == ["Tokyo, Japan", "Paris, France"]


def test_median_over_every_photo_counts_an_unanswered_one_as_infinitely_far():
    import pyarrow as pa
    import pytest

    from benchmarks.archive import median_all

    truth = pa.table({"image_id": ["a", "b", "c"], "lat": [0.0] * 3, "lon": [0.0] * 3})
    rows = [{"image_id": "a", "lat": 0.0, "lon": 0.0}, {"image_id": "b", "lat": 0.1, "lon": 0.0},
            {"image_id": "c", "lat": None, "lon": None}]  # fmt: skip
    assert median_all(rows, ["a", "b", "c"], truth) == pytest.approx(11.12, abs=0.01)
    assert median_all(rows[:2], ["a", "b"], truth) == pytest.approx(5.56, abs=0.01)


def test_verdicts_count_the_draws_where_fused_beats_both_parts():
    from benchmarks.archive import verdicts

    def m(km, km_all, acc, f1):
        return {"median_km": km, "median_km_all": km_all, "acc_km": {"25": acc},
                "country": {"f1": f1}}  # fmt: skip

    found = {
        "vlm": [m(5.0, 5.5, 0.60, 0.92), m(5.0, 5.5, 0.60, 0.92)],
        "knn": [m(9.0, 9.0, 0.50, 0.90), m(4.0, 4.0, 0.65, 0.90)],
        "fused": [m(4.5, 4.5, 0.62, 0.905), m(4.5, 4.5, 0.62, 0.93)],
    }
    assert verdicts(found) == ("median km 1/2 (over every photo: 1/2), < 25 km 1/2, country F1 1/2")
