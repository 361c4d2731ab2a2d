"""The fused method's core: the VLM's candidates and a photo's nearest gallery neighbours, one place.

No Ray, no torch: :mod:`georay.archive.job` runs it per row in the bulk job.

**Country: log-linear fusion** of two place distributions over the countries either names::

    score(c) = w_vlm * log p_vlm(c) + w_knn * log p_knn(c)

``p_vlm`` sums the VLM's ``candidates`` per country (before the confidence issue's candidates
reach a row, its answer alone is one candidate with the model's country confidence, or 1 when it
has none); ``p_knn`` sums the neighbours' softmax similarity weights per country (the kNN
baseline's weights, :func:`georay.baseline.index.neighbour_weights`). Both are smoothed with
``floor`` spread over the countries in play, so one side's silence about a country is strong
evidence, not a veto (log 0). The fused country is the argmax; its probability is the softmax of
the scores, the row's ``country_confidence``.

**Place: refinement by the agreeing neighbours** (PIGEON's refinement inside the chosen cell).
Neighbours in the fused country that share the VLM's city there agree with both sides: the answer
is their similarity-weighted mean point on the sphere, with that city (one near-identical photo
takes nearly all the weight and gives its own point; several equally similar ones average out
their scatter around the place: on the demo world that lands closer than either the VLM's city
centre or one neighbour's point, BENCHMARKS.md "archive"). Where the VLM named another country
(the neighbours overruled it) or no city, the neighbours in the fused country give the weighted
geodesic medoid (:func:`georay.baseline.index.locate`): a real gallery point, robust to a
look-alike in another city, with its city. Neighbours there that disagree on the city leave the
VLM's place (it wins on city F1); no neighbour there: the VLM's own place for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from georay.baseline.index import locate, neighbour_weights
from georay.geo.distance import unit_vectors

# Smoothing of each distribution: this much mass spread evenly over the countries in play.
DEFAULT_FLOOR = 0.05


@dataclass(frozen=True)
class FusionWeights:
    """Exponents of the two distributions (``w_vlm``, ``w_knn``) and the smoothing floor."""

    vlm: float = 1.0
    knn: float = 1.0
    floor: float = DEFAULT_FLOOR

    def __post_init__(self) -> None:
        if self.vlm < 0 or self.knn < 0 or self.vlm + self.knn == 0:
            raise ValueError(f"fusion weights must be >= 0, not both 0: {self.vlm}, {self.knn}")
        if not 0 < self.floor < 1:
            raise ValueError(f"fusion floor must be in (0, 1), got {self.floor}")


@dataclass
class Neighbours:
    """One photo's k nearest gallery items (valid ones only), best first."""

    image_id: np.ndarray  # object
    sims: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    country: np.ndarray  # object, ISO alpha-2
    city: np.ndarray  # object

    def __len__(self) -> int:
        return len(self.sims)


@dataclass(frozen=True)
class Fused:
    """The fused answer: country code, city, point, how it was placed, and the distribution."""

    country_code: str | None
    city: str | None
    lat: float | None
    lon: float | None
    how: str  # "refined" (gallery medoid), "vlm" (the VLM's own place), "none"
    probabilities: dict[str, float]  # country code -> fused probability, most probable first
    places: dict[str, dict]  # country code -> the candidate place for that country


def vlm_candidates(row: dict) -> list[dict]:
    """The VLM row's candidates, or its answer as one candidate (confidence, else 1)."""
    if row.get("candidates"):
        return [c for c in row["candidates"] if c.get("country_code")]
    if row.get("status") != "ok" or not row.get("country_code"):
        return []
    p = row.get("country_confidence")
    return [{k: row.get(k) for k in ("country", "country_code", "city", "lat", "lon")}
            | {"probability": 1.0 if p is None else float(p)}]  # fmt: skip


def _smoothed(mass: dict[str, float], countries: list[str], floor: float) -> np.ndarray:
    p = np.array([mass.get(c, 0.0) for c in countries], dtype=float)
    total = p.sum()
    p = p / total if total > 0 else np.full(len(countries), 1.0 / len(countries))
    return (1 - floor) * p + floor / len(countries)


