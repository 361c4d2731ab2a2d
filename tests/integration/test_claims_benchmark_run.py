"""benchmarks.claims end to end on a world of a few dozen views: every cell trains, is scored
on the held-out views and lands in the report (the figures themselves are BENCHMARKS.md's)."""

import json

import pytest

from benchmarks import claims
from benchmarks.common import Conditions

pytestmark = pytest.mark.slow


def test_one_tiny_cell_per_arm_runs_and_reports(tmp_path):
    args = claims.parse(["--work", str(tmp_path), "--n", "96", "--seeds", "2", "--jobs", "1",
                         "--fractions", "1,0.5", "--base-steps", "4", "--steps1", "3",
                         "--steps2", "3", "--test-limit", "6", "--no-write"])  # fmt: skip
    summary = claims.run(args, tmp_path)
    cells = summary["cells"]
    assert set(cells) == {c.key for c in claims.plan([0, 1], (1.0, 0.5))}
    for row in cells.values():
        assert row["steps"] == 3 and row["n_test"] == 6
        assert 0.0 <= row["city"] <= row["country"] <= 1.0
    # The top-N arm trains on the curated views, the random arm on as many, "all" on more.
    top, rand, every = (cells[f"{arm}-1-s0"]["examples"] for arm in ("top", "random", "all"))
    assert top == rand == summary["n_curated"] < every == summary["n_train"]
    text = claims.render(summary, args, Conditions())
    assert "| top |" in text and "| 50% |" in text and "stage 1 then 2" in text
    # A rerun finds every cell done and trains nothing.
    before = (tmp_path / "cells.jsonl").read_text()
    claims.run(args, tmp_path)
    assert (tmp_path / "cells.jsonl").read_text() == before
    assert json.loads(before.splitlines()[0])["key"] in cells
