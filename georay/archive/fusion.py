"""The fused method's core: the VLM's candidates and a photo's nearest gallery neighbours, one place.

No Ray, no torch: :mod:`georay.archive.job` runs it per row in the bulk job.

**Country: log-linear fusion** of two place distributions over the countries either names::

    score(c) = w_vlm * log p_vlm(c) + w_knn * log p_knn(c)

``p_vlm`` sums the VLM's ``candidates`` per country (before the confidence issue's candidates
reach a row, its answer alone is one candidate with the model's country confidence, or 1 when it
has none); ``p_knn`` is the kNN baseline's vote: every neighbour given (``--vote-neighbours``),
its softmax similarity weight (``--vote-temperature``) summed per country. Both are smoothed with
``floor`` spread over the countries in play, so one side's silence about a country is strong
evidence, not a veto (log 0). The fused country is the argmax; its probability is the softmax of
the scores, the row's ``country_confidence``.

**Place, in the chosen country** (``how``):

- ``vlm``: the VLM's own place there (its city's centre), when one of its candidates names it;
- ``knn``: where the neighbours overruled the VLM's country, the city of their weighted geodesic
  medoid (:func:`georay.baseline.index.locate`, the first ``--neighbours`` there), at that city's
  centre like a VLM answer;
- ``scene``: a gallery photo of the same scene (cosine >= ``same_scene``, curate dedup's notion
  of a near duplicate) gives its own point and city, whatever the above said: a re-shoot of a
  tagged photo is the best evidence an archive has.

A merely similar neighbour does not move the point: on the demo world, moving the VLM's city
centre to the agreeing neighbours' weighted centre put answers further from the truth
(BENCHMARKS.md "archive"): a view of a city is no nearer another view of it than its centre.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from georay.baseline.index import locate, neighbour_weights
from georay.geo.distance import haversine_km, unit_vectors
from georay.geo.gazetteer import get_gazetteer
from georay.geo.places import CITY_RADIUS_KM

# Smoothing of each distribution: this much mass spread evenly over the countries in play.
DEFAULT_FLOOR = 0.05


@dataclass(frozen=True)
class Fusion:
    """How the two sides are weighed and the place chosen: the ``georay predict`` flags
    ``--fusion-vlm-weight --fusion-knn-weight --neighbours --temperature --vote-temperature
    --same-scene-similarity``."""

    vlm: float = 1.0  # exponent of p_vlm
    knn: float = 1.0  # exponent of p_knn
    floor: float = DEFAULT_FLOOR
    neighbours: int = 5  # the medoid among the first this many in the chosen country
    temperature: float = 0.05  # of the medoid's weights
    vote_temperature: float = 0.01  # of p_knn's weights
    same_scene: float = 0.95  # cosine at or above which a neighbour is the same scene

    def __post_init__(self) -> None:
        if self.vlm < 0 or self.knn < 0 or self.vlm + self.knn == 0:
            raise ValueError(f"fusion weights must be >= 0, not both 0: {self.vlm}, {self.knn}")
        if not 0 < self.floor < 1:
            raise ValueError(f"fusion floor must be in (0, 1), got {self.floor}")


@dataclass
class Neighbours:
    """One photo's nearest gallery items (valid ones only), best first."""

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
    how: str  # "vlm", "knn", "scene" (module docstring), "none"
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


