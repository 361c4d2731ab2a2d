"""The fused method's core (issue 21): log-linear country fusion, refinement by the neighbours
that agree, weights fitted on labelled rows."""

from __future__ import annotations

import numpy as np
import pytest

from georay.archive.fusion import FusionWeights, Neighbours, fit_weights, fuse, vlm_candidates

PARIS = {"country": "France", "country_code": "FR", "city": "Paris", "lat": 48.8566,
         "lon": 2.3522}  # fmt: skip
ROME = {"country": "Italy", "country_code": "IT", "city": "Rome", "lat": 41.9, "lon": 12.5}


def _neighbours(*items) -> Neighbours:
    """(sim, lat, lon, country, city) per neighbour."""
    sims, lat, lon, country, city = zip(*items, strict=True)
    ids = np.array([f"g{i}" for i in range(len(items))], dtype=object)
    return Neighbours(ids, np.array(sims, float), np.array(lat, float), np.array(lon, float),
                      np.array(country, dtype=object), np.array(city, dtype=object))  # fmt: skip


def test_a_planted_exact_neighbour_moves_the_answer_to_it():
    vlm = [PARIS | {"probability": 0.6}, ROME | {"probability": 0.3}]
    exact = (1.0, 41.95, 12.45, "IT", "Rome")  # the same photo, in the gallery
    others = [(0.2, 48.8, 2.3, "FR", "Paris"), (0.1, 45.0, 5.0, "FR", "Lyon")]
    fused = fuse(vlm, _neighbours(exact, *others), FusionWeights(), temperature=0.05)
    assert (fused.country_code, fused.city, fused.how) == ("IT", "Rome", "refined")
    # The neighbour's point, not Rome's centre.
    assert (fused.lat, fused.lon) == (pytest.approx(41.95), pytest.approx(12.45))
    assert list(fused.probabilities)[0] == "IT" and sum(fused.probabilities.values()) == (
        pytest.approx(1.0))  # fmt: skip
    # Without that neighbour the VLM's answer stands, refined by the agreeing Paris neighbour.
    alone = fuse(vlm, _neighbours(*others), FusionWeights(), temperature=0.05)
    assert (alone.country_code, alone.city) == ("FR", "Paris")
    assert alone.lat == pytest.approx(48.8)


def test_agreeing_neighbours_average_their_points_a_look_alike_elsewhere_does_not():
    vlm = [PARIS | {"probability": 0.9}]
    two = _neighbours((0.9, 48.80, 2.30, "FR", "Paris"), (0.9, 48.90, 2.40, "FR", "Paris"),
                      (0.9, 45.76, 4.83, "FR", "Lyon"))  # fmt: skip
    fused = fuse(vlm, two, FusionWeights(), temperature=0.05)
    assert fused.how == "refined" and fused.city == "Paris"
    assert fused.lat == pytest.approx(48.85, abs=1e-3) and fused.lon == pytest.approx(
        2.35, abs=1e-3
    )


def test_neighbours_that_disagree_on_the_city_leave_the_vlms_place():
    vlm = [PARIS | {"probability": 0.9}]
    fused = fuse(vlm, _neighbours((0.9, 45.76, 4.83, "FR", "Lyon")), FusionWeights(), 0.05)
    assert (fused.country_code, fused.city, fused.how) == ("FR", "Paris", "vlm")
    assert (fused.lat, fused.lon) == (PARIS["lat"], PARIS["lon"])


def test_weights_decide_who_wins_and_zero_silences_a_side():
    vlm = [PARIS | {"probability": 0.9}]
    nb = _neighbours((0.9, 41.9, 12.5, "IT", "Rome"), (0.8, 41.9, 12.5, "IT", "Rome"))
    assert fuse(vlm, nb, FusionWeights(vlm=1, knn=0), 0.05).country_code == "FR"
    assert fuse(vlm, nb, FusionWeights(vlm=0, knn=1), 0.05).country_code == "IT"
    with pytest.raises(ValueError, match="not both 0"):
        FusionWeights(vlm=0, knn=0)


def test_an_answer_without_candidates_is_one_candidate_with_its_confidence():
    row = {"status": "ok", **PARIS, "country_confidence": None, "candidates": None}
    assert vlm_candidates(row) == [PARIS | {"probability": 1.0}]
    assert vlm_candidates({**row, "country_confidence": 0.4})[0]["probability"] == 0.4
    assert vlm_candidates({"status": "error", "country_code": None}) == []
    empty = fuse([], _neighbours((0.5, 1.0, 2.0, None, None)), FusionWeights(), 0.05)
    assert empty.country_code is None and empty.how == "none"


def test_fitted_weights_follow_the_side_that_is_right():
    # The VLM says France every time; the neighbours are right (Italy) where the truth is Italy.
    nb_it = _neighbours((0.9, 41.9, 12.5, "IT", "Rome"))
    nb_fr = _neighbours((0.9, 48.8, 2.3, "FR", "Paris"))
    vlm = [PARIS | {"probability": 0.7}]
    examples = [(vlm, nb_it)] * 3 + [(vlm, nb_fr)]
    weights, acc = fit_weights(examples, ["IT", "IT", "IT", "FR"], temperature=0.05)
    assert acc == 1.0 and weights.knn > 0
    assert fuse(vlm, nb_it, weights, 0.05).country_code == "IT"
