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
