"""The fused method's core (issue 21): log-linear country fusion, the place from the VLM, the
overruling neighbours' city or a same-scene gallery photo, weights fitted on labelled rows."""

from __future__ import annotations

import numpy as np
import pytest

from georay.archive.fusion import Fusion, Neighbours, fit_weights, fuse, vlm_candidates
from georay.geo.gazetteer import get_gazetteer

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
    fused = fuse(vlm, _neighbours(exact, *others), Fusion())
    assert (fused.country_code, fused.city, fused.how) == ("IT", "Rome", "scene")
    # The neighbour's point, not Rome's centre.
    assert (fused.lat, fused.lon) == (pytest.approx(41.95), pytest.approx(12.45))
    assert list(fused.probabilities)[0] == "IT" and sum(fused.probabilities.values()) == (
        pytest.approx(1.0))  # fmt: skip
    # Without that neighbour the VLM's answer stands, at its own place.
    alone = fuse(vlm, _neighbours(*others), Fusion())
    assert (alone.country_code, alone.city, alone.how) == ("FR", "Paris", "vlm")
    assert (alone.lat, alone.lon) == (PARIS["lat"], PARIS["lon"])


def test_similar_neighbours_leave_the_point_same_scene_ones_move_it():
    vlm = [PARIS | {"probability": 0.9}]
    paris = [(0.9, 48.80, 2.30, "FR", "Paris"), (0.9, 48.90, 2.40, "FR", "Paris")]
    lyon = (0.9, 45.76, 4.83, "FR", "Lyon")
    similar = fuse(vlm, _neighbours(*paris, lyon), Fusion())
    assert (similar.city, similar.how) == ("Paris", "vlm")
    assert (similar.lat, similar.lon) == (PARIS["lat"], PARIS["lon"])
    # The same two at cosine 0.99 are the same scene: their weighted centre, the look-alike
    # in Lyon (as similar, but not the same scene) left out.
    scene = fuse(vlm, _neighbours(*[(0.99, *p[1:]) for p in paris], lyon), Fusion())
    assert (scene.city, scene.how) == ("Paris", "scene")
    assert scene.lat == pytest.approx(48.85, abs=1e-3)
    assert scene.lon == pytest.approx(2.35, abs=1e-3)


def test_neighbours_that_disagree_on_the_city_leave_the_vlms_place():
    vlm = [PARIS | {"probability": 0.9}]
    fused = fuse(vlm, _neighbours((0.9, 45.76, 4.83, "FR", "Lyon")), Fusion())
    assert (fused.country_code, fused.city, fused.how) == ("FR", "Paris", "vlm")
    assert (fused.lat, fused.lon) == (PARIS["lat"], PARIS["lon"])


def test_neighbours_that_overrule_the_country_give_their_city_at_its_centre():
    vlm = [PARIS | {"probability": 0.9}]
    rome = _neighbours((0.9, 41.95, 12.45, "IT", "Rome"), (0.8, 41.85, 12.55, "IT", "Rome"))
    fused = fuse(vlm, rome, Fusion(vlm=0, knn=1))
    assert (fused.country_code, fused.city, fused.how) == ("IT", "Rome", "knn")
    centre = get_gazetteer().city("Rome", "IT")
    assert (fused.lat, fused.lon) == (pytest.approx(centre.lat), pytest.approx(centre.lon))
    # A neighbour whose city name's best-known place is far from its point keeps its point.
    far = fuse(vlm, _neighbours((0.9, 45.46, 9.19, "IT", "Rome")), Fusion(vlm=0, knn=1))
    assert (far.city, far.lat, far.lon) == ("Rome", 45.46, 9.19)


def test_weights_decide_who_wins_and_zero_silences_a_side():
    vlm = [PARIS | {"probability": 0.9}]
    nb = _neighbours((0.9, 41.9, 12.5, "IT", "Rome"), (0.8, 41.9, 12.5, "IT", "Rome"))
    assert fuse(vlm, nb, Fusion(vlm=1, knn=0)).country_code == "FR"
    assert fuse(vlm, nb, Fusion(vlm=0, knn=1)).country_code == "IT"
    with pytest.raises(ValueError, match="not both 0"):
        Fusion(vlm=0, knn=0)


def test_an_answer_without_candidates_is_one_candidate_with_its_confidence():
    row = {"status": "ok", **PARIS, "country_confidence": None, "candidates": None}
    assert vlm_candidates(row) == [PARIS | {"probability": 1.0}]
    assert vlm_candidates({**row, "country_confidence": 0.4})[0]["probability"] == 0.4
    assert vlm_candidates({"status": "error", "country_code": None}) == []
    empty = fuse([], _neighbours((0.5, 1.0, 2.0, None, None)), Fusion())
    assert empty.country_code is None and empty.how == "none"


def test_fitted_weights_follow_the_side_that_is_right():
    # The VLM says France every time; the neighbours are right (Italy) where the truth is Italy.
    nb_it = _neighbours((0.9, 41.9, 12.5, "IT", "Rome"))
    nb_fr = _neighbours((0.9, 48.8, 2.3, "FR", "Paris"))
    vlm = [PARIS | {"probability": 0.7}]
    examples = [(vlm, nb_it)] * 3 + [(vlm, nb_fr)]
    weights, acc = fit_weights(examples, ["IT", "IT", "IT", "FR"], Fusion())
    assert acc == 1.0 and weights.knn > 0
    assert fuse(vlm, nb_it, weights).country_code == "IT"


def test_the_defaults_are_georay_predicts():
    from georay.archive.job import fusion_of
    from georay.predict.config import PredictConfig

    cfg = PredictConfig(input="in.parquet", model="m", output="out")
    assert fusion_of(cfg) == Fusion()
    with pytest.raises(ValueError, match="same_scene_similarity"):
        PredictConfig(input="in.parquet", model="m", output="out", same_scene_similarity=1.5)


def test_same_scene_copies_in_two_cities_do_not_average_between_them():
    vlm = [PARIS | {"probability": 0.9}]
    copies = _neighbours((0.99, 48.85, 2.35, "FR", "Paris"), (0.98, 45.76, 4.83, "FR", "Lyon"))
    fused = fuse(vlm, copies, Fusion())
    assert (fused.city, fused.how) == ("Paris", "scene")
    assert (fused.lat, fused.lon) == (pytest.approx(48.85), pytest.approx(2.35))
