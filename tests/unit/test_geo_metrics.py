"""Metric building blocks: pinned paper figures, strict thresholds, NaN handling, conventions."""

import json
import math

import numpy as np
import pytest

from georay.geo.metrics import (
    CONVENTIONS,
    accuracy_within,
    distance_metrics,
    f1_score,
    geoscores,
    precision_recall_f1,
)


def test_f1_pinned_paper_value():
    # GeoReasoner country level: P=.8237, R=1 -> F1=.9033.
    assert f1_score(0.8237, 1.0) == pytest.approx(0.9033, abs=5e-5)
    assert f1_score(0.0, 0.0) == 0.0


def test_precision_recall_f1_counts_and_zero_safe():
    m = precision_recall_f1(correct=[1, 1, 0, 1, 0], answered=[1, 1, 1, 0, 0])
    assert (m["n"], m["answered"], m["correct"]) == (5, 3, 2)  # correct-but-unanswered ignored
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.6 / (2 / 3 + 0.6))
    empty = precision_recall_f1([], [])
    assert empty["precision"] == empty["recall"] == empty["f1"] == 0.0
    none = precision_recall_f1([0, 0], [0, 0])
    assert none["precision"] == 0.0 and none["f1"] == 0.0


def test_accuracy_strict_threshold_and_nan_is_a_miss():
    acc = accuracy_within([0.5, 1.0, 25.0, 24.99, np.nan], thresholds_km=(1, 25))
    assert acc == {"acc_1km": 0.2, "acc_25km": 0.6}  # d == r is a miss; NaN counts in the total
    assert set(accuracy_within([1.0])) == {f"acc_{r}km" for r in (1, 25, 200, 750, 2500)}


def test_geoscore():
    s = geoscores([0.0, 1492.7, np.nan])
    assert s[0] == 5000.0 and s[1] == pytest.approx(5000 / math.e) and s[2] == 0.0
    m = distance_metrics([0.0, 1492.7, np.nan])
    assert m["geoscore"] == pytest.approx((5000 + 5000 / math.e) / 3)  # not rounded per image
    assert m["median_km"] == pytest.approx(746.35) and m["mean_km"] == pytest.approx(746.35)
    assert (m["n"], m["located"]) == (3, 2)
    assert distance_metrics([np.nan])["median_km"] is None


def test_conventions_document_the_rules():
    for key in ("within_r_km", "geoscore", "country_of_coordinate", "name_resolution"):
        assert key in CONVENTIONS
    json.dumps(CONVENTIONS)
