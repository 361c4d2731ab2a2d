"""benchmarks.claims' statistics and cell selection (pure: no model, no Ray)."""

from __future__ import annotations

import pytest

from benchmarks.claims import (
    FRACTIONS,
    Cell,
    call,
    cell_of,
    draw,
    interval,
    plan,
    subset,
    top_n,
)


def test_interval_is_the_t_interval_over_seeds():
    # mean 0.5, sample sd 0.1, n 3: half-width 4.303 * 0.1 / sqrt(3) = 0.24844
    got = interval([0.4, 0.5, 0.6])
    assert got.mean == pytest.approx(0.5)
    assert (got.low, got.high) == pytest.approx((0.5 - 0.24844, 0.5 + 0.24844), abs=1e-5)
    assert interval([0.7, 0.7, 0.7]).low == pytest.approx(0.7)  # no spread, no width
    with pytest.raises(ValueError, match="at least 2 seeds"):
        interval([0.5])


def test_a_difference_is_called_only_when_intervals_do_not_overlap():
    high, low = interval([0.80, 0.82, 0.81]), interval([0.60, 0.62, 0.61])
    assert call(high, low) == ">" and call(low, high) == "<"
    wide = interval([0.55, 0.85, 0.70])  # overlaps both
    assert call(high, wide) == "=" and call(wide, low) == "="


def test_top_n_and_draws_are_stable():
    ids = ["a", "b", "c", "d"]
    assert top_n(ids, [0.1, 0.9, 0.5, 0.9], 3) == ["b", "d", "c"]  # tie broken by id
    first = draw(list(map(str, range(100))), 10, seed=1, salt=2)
    assert first == draw(list(map(str, range(100))), 10, seed=1, salt=2)
    assert first != draw(list(map(str, range(100))), 10, seed=2, salt=2)
    assert len(set(first)) == 10
    with pytest.raises(ValueError):
        draw(ids, 5, 0, 0)


def test_plan_runs_every_cell_once_and_shares_stage2_alone_at_full_labels():
    cells = plan([0, 1, 2])
    assert len(cells) == len(set(cells)) == 3 * (3 + len(FRACTIONS) * 2 - 1)
    keys = {c.key for c in cells}
    for seed in (0, 1, 2):
        for f in FRACTIONS:
            for arm in ("stage1+2", "stage2"):
                assert cell_of("reasoning", arm, f, seed).key in keys
        for arm in ("top", "random", "all"):
            assert cell_of("curation", arm, 1.0, seed).key in keys
    assert cell_of("reasoning", "stage2", 1.0, 0) == Cell("curation", "top", 1.0, 0)


def test_subsets_match_their_arm():
    all_ids = [f"v{i:03d}" for i in range(100)]
    curated = all_ids[:40]
    assert subset(Cell("curation", "top", 1.0, 0), curated, all_ids) == curated
    assert subset(Cell("curation", "all", 1.0, 0), curated, all_ids) == all_ids
    rand = subset(Cell("curation", "random", 1.0, 0), curated, all_ids)
    assert len(rand) == 40 and rand != curated
    # Both reasoning arms of a seed train on the same labels; another seed draws others.
    a = subset(Cell("reasoning", "stage1+2", 0.1, 3), curated, all_ids)
    assert a == subset(Cell("reasoning", "stage2", 0.1, 3), curated, all_ids)
    assert len(a) == 4 and set(a) <= set(curated)
    assert a != subset(Cell("reasoning", "stage2", 0.1, 4), curated, all_ids)
