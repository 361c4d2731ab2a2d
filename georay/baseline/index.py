"""The retrieval baseline's core: a gallery's faiss index and where k neighbours point. No Ray
here; :mod:`georay.baseline.knn` runs it as a bulk job. The index is
:func:`georay.data.vectors.build_index` (why faiss, and which index at which gallery size, is
said there): at 10K vectors a flat index answered ~750 queries/s on 2 busy cores, at 1M a
brute-force scan does ~18 and the IVF index ~450, for a one-off build of ~8 minutes on 2 busy
cores and the vectors held once more in the lists (1 GiB per million 256-d vectors). HNSW
(M=32) was tried on 2 cores: no faster to build than IVF at 100K vectors and fewer true
neighbours found at the same speed; IVF also scales on with PQ codes (``IndexIVFPQ``) when
vectors outgrow memory.

Where k neighbours point (:func:`locate`): the similarity-weighted geodesic medoid of their
locations, the neighbour ``i`` minimising ``sum_j w_j * d(x_i, x_j)`` with
``w = softmax(similarity / temperature)``: a robust mode of the neighbours' locations (one
far-off look-alike cannot drag the answer into the sea, as a mean would) that is always a real
gallery place, so its country and city come with it. k = 1 is the classic nearest-neighbour
Im2GPS answer; the medoid over k neighbours plays the part of PIGEON's refinement among
retrieved candidates. Defaults k = 5, temperature 0.05, from a leave-one-out sweep on the demo
world's train views (BENCHMARKS.md, "knn"): k <= 5 with a sharp softmax scores the country as
well as k = 1 (within one standard error) and lands as close or closer (latest sweep: median
6.3 vs 6.5 km; temperatures 0.01-0.05 within 0.1 km of each other); uniform weights over many
neighbours lose (k = 50: 0.80 vs 0.93 country accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from georay.data.vectors import normalise
from georay.geo.distance import haversine_km


@dataclass
class Gallery:
    """Gallery embeddings' index and each item's place (arrays aligned with the index rows)."""

    index: object  # a faiss index
    image_id: np.ndarray  # object
    lat: np.ndarray
    lon: np.ndarray
    country: np.ndarray  # object, ISO alpha-2
    city: np.ndarray  # object

    def __len__(self) -> int:
        return len(self.lat)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (the index as serialized bytes), to ship through Ray's object store."""
        import faiss

        return {
            "index": faiss.serialize_index(self.index),
            "image_id": self.image_id,
            "lat": self.lat,
            "lon": self.lon,
            "country": self.country,
            "city": self.city,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Gallery:
        import faiss

        index = faiss.deserialize_index(np.asarray(arrays["index"]))
        return cls(index, *(arrays[k] for k in ("image_id", "lat", "lon", "country", "city")))

    def search(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, gallery rows), each ``(n, k)``, best first; -1 rows where the gallery
        has fewer than k items. ``exclude`` (object array of the queries' image ids): a
        gallery item with the query's own id is skipped (a query in the gallery would find
        itself)."""
        extra = 1 if exclude is not None else 0
        sims, rows = self.index.search(normalise(queries), k + extra)
        if exclude is None:
            return sims, rows
        own = (rows >= 0) & (self.image_id[np.maximum(rows, 0)] == exclude[:, None])
        # Stable sort keeps the similarity order; the own item (if any) moves to the end.
        order = np.argsort(own, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, order, 1), np.take_along_axis(rows, order, 1)


def neighbour_weights(sims: np.ndarray, valid: np.ndarray, temperature: float) -> np.ndarray:
    """Weights of each query's neighbours: softmax(similarity / temperature) over the valid
    ones (``temperature <= 0``: uniform)."""
    if temperature <= 0:
        w = valid.astype(np.float64)
    else:
        z = np.where(valid, sims / temperature, -np.inf)
        z = z - z.max(axis=1, keepdims=True)
        w = np.exp(z)
    return w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)


def locate(
    lat: np.ndarray, lon: np.ndarray, sims: np.ndarray, valid: np.ndarray, temperature: float
) -> np.ndarray:
    """Which of each query's k neighbours is the weighted geodesic medoid (column index).

    Parameters
    ----------
    lat, lon, sims, valid
        ``(n, k)``: the neighbours' places, similarities, and which exist.
    temperature
        Of the softmax weights (:func:`neighbour_weights`).
    """
    w = neighbour_weights(sims, valid, temperature)
    d = haversine_km(lat[:, :, None], lon[:, :, None], lat[:, None, :], lon[:, None, :])
    cost = np.einsum("nij,nj->ni", np.nan_to_num(d, nan=0.0), w)
    cost[~valid] = np.inf
    return np.argmin(cost, axis=1)


def describe(gallery_ids: np.ndarray, sims: np.ndarray, best: int, top: int = 3) -> str:
    """The ``reasons`` text of a retrieval answer: the chosen neighbour and the closest ones."""
    near = ", ".join(f"{gallery_ids[j]} ({sims[j]:.3f})" for j in range(min(top, len(sims))))
    return f"medoid of {len(sims)} neighbours: {gallery_ids[best]}; nearest: {near}"


@dataclass
class Votes:
    """How a query's neighbours vote for places (:func:`place_votes`)."""

    country: float  # probability of the answer's country
    city: float | None  # of the answer's city within that country (None: the answer has none)
    candidates: list[tuple[int, float]]  # (neighbour column, probability), the answer first


def place_votes(
    country: np.ndarray, city: np.ndarray, w: np.ndarray, answer: int, top_k: int
) -> Votes:
    """The neighbours' weights grouped by place: the answer's confidences and the top-k.

    A country's probability is the summed weight of its neighbours; a city's, of the neighbours
    in that city of that country (so it is never above its country's). Candidates are one per
    country, at its most probable city (a neighbour of the country without a city stands for
    the country as a whole), the answer's country first, then by country probability: each is
    a distinct place (their probabilities sum to <= 1) and the top-k names k countries, which
    is what top-k country accuracy asks of them.

    Parameters
    ----------
    country, city : numpy.ndarray
        ``(n,)`` objects: the valid neighbours' ISO codes and cities, most similar first.
    w : numpy.ndarray
        ``(n,)`` their weights (:func:`neighbour_weights`), summing to 1.
    answer : int
        The neighbour whose place is the answer (the medoid).
    top_k : int
        Most candidates returned.
    """
    w = np.asarray(w, dtype=np.float64)  # float32 weights can sum past 1 by a rounding
    w = w / w.sum()
    by_country: dict = {}
    by_city: dict = {}
    for c, t, wi in zip(country, city, w, strict=True):
        by_country[c] = by_country.get(c, 0.0) + float(wi)
        by_city[(c, t)] = by_city.get((c, t), 0.0) + float(wi)

    def p_place(i: int) -> float:  # the finest level the neighbour's place names
        key = (country[i], city[i])
        return min(by_city[key] if city[i] is not None else by_country[country[i]], 1.0)

    best: dict = {}  # country -> (probability, column); neighbours come most similar first
    for i in range(len(w)):
        if country[i] not in best or p_place(i) > best[country[i]][0]:
            best[country[i]] = (p_place(i), i)
    a = country[answer]
    best[a] = (p_place(answer), answer)
    others = sorted((c for c in best if c != a), key=lambda c: -by_country[c])  # stable
    ranked = [best[a]] + [best[c] for c in others]
    city_p = p_place(answer) if city[answer] is not None else None
    return Votes(min(by_country[a], 1.0), city_p, [(i, p) for p, i in ranked[: max(top_k, 1)]])