def fuse(
    candidates: list[dict],
    neighbours: Neighbours,
    weights: FusionWeights,
    temperature: float,
) -> Fused:
    """Fuse one photo's VLM ``candidates`` (:func:`vlm_candidates`) with its ``neighbours``.

    Parameters
    ----------
    temperature
        Of the neighbours' softmax similarity weights (the kNN baseline's ``--temperature``).
    """
    vlm_mass: dict[str, float] = {}
    for c in candidates:
        vlm_mass[c["country_code"]] = vlm_mass.get(c["country_code"], 0.0) + c["probability"]
    knn_mass: dict[str, float] = {}
    w = np.zeros(0)
    if len(neighbours):
        w = neighbour_weights(neighbours.sims[None], np.ones((1, len(neighbours)), bool),
                              temperature)[0]  # fmt: skip
        for code, weight in zip(neighbours.country, w, strict=True):
            if code:
                knn_mass[code] = knn_mass.get(code, 0.0) + float(weight)
    countries = list(dict.fromkeys([*vlm_mass, *knn_mass]))
    if not countries:
        return Fused(None, None, None, None, "none", {}, {})
    score = weights.vlm * np.log(_smoothed(vlm_mass, countries, weights.floor)) + (
        weights.knn * np.log(_smoothed(knn_mass, countries, weights.floor))
    )
    prob = np.exp(score - score.max())
    prob /= prob.sum()
    order = np.argsort(-prob, kind="stable")
    probabilities = {countries[i]: float(prob[i]) for i in order}
    places = {code: _place(code, candidates, neighbours, temperature) for code in probabilities}
    best = countries[int(order[0])]
    chosen = places[best]
    return Fused(best, chosen["city"], chosen["lat"], chosen["lon"], chosen["how"],
                 probabilities, places)  # fmt: skip


def _place(code: str, candidates: list[dict], nb: Neighbours, temperature: float) -> dict:
    """Where to put the answer if the country is ``code``: the medoid of the neighbours there
    that agree with the VLM's city (all of them there when the VLM named none there), else the
    VLM's own place there."""
    own = next((c for c in candidates if c["country_code"] == code), None)
    inside = np.array([c == code for c in nb.country], dtype=bool)
    if own is not None and own.get("city"):
        agree = inside & np.array([c == own["city"] for c in nb.city], dtype=bool)
        if agree.any():
            lat, lon = weighted_centre(nb.lat[agree], nb.lon[agree], nb.sims[agree], temperature)
            return {"city": own["city"], "lat": lat, "lon": lon, "how": "refined"}
        if own.get("lat") is not None:  # neighbours there disagree on the city: the VLM's
            return {"city": own["city"], "lat": own["lat"], "lon": own["lon"], "how": "vlm"}
    if inside.any():
        j = int(locate(nb.lat[None], nb.lon[None], nb.sims[None], inside[None], temperature)[0])
        return {"city": nb.city[j], "lat": float(nb.lat[j]), "lon": float(nb.lon[j]),
                "how": "refined"}  # fmt: skip
    if own is not None and own.get("lat") is not None:
        return {"city": own.get("city"), "lat": own["lat"], "lon": own["lon"], "how": "vlm"}
    return {"city": None, "lat": None, "lon": None, "how": "none"}


def weighted_centre(
    lat: np.ndarray, lon: np.ndarray, sims: np.ndarray, temperature: float
) -> tuple[float, float]:
    """The softmax(similarity / temperature)-weighted mean point of neighbours on the sphere
    (mean of unit vectors, projected back), as (lat, lon) degrees."""
    w = neighbour_weights(sims[None], np.ones((1, len(sims)), bool), temperature)[0]
    v = (unit_vectors(lat, lon) * w[:, None]).sum(axis=0)
    v /= max(float(np.linalg.norm(v)), 1e-12)
    return float(np.degrees(np.arcsin(np.clip(v[2], -1, 1)))), float(
        np.degrees(np.arctan2(v[1], v[0]))
    )


def fit_weights(
    examples: list[tuple[list[dict], Neighbours]],
    truth: list[str],
    temperature: float,
    grid: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0),
) -> tuple[FusionWeights, float]:
    """The ``(w_vlm, w_knn)`` of ``grid`` x ``grid`` whose fused country is right most often on
    labelled ``examples`` (``truth``: their ISO country codes); ties go to the first found.

    Returns
    -------
    (FusionWeights, float)
        The weights and their country accuracy on ``examples``.
    """
    best, best_acc = FusionWeights(), -1.0
    for a in grid:
        for b in grid:
            if a == 0 and b == 0:
                continue
            weights = FusionWeights(vlm=a, knn=b)
            hits = [fuse(c, n, weights, temperature).country_code == t
                    for (c, n), t in zip(examples, truth, strict=True)]  # fmt: skip
            acc = float(np.mean(hits)) if hits else 0.0
            if acc > best_acc:
                best, best_acc = weights, acc
    return best, best_acc