def fuse(candidates: list[dict], neighbours: Neighbours, fusion: Fusion) -> Fused:
    """Fuse one photo's VLM ``candidates`` (:func:`vlm_candidates`) with its ``neighbours``."""
    vlm_mass: dict[str, float] = {}
    for c in candidates:
        vlm_mass[c["country_code"]] = vlm_mass.get(c["country_code"], 0.0) + c["probability"]
    knn_mass: dict[str, float] = {}
    if len(neighbours):
        w = neighbour_weights(neighbours.sims[None], np.ones((1, len(neighbours)), bool),
                              fusion.vote_temperature)[0]  # fmt: skip
        for code, weight in zip(neighbours.country, w, strict=True):
            if code:
                knn_mass[code] = knn_mass.get(code, 0.0) + float(weight)
    countries = list(dict.fromkeys([*vlm_mass, *knn_mass]))
    if not countries:
        return Fused(None, None, None, None, "none", {}, {})
    score = fusion.vlm * np.log(_smoothed(vlm_mass, countries, fusion.floor)) + (
        fusion.knn * np.log(_smoothed(knn_mass, countries, fusion.floor))
    )
    prob = np.exp(score - score.max())
    prob /= prob.sum()
    order = np.argsort(-prob, kind="stable")
    probabilities = {countries[i]: float(prob[i]) for i in order}
    places = {code: _place(code, candidates, neighbours, fusion) for code in probabilities}
    best = countries[int(order[0])]
    chosen = places[best]
    return Fused(best, chosen["city"], chosen["lat"], chosen["lon"], chosen["how"],
                 probabilities, places)  # fmt: skip


def _place(code: str, candidates: list[dict], nb: Neighbours, fusion: Fusion) -> dict:
    """Where to put the answer if the country is ``code`` (module docstring, "Place")."""
    inside = np.array([c == code for c in nb.country], dtype=bool)
    scene = inside & (nb.sims >= fusion.same_scene)
    if scene.any():  # the most similar one's city: copies that disagree on it do not average
        city = nb.city[np.flatnonzero(scene)[0]]
        scene &= np.array([c == city for c in nb.city], dtype=bool)
        lat, lon = weighted_centre(nb.lat[scene], nb.lon[scene], nb.sims[scene],
                                   fusion.temperature)  # fmt: skip
        return {"city": city, "lat": lat, "lon": lon, "how": "scene"}
    own = next((c for c in candidates if c["country_code"] == code), None)
    if own is not None and own.get("city") and own.get("lat") is not None:
        return {"city": own["city"], "lat": own["lat"], "lon": own["lon"], "how": "vlm"}
    if inside.any():
        first = inside & (np.arange(len(nb)) < fusion.neighbours)
        among = first if first.any() else inside
        j = int(locate(nb.lat[None], nb.lon[None], nb.sims[None], among[None],
                       fusion.temperature)[0])  # fmt: skip
        lat, lon = city_centre(nb.city[j], code, float(nb.lat[j]), float(nb.lon[j]))
        return {"city": nb.city[j], "lat": lat, "lon": lon, "how": "knn"}
    if own is not None and own.get("lat") is not None:
        return {"city": own.get("city"), "lat": own["lat"], "lon": own["lon"], "how": "vlm"}
    return {"city": None, "lat": None, "lon": None, "how": "none"}


def city_centre(city: str | None, code: str, lat: float, lon: float) -> tuple[float, float]:
    """The gazetteer's centre of ``city`` in country ``code``, where a VLM answer naming it is
    put; the point (``lat``, ``lon``) itself when the name is unknown or its best-known place is
    not the one near the point (a small town sharing a big city's name)."""
    place = get_gazetteer().city(city, code) if city else None
    if place is None or haversine_km(place.lat, place.lon, lat, lon) > 2 * CITY_RADIUS_KM:
        return lat, lon
    return float(place.lat), float(place.lon)


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
    base: Fusion,
    grid: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0),
) -> tuple[Fusion, float]:
    """``base`` with the ``(w_vlm, w_knn)`` of ``grid`` x ``grid`` whose fused country is right
    most often on labelled ``examples`` (``truth``: their ISO country codes); ties go to the
    first found.

    Returns
    -------
    (Fusion, float)
        The settings and their country accuracy on ``examples``.
    """
    best, best_acc = base, -1.0
    for a in grid:
        for b in grid:
            if a == 0 and b == 0:
                continue
            fusion = dataclasses.replace(base, vlm=a, knn=b)
            hits = [fuse(c, n, fusion).country_code == t
                    for (c, n), t in zip(examples, truth, strict=True)]  # fmt: skip
            acc = float(np.mean(hits)) if hits else 0.0
            if acc > best_acc:
                best, best_acc = fusion, acc
    return best, best_acc
