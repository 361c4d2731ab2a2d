"""The retrieval baseline's core: a faiss index over a geotagged gallery, and where k neighbours
point. No Ray here; :mod:`georay.baseline.knn` runs it as a bulk job.

Why faiss: it is the standard library for nearest-neighbour search over dense vectors (exact
and approximate indexes, BLAS-batched inner products, OpenMP), a single wheel (``faiss-cpu``)
with no service to run, and its indexes serialize to bytes, so the driver builds the index once
and every actor receives it through the object store. Embeddings are L2-normalised, so the
inner product is the cosine similarity.

Index by gallery size (``kind="auto"``), measured in BENCHMARKS.md ("knn"):

* up to :data:`FLAT_MAX` (50K) vectors, ``IndexFlatIP``: exact, nothing to train. A flat search
  scans every vector, so its cost grows with the gallery; at 10K vectors it answered ~750
  queries/s on 2 busy cores (a numpy matrix product + argpartition did ~1,350: at that size
  either is far faster than embedding the query images), at 1M a brute-force scan does ~18;
* above, ``IndexIVFFlat``: k-means into ``nlist = 4 * sqrt(n)`` lists (trained on a sample of
  40 vectors per list), searching the ``nprobe = 32`` nearest lists only: at 1M vectors ~450
  queries/s (25x brute force) with recall@5 0.97 and the same answer as the exact neighbours
  in every query measured, for a one-off build of ~8 minutes on 2 busy cores and the vectors
  held once more in the lists (1 GiB per million 256-d vectors). HNSW (M=32) was tried on 2
  cores: no faster to build than IVF at 100K vectors and fewer true neighbours found at the
  same speed; IVF also scales on with PQ codes (``IndexIVFPQ``) when vectors outgrow memory.

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

from georay.geo.distance import haversine_km

FLAT_MAX = 50_000
# k-means of the IVF lists: faiss asks for >= 39 training vectors per list; 10 iterations
# instead of faiss's 25 train 2.5x faster (the recall that gives is in BENCHMARKS.md, knn).
IVF_TRAIN_PER_LIST = 40
IVF_KMEANS_ITERATIONS = 10


def normalized(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, C order: what faiss wants)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def build_faiss(
    emb: np.ndarray, kind: str = "auto", *, nprobe: int = 32, seed: int = 0, threads: int = 0
):
    """A faiss inner-product index over ``emb`` (already normalised).

    Parameters
    ----------
    kind
        ``"flat"`` (exact), ``"ivf"`` or ``"auto"`` (flat up to :data:`FLAT_MAX` vectors).
    nprobe
        Inverted lists an IVF index searches per query.
    threads
        OpenMP threads for building (0: faiss's default, every core).
    """
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    n, dim = emb.shape
    if kind == "auto":
        kind = "flat" if n <= FLAT_MAX else "ivf"
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = max(1, int(4 * np.sqrt(n)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = rng.choice(n, size=min(n, IVF_TRAIN_PER_LIST * nlist), replace=False)
        index.cp.seed = seed
        index.cp.niter = IVF_KMEANS_ITERATIONS
        index.train(emb[np.sort(sample)])
        index.nprobe = nprobe
    else:
        raise ValueError(f"index kind must be auto, flat or ivf, not {kind!r}")
    index.add(emb)
    return index


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
        sims, rows = self.index.search(normalized(queries), k + extra)
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
