"""``curate balance``: cap the curated views per H3 cell (and per country), keeping the most
locatable.

Street-view corpora are dominated by a few dense cities, and a model trained on them learns
those cities. OSV-5M and PIGEON balance their training sets by geography; this step does it on
the curated set: after ``curate dedup`` (its dropped views are left out first), at most
``--max-per-cell`` views per H3 cell at ``--h3-resolution`` are kept, and optionally at most
``--max-per-country`` per country; within a cell or country the most locatable views win (ties:
smallest ``image_id``). Views without coordinates have no cell: only the country cap applies to
them. Outputs, under ``OUT/``:

* ``curated/part-0.parquet``: the balanced set, with the columns of ``curate score``'s
  ``curated/`` (knowledge's stage-2 manifest);
* ``decisions.parquet``: every curated view once: ``image_id``, ``cell``, ``kept``, ``reason``
  (``duplicate`` | ``cell_cap`` | ``country_cap``; null when kept);
* ``cells.csv`` (and ``countries.csv``): views per cell (country) before and after the caps;
* ``balance.png``: views per cell before and after, ranked, and a map of the cells kept;
* ``summary.json``: ``rows`` = ``kept`` + ``duplicate`` + ``cell_cap`` + ``country_cap``.

The work is a sort and a group-by on the driver (about 100 bytes per curated view), so it runs in
seconds at millions of views and needs no Ray; rerunning it rewrites the same files.
"""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from georay import pipeline as pl
from georay.curate.config import BalanceConfig
from georay.curate.duplicates import best_first
from georay.data.storage import join_uri, read_bytes, write_bytes
from georay.errors import UserError
from georay.geo.cells import cell_centroids, latlng_to_cells
from georay.pipeline.record import count_problem, finish_job

log = logging.getLogger(__name__)

DUPLICATE, CELL_CAP, COUNTRY_CAP = "duplicate", "cell_cap", "country_cap"


def cap_per_group(
    ids: np.ndarray, locatability: np.ndarray, groups: np.ndarray, cap: int
) -> np.ndarray:
    """True for the rows kept when each group keeps its ``cap`` most locatable rows.

    Rows whose group is None are not capped (kept).
    """
    n = len(ids)
    keep = np.ones(n, dtype=bool)
    grouped = np.flatnonzero(np.array([g is not None for g in groups], dtype=bool))
    if not len(grouped):
        return keep
    _, codes = np.unique(np.asarray(groups[grouped], dtype=str), return_inverse=True)
    order = best_first(ids[grouped], locatability[grouped], codes)
    start = np.ones(len(order), dtype=bool)
    start[1:] = codes[order][1:] != codes[order][:-1]
    rank = np.arange(len(order)) - np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))
    keep[grouped[order]] = rank < cap
    return keep


