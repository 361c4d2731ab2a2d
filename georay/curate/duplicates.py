"""Duplicate detection on one block of rows: exact (same bytes), perceptual (pHash within a
Hamming distance) and near (cosine of embeddings).

Pure functions (NumPy, pyarrow, faiss, scipy), no Ray; the resumable job around them is
:mod:`georay.curate.dedup`. One keeper rule everywhere: the most locatable row of a group wins,
ties go to the smallest ``image_id``, so the outcome never depends on row order.

Edges: each row's ``k`` nearest neighbours in its block at or above the cosine threshold
(:func:`georay.data.vectors.build_index`), and every pair whose hashes are within the Hamming
distance (multi-index hashing, not all pairs). Each connected component of that one graph is a
duplicate group. Limits, by design:

* a component can chain: A~B and B~C group A and C even when they are further apart than the
  threshold (frames of a slow drive collapse to one); ``similarity`` (each dropped row's cosine
  to its keeper) shows it;
* only the ``k`` nearest neighbours become edges: two groups linked only by a row's
  ``(k+1)``-th neighbour stay apart;
* an IVF index (above ``exact_rows``) misses a pair whose rows fall in lists it did not visit.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from georay.data.vectors import build_index, normalise
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
    row that represents its bytes: the keeper among the rows with its ``sha256`` (itself when
    it has none). Sorted in Arrow, so hex digests never become Python strings."""
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
    same = pc.equal(sha.slice(1), sha.slice(0, hashed - 1)).to_numpy(zero_copy_only=False)
    keeper[order] = _run_heads(order, same)
    return keeper


def _run_heads(order: np.ndarray, same: np.ndarray) -> np.ndarray:
    """The first row of each row's run in ``order`` (``same[i]``: ``order[i + 1]`` is in the
    run of ``order[i]``), i.e. its keeper when each run is sorted best first."""
    start = np.r_[True, ~same]
    return order[np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))]


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
    index = build_index(x, exact_rows=exact_rows, nprobe=nprobe, seed=seed)
    sims, nbrs = index.search(x, min(k + 1, n))  # + 1: a row finds itself first
    rows = np.repeat(np.arange(n), nbrs.shape[1])
    nbrs, sims = nbrs.ravel(), sims.ravel()
    keep = (nbrs >= 0) & (nbrs != rows) & (sims >= threshold)
    i, j, s = rows[keep], nbrs[keep], sims[keep]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    pairs, first = np.unique(lo * n + hi, return_index=True)
    return pairs // n, pairs % n, s[first]


def hash_pairs(codes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, of binary codes ``(n, bytes)`` (uint8) at Hamming distance
    ``<= max_distance``: every such pair, never comparing all pairs.

    faiss' multi-index hashing: with the bits cut into ``max_distance + 1`` substrings, two
    codes within ``max_distance`` bits agree on at least one (pigeonhole), so only codes that
    share a substring are compared.
    """
    import faiss

    n, bits = len(codes), codes.shape[1] * 8
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    tables = max_distance + 1
    index = faiss.IndexBinaryMultiHash(bits, tables, bits // tables)
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    index.add(codes)
    lims, _, nbrs = index.range_search(codes, max_distance + 1)  # strictly below the radius
    rows = np.repeat(np.arange(n), np.diff(lims.astype(np.int64)))
    keep = nbrs > rows
    return rows[keep], nbrs[keep].astype(np.int64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits in which the rows of two ``(n, bytes)`` uint8 code arrays differ."""
    return np.unpackbits(np.bitwise_xor(a, b), axis=1).sum(axis=1)


def near_groups(
    ids: np.ndarray,
    locatability: np.ndarray,
    x: np.ndarray | None,
    threshold: float,
    *,
    codes: np.ndarray | None = None,
    max_distance: int = 0,
    **search,
) -> dict[str, np.ndarray]:
    """Duplicate groups of one block (embedding-near or perceptual copies) and their keepers.

    Parameters
    ----------
    ids, locatability
        ``image_id`` and score of each row (the keeper rule).
    x, threshold
        Embeddings ``(n, dim)`` (normalised here; None: no embedding edges) and the cosine at
        or above which two rows are duplicates.
    codes, max_distance
        Perceptual hashes ``(n, bytes)`` uint8 (None: no hash edges) and the Hamming distance
        at or below which two rows are copies.
    search
        ``k``, ``exact_rows``, ``nprobe``, ``seed`` of :func:`near_pairs`.

    Returns
    -------
    dict
        ``keeper`` (index of each row's keeper; itself for kept rows), ``similarity``
        (float32 cosine to the keeper; NaN for kept rows or without embeddings), ``perceptual``
        (bool: a dropped row whose hash is within ``max_distance`` of its keeper's) and
        ``pairs`` (edges found).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(ids)
    edges = [np.zeros(0, np.int64)] * 2
    if x is not None:
        x = normalise(x)
        edges = [
            np.r_[e, p] for e, p in zip(edges, near_pairs(x, threshold, **search)[:2], strict=True)
        ]
    if codes is not None:
        edges = [np.r_[e, p] for e, p in zip(edges, hash_pairs(codes, max_distance), strict=True)]
    i, j = edges
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    order = best_first(ids, locatability, comp)
    keeper = np.empty(n, dtype=np.int64)
    keeper[order] = _run_heads(order, comp[order][1:] == comp[order][:-1])
    dropped = keeper != np.arange(n)
    similarity = np.full(n, np.nan, dtype=np.float32)
    if x is not None:
        similarity[dropped] = np.einsum("ij,ij->i", x[dropped], x[keeper[dropped]])
    perceptual = np.zeros(n, dtype=bool)
    if codes is not None:
        perceptual[dropped] = hamming(codes[dropped], codes[keeper[dropped]]) <= max_distance
    return {"keeper": keeper, "similarity": similarity, "perceptual": perceptual,
            "pairs": np.int64(len(i))}  # fmt: skip


def split_block(x: np.ndarray, parts: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means of ``x`` (normalised) into ``parts`` sub-blocks: (centroids, labels).

    For a block too large for one task: near duplicates almost always fall to the same
    centroid; a pair split by a centroid boundary is missed, as in SemDedup.
    """
    import faiss

    km = faiss.Kmeans(x.shape[1], parts, niter=20, seed=seed, spherical=True, verbose=False)
    km.train(x)
    return km.centroids, assign(x, km.centroids)


def assign(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (inner product) of each normalised row."""
    index = build_index(np.ascontiguousarray(centroids, dtype=np.float32), "flat")
    return index.search(normalise(x), 1)[1][:, 0]
