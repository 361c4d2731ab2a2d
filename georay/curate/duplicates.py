"""Duplicate detection on one block of rows: exact (same bytes) and near (cosine of embeddings).

Pure functions (NumPy, pyarrow, faiss, scipy), no Ray; the resumable job around them is
:mod:`georay.curate.dedup`. One keeper rule everywhere: the most locatable row of a group wins,
ties go to the smallest ``image_id``, so the outcome never depends on row order.

Near duplicates: embeddings are L2-normalised, so inner product = cosine. Each row's ``k``
nearest neighbours in its block are searched with faiss (exact ``IndexFlatIP`` up to
``exact_rows`` rows, an ``IndexIVFFlat`` above); neighbour pairs at or above the threshold are
edges, and every connected component of that graph is one duplicate group. Limits, by design:

* a component can chain: A~B and B~C put A and C in one group even when A and C are further
  apart than the threshold (consecutive frames of a slow drive collapse to one). ``similarity``
  reports each dropped row's cosine to its keeper, so chained rows show it;
* only the ``k`` nearest neighbours of a row become edges: a row with more than ``k``
  duplicates still joins their group through them, but two groups linked only by its
  ``(k+1)``-th neighbour stay apart;
* above ``exact_rows`` the IVF index visits ``nprobe`` of its lists per query, so a pair whose
  rows fall in lists not visited is missed (rare for near duplicates, which sit close together).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from georay.geo.cells import latlng_to_cells

UNLOCATED = "unlocated"


def block_keys(
    n: int,
    res: int,
    lat: np.ndarray | None = None,
    lon: np.ndarray | None = None,
    country: np.ndarray | None = None,
) -> np.ndarray:
    """Candidate block of each of ``n`` rows: its H3 cell at ``res``, else ``country:XX``, else
    ``unlocated``. Rows are compared for near duplicates only within a block."""
    keys = np.full(n, UNLOCATED, dtype=object)
    located = np.zeros(n, dtype=bool)
    if lat is not None and lon is not None:
        cells = latlng_to_cells(np.asarray(lat, float), np.asarray(lon, float), res)
        located = np.array([c is not None for c in cells], dtype=bool)
        keys[located] = cells[located]
    if country is not None:
        for i in np.flatnonzero(~located):
            if isinstance(country[i], str) and country[i]:
                keys[i] = f"country:{country[i]}"
    return keys


def best_first(ids: np.ndarray, locatability: np.ndarray, groups: np.ndarray | None = None):
    """Row indices ordered by group, then locatability descending (NaN last), then image_id."""
    loc = np.asarray(locatability, dtype=np.float64)
    neg = np.where(np.isnan(loc), np.inf, -loc)
    keys = (np.asarray(ids, dtype=str), neg)
    return np.lexsort(keys + ((groups,) if groups is not None else ()))


def exact_keepers(table: pa.Table) -> np.ndarray:
    """For each row of ``table`` (``image_id``, ``sha256``, ``locatability``), the index of the
    row that represents its bytes: itself unless another row with the same ``sha256`` wins the
    keeper rule. Rows without a hash represent themselves.

    Sorting happens in Arrow (hex digests never become Python or NumPy strings), so this stays
    cheap at millions of rows.
    """
    n = table.num_rows
    keeper = np.arange(n)
    order = pc.sort_indices(
        table.select(["sha256", "locatability", "image_id"]),
        sort_keys=[
            ("sha256", "ascending", "at_end"),
            ("locatability", "descending", "at_end"),
            ("image_id", "ascending", "at_end"),
        ],  # fmt: skip
    ).to_numpy()
    sha = table["sha256"].take(pa.array(order))
    hashed = int(n - sha.null_count)
    if hashed < 2:
        return keeper
    order, sha = order[:hashed], sha.slice(0, hashed)
    new = np.ones(hashed, dtype=bool)
    new[1:] = ~pc.equal(sha.slice(1), sha.slice(0, hashed - 1)).to_numpy(zero_copy_only=False)
    first = np.maximum.accumulate(np.where(new, np.arange(hashed), 0))
    keeper[order] = order[first]
    return keeper


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, contiguous, as faiss wants); zero rows stay zero."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


def _index(x: np.ndarray, exact_rows: int, nprobe: int, seed: int):
    """A faiss inner-product index over ``x``: exact up to ``exact_rows`` rows, IVF above."""
    import faiss

    n, d = x.shape
    if n <= exact_rows:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = max(1, int(4 * math.sqrt(n)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        # faiss trains on at most 256 points per list anyway; a seeded sample keeps it fast.
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(n, min(n, 64 * nlist), replace=False))]
        index.train(sample)
        index.nprobe = min(nprobe, nlist)
    index.add(x)
    return index


def near_pairs(
    x: np.ndarray, threshold: float, *, k: int = 16, exact_rows: int = 20_000,
    nprobe: int = 16, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Pairs ``(i, j)``, ``i < j``, among each row's ``k`` nearest neighbours with cosine
    ``>= threshold``, and their cosines. ``x`` must be L2-normalised."""
    n = len(x)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    index = _index(x, exact_rows, nprobe, seed)
    sims, nbrs = index.search(x, min(k + 1, n))  # + 1: a row finds itself first
    rows = np.repeat(np.arange(n), nbrs.shape[1])
    nbrs, sims = nbrs.ravel(), sims.ravel()
    keep = (nbrs >= 0) & (nbrs != rows) & (sims >= threshold)
    i, j, s = rows[keep], nbrs[keep], sims[keep]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    pairs, first = np.unique(lo * n + hi, return_index=True)
    return pairs // n, pairs % n, s[first]


