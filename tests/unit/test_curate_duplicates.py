"""Duplicate detection on one block (exact, near, keeper rule) and the per-cell cap."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from georay.curate.balance import cap_per_group
from georay.curate.dedup import whole_blocks
from georay.curate.duplicates import (
    UNLOCATED,
    assign,
    block_keys,
    exact_keepers,
    near_groups,
    split_block,
)
from georay.data.vectors import normalise


def test_exact_keepers_keep_the_most_locatable_then_the_smallest_id():
    table = pa.table(
        {
            "image_id": ["d", "a", "c", "b", "e", "f"],
            "sha256": ["h1", "h1", "h2", "h1", None, "h2"],
            "locatability": [0.5, 0.5, 0.9, 0.4, 0.1, 0.9],
        }
    )
    keeper = exact_keepers(table)
    # h1: d and a tie at 0.5 -> "a" (smallest id); h2: c and f tie -> "c"; no hash: itself.
    assert keeper.tolist() == [1, 1, 2, 1, 4, 2]
    assert exact_keepers(table.slice(4, 1)).tolist() == [0]


SIZES = [3, 1, 2, 1, 4, 1]


def _cluster(rng, centre, n, noise):
    return centre + rng.normal(0, noise, (n, len(centre)))


def test_near_groups_finds_clusters_and_keeps_distinct_rows():
    rng = np.random.default_rng(0)
    centres = normalise(rng.normal(size=(6, 64)))
    x = np.concatenate([_cluster(rng, c, k, 0.01) for c, k in zip(centres, SIZES, strict=True)])
    ids = np.array([f"v{i:02d}" for i in range(len(x))], dtype=object)
    loc = rng.uniform(0, 1, len(x))
    found = near_groups(ids, loc, x, 0.95)
    keeper = found["keeper"]
    groups = np.repeat(np.arange(6), SIZES)
    for g in range(6):
        members = np.flatnonzero(groups == g)
        best = members[np.argmax(loc[members])]
        assert set(keeper[members]) == {best}, g  # one group, most locatable kept
    dropped = keeper != np.arange(len(x))
    assert dropped.sum() == len(x) - 6
    assert (found["similarity"][dropped] > 0.95).all()
    assert np.isnan(found["similarity"][~dropped]).all()


def test_near_groups_ties_and_order_do_not_matter():
    x = np.tile(normalise(np.ones((1, 8))), (3, 1))
    loc = np.array([0.5, 0.5, 0.5])
    for order in ([0, 1, 2], [2, 0, 1]):
        ids = np.array(["b", "a", "c"], dtype=object)[order]
        found = near_groups(ids, loc, x, 0.99)
        assert ids[found["keeper"]].tolist() == ["a", "a", "a"]


def test_near_groups_chain_and_ivf_agree_with_exact_search():
    rng = np.random.default_rng(1)
    centres = normalise(rng.normal(size=(300, 32)))
    x = np.concatenate([_cluster(rng, c, 4, 0.02) for c in centres])
    ids = np.array([f"v{i:04d}" for i in range(len(x))], dtype=object)
    loc = rng.uniform(0, 1, len(x))
    exact = near_groups(ids, loc, x, 0.9, exact_rows=10_000)["keeper"]
    ivf = near_groups(ids, loc, x, 0.9, exact_rows=100, nprobe=8)["keeper"]
    assert len(set(exact.tolist())) == 300
    assert (exact == ivf).mean() > 0.99  # IVF visits 8 lists: near neighbours, almost all
    # A chain: a~b and b~c join a and c, even though a and c are below the threshold.
    a = normalise(np.array([[1.0, 0.0]]))[0]
    b = normalise(np.array([[1.0, 0.25]]))[0]
    c = normalise(np.array([[1.0, 0.5]]))[0]
    chain = near_groups(np.array(["a", "b", "c"], dtype=object), np.array([0.9, 0.5, 0.1]),
                        np.stack([a, b, c]), 0.97)  # fmt: skip
    assert chain["keeper"].tolist() == [0, 0, 0]
    assert chain["similarity"][2] < 0.97


def test_block_keys_fall_back_to_country_then_unlocated():
    keys = block_keys(
        3, 3, lat=np.array([48.85, np.nan, np.nan]), lon=np.array([2.35, np.nan, np.nan]),
        country=np.array(["FR", "DE", None], dtype=object),
    )  # fmt: skip
    assert keys[0].startswith("83") and keys[1:].tolist() == ["country:DE", UNLOCATED]
    assert block_keys(2, 5).tolist() == [UNLOCATED, UNLOCATED]


def test_split_block_assigns_every_row_to_its_nearest_centroid():
    rng = np.random.default_rng(2)
    centres = normalise(rng.normal(size=(4, 16)))
    x = normalise(np.concatenate([_cluster(rng, c, 100, 0.05) for c in centres]))
    centroids, labels = split_block(x, 4)
    assert len(centroids) == 4 and (assign(x, centroids) == labels).all()
    truth = np.repeat(np.arange(4), 100)
    assert len({(t, lab) for t, lab in zip(truth, labels, strict=True)}) == 4  # clusters intact


def test_cap_per_group_keeps_the_most_locatable():
    ids = np.array(["a", "b", "c", "d", "e", "f"], dtype=object)
    loc = np.array([0.1, 0.9, 0.5, 0.5, 0.3, 0.2])
    cells = np.array(["x", "x", "x", "y", "y", None], dtype=object)
    assert cap_per_group(ids, loc, cells, 2).tolist() == [False, True, True, True, True, True]
    assert cap_per_group(ids, loc, cells, 1).tolist() == [False, True, False, True, False, True]


def test_whole_blocks_regroups_split_batches():
    def rows(block, ids, total):
        return pa.table({"image_id": ids, "block": [block] * len(ids),
                         "_group_rows": [total] * len(ids)})  # fmt: skip

    batches = [rows("x", ["a"], 3), rows("y", ["c"], 1), rows("x", ["b", "d"], 3)]
    out = list(whole_blocks(batches))
    assert [t["image_id"].to_pylist() for t in out] == [["c"], ["a", "b", "d"]]
    with pytest.raises(RuntimeError, match="incomplete"):
        list(whole_blocks([rows("x", ["a"], 2)]))