def _counts(keys: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for key, b, a in zip(keys, before, after, strict=True):
        if key is None:
            continue
        nb, na = out.get(key, (0, 0))
        out[key] = (nb + int(b), na + int(a))
    return out


def _csv(table: pa.Table, uri: str) -> None:
    buf = io.BytesIO()
    pcsv.write_csv(table, buf, pcsv.WriteOptions(quoting_header="none"))
    write_bytes(uri, buf.getvalue())


def _parquet(table: pa.Table, uri: str) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes(uri, buf.getvalue())


def _dedup_kept(cfg: BalanceConfig, ids: pa.Array) -> np.ndarray:
    """True for the curated ids ``curate dedup`` kept."""
    job = json.loads(read_bytes(join_uri(cfg.dedup, "job.json")))
    if job.get("input") != cfg.input:
        raise UserError(f"--dedup {cfg.dedup} deduplicated {job.get('input')}, not {cfg.input}")
    decided = pl.PartWriter(cfg.dedup, tables=("dedup",)).read(["image_id", "kept"])
    at = pc.index_in(ids, value_set=decided["image_id"])
    if at.null_count:
        raise UserError(f"--dedup {cfg.dedup} has not decided every view: rerun curate dedup")
    return decided["kept"].take(at).to_numpy(zero_copy_only=False)


def balance(cfg: BalanceConfig) -> dict:
    """Cap the curated set per cell (and country); write the set, the tables and the figure.

    Returns
    -------
    dict
        What ``OUT/summary.json`` holds.
    """
    curated = pl.PartWriter(cfg.input, tables=("scores", "curated")).read(table="curated")
    if "locatability" not in curated.column_names:
        raise UserError(f"{cfg.input} holds no curated/ views of `curate score`")
    n = curated.num_rows
    ids = curated["image_id"].to_numpy(zero_copy_only=False)
    loc = curated["locatability"].to_numpy(zero_copy_only=False).astype(np.float64)
    unique = _dedup_kept(cfg, curated["image_id"]) if cfg.dedup else np.ones(n, dtype=bool)
    cells = np.full(n, None, dtype=object)
    if "lat" in curated.column_names and "lon" in curated.column_names:
        lat = curated["lat"].to_numpy(zero_copy_only=False).astype(float)
        lon = curated["lon"].to_numpy(zero_copy_only=False).astype(float)
        cells = latlng_to_cells(lat, lon, cfg.h3_resolution)
    keep = unique.copy()
    in_cells = cap_per_group(ids[keep], loc[keep], cells[keep], cfg.max_per_cell)
    cell_capped = np.zeros(n, dtype=bool)
    cell_capped[np.flatnonzero(keep)[~in_cells]] = True
    keep &= ~cell_capped
    country_capped = np.zeros(n, dtype=bool)
    if cfg.max_per_country and "country" in curated.column_names:
        countries = curated["country"].to_numpy(zero_copy_only=False)
        in_countries = cap_per_group(ids[keep], loc[keep], countries[keep], cfg.max_per_country)
        country_capped[np.flatnonzero(keep)[~in_countries]] = True
        keep &= ~country_capped
    reason = np.full(n, None, dtype=object)
    reason[~unique], reason[cell_capped], reason[country_capped] = (
        DUPLICATE, CELL_CAP, COUNTRY_CAP)  # fmt: skip
    _parquet(curated.filter(pa.array(keep)), join_uri(cfg.output, "curated", "part-0.parquet"))
    decisions = pa.table({"image_id": curated["image_id"], "cell": pa.array(cells, pa.string()),
                          "kept": pa.array(keep), "reason": pa.array(reason, pa.string())})  # fmt: skip
    _parquet(decisions, join_uri(cfg.output, "decisions.parquet"))
    per_cell = _counts(cells, unique, keep)
    _csv(_table(per_cell, "cell", with_centroids=True), join_uri(cfg.output, "cells.csv"))
    if "country" in curated.column_names:
        countries = curated["country"].to_numpy(zero_copy_only=False)
        _csv(_table(_counts(countries, unique, keep), "country"),
             join_uri(cfg.output, "countries.csv"))  # fmt: skip
    write_bytes(join_uri(cfg.output, "balance.png"), figure(per_cell, cfg))
    summary = _summary(cfg, n, keep, unique, cell_capped, country_capped, cells, per_cell)
    decided = sum(summary[k] for k in ("kept", DUPLICATE, CELL_CAP, COUNTRY_CAP))
    return finish_job("balance", cfg.output, summary, count_problem(n, decided))


def _table(counts: dict[str, tuple[int, int]], key: str, with_centroids: bool = False):
    names = sorted(counts, key=lambda k: (-counts[k][0], k))
    cols = {key: pa.array(names, pa.string())}
    if with_centroids:
        lat, lon = cell_centroids(np.array(names, dtype=object))
        cols.update(lat=pa.array(np.round(lat, 5)), lon=pa.array(np.round(lon, 5)))
    cols["before"] = pa.array([counts[k][0] for k in names], pa.int64())
    cols["after"] = pa.array([counts[k][1] for k in names], pa.int64())
    return pa.table(cols)


def _share_top(values: list[int], top: int = 10) -> float | None:
    total = sum(values)
    return round(sum(sorted(values, reverse=True)[:top]) / total, 4) if total else None


def _summary(cfg, n, keep, unique, cell_capped, country_capped, cells, per_cell) -> dict:
    before = [b for b, _ in per_cell.values()]
    after = [a for _, a in per_cell.values() if a]
    return {
        "rows": n,
        "kept": int(keep.sum()),
        DUPLICATE: int((~unique).sum()),
        CELL_CAP: int(cell_capped.sum()),
        COUNTRY_CAP: int(country_capped.sum()),
        "unlocated": int(sum(c is None for c in cells)),
        "h3_resolution": cfg.h3_resolution,
        "max_per_cell": cfg.max_per_cell,
        "max_per_country": cfg.max_per_country or None,
        "cells": {"before": sum(1 for b in before if b), "after": len(after)},
        "largest_cell": {"before": max(before, default=0), "after": max(after, default=0)},
        "top10_cells_share": {"before": _share_top(before), "after": _share_top(after)},
        "input": cfg.input,
        "dedup": cfg.dedup,
        "output": cfg.output,
    }


def figure(per_cell: dict[str, tuple[int, int]], cfg: BalanceConfig) -> bytes:
    """PNG: views per cell before/after the cap (cells ranked), and a map of the kept cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from georay.geo.outlines import country_outlines

    names = sorted(per_cell, key=lambda k: -per_cell[k][0])
    before = np.array([per_cell[k][0] for k in names])
    after = np.array([per_cell[k][1] for k in names])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained",
                                      gridspec_kw={"width_ratios": [1, 1.6]})  # fmt: skip
    rank = np.arange(1, len(names) + 1)
    left.step(rank, before, where="mid", label=f"before ({before.sum():,} views)")
    left.step(rank, after, where="mid", label=f"after ({after.sum():,} views)")
    left.axhline(cfg.max_per_cell, color="grey", linestyle=":", label=f"cap {cfg.max_per_cell}")
    left.set(xlabel="cell rank (by views before)", ylabel="views per cell",
             title=f"Views per H3 res-{cfg.h3_resolution} cell")  # fmt: skip
    if len(before) and before.max() > 10 * max(1, before.min()):
        left.set_yscale("log")
    left.legend()
    right.set_facecolor("#dce8f2")
    rings = [ring for _, parts in country_outlines(0.1) for ring in parts]
    right.add_collection(PolyCollection(rings, facecolors="#f4f1ea", edgecolors="#a0a0a0",
                                        linewidths=0.3, zorder=1))  # fmt: skip
    lat, lon = cell_centroids(np.array(names, dtype=object))
    if len(names):
        scale = max(1, before.max())  # one scale: a capped cell shows a ring around its dot
        right.scatter(lon, lat, s=8 + 150 * np.sqrt(before / scale), facecolors="none",
                      edgecolors="#d62728", linewidths=0.8, zorder=4, label="before")  # fmt: skip
        right.scatter(lon, lat, s=8 + 150 * np.sqrt(after / scale), c="#1f77b4", alpha=0.6,
                      zorder=3, label="after")  # fmt: skip
        right.legend(loc="lower left", title="views per cell (area)")
    pad = 5
    x0, x1 = (lon.min() - pad, lon.max() + pad) if len(names) else (-180, 180)
    y0, y1 = (lat.min() - pad, lat.max() + pad) if len(names) else (-60, 85)
    right.set(xlim=(max(-180, x0), min(180, x1)), ylim=(max(-90, y0), min(90, y1)),
              aspect="equal", xlabel="longitude", ylabel="latitude",
              title="Cells before and after the cap")  # fmt: skip
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