def near_groups(
    ids: np.ndarray, locatability: np.ndarray, x: np.ndarray, threshold: float, **search
) -> dict[str, np.ndarray]:
    """Near-duplicate groups of one block and their keepers.

    Parameters
    ----------
    ids, locatability
        ``image_id`` and score of each row (the keeper rule).
    x
        Embeddings ``(n, dim)``; normalised here.
    threshold
        Cosine at or above which two rows are duplicates.
    search
        ``k``, ``exact_rows``, ``nprobe``, ``seed`` of :func:`near_pairs`.

    Returns
    -------
    dict
        ``keeper`` (index of each row's keeper; itself for kept rows), ``similarity``
        (float32 cosine to the keeper; NaN for kept rows) and ``pairs`` (edges found).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(ids)
    x = normalise(x)
    i, j, _ = near_pairs(x, threshold, **search)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    order = best_first(ids, locatability, comp)
    start = np.ones(n, dtype=bool)
    start[1:] = comp[order][1:] != comp[order][:-1]
    keeper = np.empty(n, dtype=np.int64)
    keeper[order] = order[np.maximum.accumulate(np.where(start, np.arange(n), 0))]
    similarity = np.full(n, np.nan, dtype=np.float32)
    dropped = keeper != np.arange(n)
    similarity[dropped] = np.einsum("ij,ij->i", x[dropped], x[keeper[dropped]])
    return {"keeper": keeper, "similarity": similarity, "pairs": np.int64(len(i))}


def split_block(x: np.ndarray, parts: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means of ``x`` (normalised) into ``parts`` sub-blocks: (centroids, labels).

    For a block too large for one task (e.g. a corpus without coordinates): near duplicates sit
    close together and almost always fall to the same centroid; a pair split by a centroid
    boundary is missed, as in SemDedup.
    """
    import faiss

    km = faiss.Kmeans(x.shape[1], parts, niter=20, seed=seed, spherical=True, verbose=False)
    km.train(x)
    return km.centroids, assign(x, km.centroids)


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (inner product) of each normalised row."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return index.search(normalise(x), 1)[1][:, 0]
