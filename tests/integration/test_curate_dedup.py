"""curate dedup + balance on a local Ray: planted copies found, distinct views kept, resume, caps.

The world is ``georay synth`` with planted copies (byte copy, JPEG re-encode at quality 60,
75% resize, 1% of the width trimmed) at their source's place; the tiny random-init encoder puts
those copies at cosine >= 0.998 of their source and distinct views of one H3 res-3 cell at
<= 0.991 on this world, so the test threshold 0.995 sits between the two. The scores carry a
perceptual hash too (``--phash``), so the edited copies are found by it, whatever the encoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support import georay_ok

from georay.curate import (
    DedupConfig,
    FitConfig,
    ScoreConfig,
    dedup,
    fit,
    score,
)
from georay.data.manifest import read_manifest
from georay.errors import UserError
from georay.synth import SynthConfig, generate_world

SIMILARITY = 0.995


@pytest.fixture(scope="module")
def scored(ray_session, tmp_path_factory) -> tuple[Path, Path]:
    """(manifest, curate score output with sha256 and embeddings) of a world with copies."""
    root = tmp_path_factory.mktemp("dedup")
    generate_world(SynthConfig(output=str(root / "world"), n=48, countries=8, seed=0,
                               duplicates=8, corrupt=1, workers=1))  # fmt: skip
    manifest = root / "world" / "manifest.parquet"
    fit(FitConfig(input=str(manifest), output=str(root / "head"), sample=48, batch_size=32))
    score(ScoreConfig(input=str(manifest), head=str(root / "head"), output=str(root / "score"),
                      embeddings=True, sha256=True, phash=True))  # fmt: skip
    return manifest, root / "score"


def _decisions(out: Path) -> dict[str, dict]:
    rows = pq.read_table(out / "dedup").to_pylist()
    assert len({r["image_id"] for r in rows}) == len(rows)
    return {r["image_id"]: r for r in rows}


def _group(rows: dict[str, dict], image_id: str) -> str:
    row = rows[image_id]
    return image_id if row["kept"] or row["reason"] == "error" else row["duplicate_of"]


def test_dedup_finds_planted_copies_and_keeps_distinct_views(scored, tmp_path):
    manifest, score_out = scored
    out = tmp_path / "dedup"
    summary = dedup(DedupConfig(input=str(score_out), output=str(out), similarity=SIMILARITY))
    truth = read_manifest(str(manifest)).to_pandas().set_index("image_id")
    rows = _decisions(out)
    assert set(rows) == set(truth.index)
    counts = [summary[k] for k in ("kept", "exact", "perceptual", "near", "error")]
    assert summary["rows"] == len(truth) == sum(counts)
    assert summary["error"] == 1 and rows[truth.index[truth.view == "corrupt"][0]]["kept"] is False
    for copy, source in truth.duplicate_of.dropna().items():
        assert _group(rows, copy) == _group(rows, source), (copy, rows[copy], rows[source])
        if copy.endswith("-exact"):
            assert rows[copy]["reason"] == "exact" and rows[copy]["similarity"] == 1.0
    originals = truth.index[truth.view.isin(["street", "low_locatability"])]
    groups = [_group(rows, i) for i in originals]
    assert len(set(groups)) == len(originals)  # no two distinct views merged
    for r in rows.values():  # a dropped row points at a kept row, at least as locatable
        if r["reason"] in ("exact", "perceptual", "near"):
            assert rows[r["duplicate_of"]]["kept"], r
    assert json.loads((out / "summary.json").read_text())["kept"] == summary["kept"]


def test_dedup_resumes_with_the_same_decisions(scored, tmp_path):
    _, score_out = scored
    out = tmp_path / "dedup"
    cfg = DedupConfig(input=str(score_out), output=str(out), similarity=SIMILARITY,
                      rows_per_part=4)  # fmt: skip
    first = dedup(cfg)
    expected = _decisions(out)
    parts = sorted((out / "dedup").glob("part-*.parquet"))
    assert len(parts) > 3
    # A run killed before committing its last parts (one of them near-search blocks, one the
    # exact copies), leaving a temp file behind: the rerun decides those rows again, the same way.
    near_part = next(
        p for p in parts if {"near", "perceptual"} & set(pq.read_table(p)["reason"].to_pylist())
    )
    lost = {near_part, parts[-1]}
    missing = sum(pq.read_table(p).num_rows for p in lost)
    for p in lost:
        p.unlink()
    (out / "dedup" / ".part-stale.parquet.tmp").write_bytes(b"half written")
    again = dedup(cfg)
    assert again["rows_this_run"] == missing and again["rows"] == first["rows"]
    assert _decisions(out) == expected
    assert not list((out / "dedup").glob(".*"))
    assert dedup(cfg)["rows_this_run"] == 0
    with pytest.raises(UserError, match="similarity"):
        dedup(DedupConfig(input=str(score_out), output=str(out), similarity=0.9))


def test_oversized_blocks_are_split_and_still_find_copies(scored, tmp_path):
    manifest, score_out = scored
    out = tmp_path / "split"
    # Resolution 0: continent-sized blocks, several above 4 views, so those are split by
    # k-means; the copies sit on their source's embedding and land on the same centroid.
    cfg = DedupConfig(input=str(score_out), output=str(out), similarity=SIMILARITY,
                      h3_resolution=0, max_block_rows=4, rows_per_part=4)  # fmt: skip
    summary = dedup(cfg)
    assert summary["blocks_split"] >= 2 and list((out / "_split").glob("*.npy"))
    rows = _decisions(out)
    assert any("/" in r["block"] for r in rows.values())  # sub-blocks <cell>/<k>
    truth = read_manifest(str(manifest)).to_pandas().set_index("image_id")
    for copy, source in truth.duplicate_of.dropna().items():
        assert _group(rows, copy) == _group(rows, source), copy
    # Resume after losing a part: the saved centroids split the blocks the same way.
    parts = sorted((out / "dedup").glob("part-*"))
    part = next(p for p in parts if any("/" in b for b in pq.read_table(p)["block"].to_pylist()))
    part.unlink()
    dedup(cfg)
    assert _decisions(out) == rows


def test_perceptual_copies_are_found_without_embeddings(scored, tmp_path):
    """--no-near: the perceptual tier alone finds the edited copies (reason "perceptual") and
    keeps every distinct view; the exact tier still takes the byte copies."""
    manifest, score_out = scored
    out = tmp_path / "phash"
    summary = dedup(DedupConfig(input=str(score_out), output=str(out), near=False,
                                rows_per_part=4))  # fmt: skip
    truth = read_manifest(str(manifest)).to_pandas().set_index("image_id")
    rows = _decisions(out)
    assert summary["hamming"] == 6 and summary["near"] == 0
    counts = [summary[k] for k in ("kept", "exact", "perceptual", "near", "error")]
    assert summary["rows"] == len(truth) == sum(counts)
    for copy, source in truth.duplicate_of.dropna().items():
        assert _group(rows, copy) == _group(rows, source), (copy, rows[copy], rows[source])
        dropped = rows[copy] if not rows[copy]["kept"] else rows[source]  # the less locatable
        assert dropped["reason"] == ("exact" if copy.endswith("-exact") else "perceptual"), dropped
    originals = truth.index[truth.view.isin(["street", "low_locatability"])]
    assert len({_group(rows, i) for i in originals}) == len(originals)
    # Resume after losing a part: the same decisions.
    next(iter(sorted((out / "dedup").glob("part-*")))).unlink()
    again = dedup(DedupConfig(input=str(score_out), output=str(out), near=False,
                              rows_per_part=4))  # fmt: skip
    assert again["rows_this_run"] > 0 and _decisions(out) == rows
    with pytest.raises(UserError, match="hamming"):
        dedup(DedupConfig(input=str(score_out), output=str(out), near=False, hamming=8))


def test_dedup_needs_embeddings_and_a_finished_score(scored, tmp_path):
    _, score_out = scored
    with pytest.raises(UserError, match="no finished"):
        dedup(DedupConfig(input=str(tmp_path), output=str(tmp_path / "o")))
    only_exact = dedup(DedupConfig(input=str(score_out), output=str(tmp_path / "x"), near=False))
    assert only_exact["near"] == 0 and only_exact["exact"] >= 2


def test_balance_caps_cells_and_counts_add_up(scored, tmp_path):
    _, score_out = scored
    deduped = tmp_path / "dedup"
    # Both through the command line, as a user runs them.
    georay_ok("curate", "dedup", "--input", str(score_out), "--output", str(deduped),
              "--similarity", str(SIMILARITY))  # fmt: skip
    out = tmp_path / "balance"
    summary = json.loads(georay_ok(
        "curate", "balance", "--input", str(score_out), "--dedup", str(deduped), "--output",
        str(out), "--max-per-cell", "1", "--h3-resolution", "3", "--max-per-country", "3",
    ))  # fmt: skip
    curated = pq.read_table(score_out / "curated").to_pandas().set_index("image_id")
    decisions = pq.read_table(out / "decisions.parquet").to_pandas().set_index("image_id")
    kept = pq.read_table(out / "curated").to_pandas().set_index("image_id")
    assert sorted(decisions.index) == sorted(curated.index)
    assert (
        summary["rows"]
        == len(curated)
        == (summary["kept"] + summary["duplicate"] + summary["cell_cap"] + summary["country_cap"])
    )
    assert summary["kept"] == len(kept) == int(decisions.kept.sum()) > 0
    assert summary["duplicate"] > 0 and summary["cell_cap"] > 0
    assert kept.join(decisions.cell).groupby("cell").size().max() == 1
    assert kept.groupby("country").size().max() <= 3
    # Within a cell the kept view is the most locatable one dedup left.
    left = decisions[decisions.reason != "duplicate"].join(curated.locatability)
    for cell, views in left.groupby("cell"):
        winners = views[views.kept]
        if len(winners):
            assert winners.locatability.iloc[0] == views.locatability.max(), cell
    cells = (out / "cells.csv").read_text().splitlines()
    assert cells[0] == "cell,lat,lon,before,after" and len(cells) > 2
    assert (out / "balance.png").read_bytes()[:4] == b"\x89PNG"
    largest = int(decisions[decisions.reason != "duplicate"].groupby("cell").size().max())
    assert largest > 1 and summary["largest_cell"] == {"before": largest, "after": 1}
