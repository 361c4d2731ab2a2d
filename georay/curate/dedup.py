"""``curate dedup``: drop exact copies, perceptual copies and near duplicates of a scored set.

Input: the output folder of ``curate score`` (``scores/`` with ``--sha256`` for exact copies and
``--phash`` for perceptual copies, ``embeddings/`` with ``--embeddings`` for near duplicates;
nothing is hashed or embedded again). Output:

* ``OUT/dedup/``: every scored row exactly once: ``image_id``, ``kept``, ``duplicate_of`` (the
  kept row it duplicates), ``similarity`` (cosine of the two embeddings), ``reason``
  (``exact`` | ``perceptual`` | ``near`` | ``error`` for rows scoring failed on; null when
  kept), ``block``;
* ``OUT/summary.json``: rows = kept + exact + perceptual + near + error, blocks, rates.

The tiers: ``exact`` = same bytes (sha256); ``perceptual`` = pHash within ``--hamming`` bits of
its keeper's (a re-encode, resize, brightness or contrast change, small crop, added border:
:mod:`georay.data.phash`), whatever the encoder; ``near`` = in the same group through embedding
cosine (and perhaps hash) edges, but not a perceptual copy of its keeper.

How (each step scales with rows, never with pairs of rows)::

    driver: read score metadata (no embeddings) -> exact copies: sort by sha256, keep the most
      locatable of each hash -> candidate blocks: H3 cell at --h3-resolution, else country,
      else "unlocated"; blocks above --max-block-rows split by spherical k-means
    Ray Data: per score part, attach the embeddings of its candidates -> sort-shuffle by block
      -> per block: faiss kNN within the block, edges >= --similarity, and hash pairs within
      --hamming bits (multi-index hashing), one graph, connected components, keep the most
      locatable (:mod:`georay.curate.duplicates`)
    driver: commit whole blocks as parts -> exact copies follow their keeper's fate -> summary

What it can miss: near duplicates in different blocks (a view re-uploaded with other
coordinates; two frames either side of a cell edge: at resolution 3, about 0.3% of pairs 100 m
apart), and what :mod:`georay.curate.duplicates` says about neighbours and IVF. Memory: the
driver holds ~130 bytes of Arrow metadata per row, ~350 while it groups (5M rows: about 2 GB),
never an embedding; a block task holds its block's embeddings and index (a 500K-view block of
512-d float32: 2 GB); the shuffle spills to disk beyond the object store.

Built on the skeleton's pieces (:mod:`georay.pipeline.record`). Parts hold whole blocks, so a
rerun recomputes only unfinished blocks, with the same members (k-means centroids are saved
under ``OUT/_split/`` before any block runs).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import posixpath
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from georay import pipeline as pl
from georay.curate import duplicates as dup
from georay.curate.config import DedupConfig
from georay.data.phash import hash_codes
from georay.data.storage import filesystem_for, join_uri, read_bytes, write_bytes
from georay.data.vectors import normalise
from georay.errors import UserError
from georay.pipeline.output import conform, stream_to_parts
from georay.pipeline.record import (
    count_problem,
    describe_schema,
    finish_job,
    open_job,
    progress_logger,
    run_rates,
)
from georay.runtime import init_ray

log = logging.getLogger(__name__)

EXACT, PERCEPTUAL, NEAR, ERROR = "exact", "perceptual", "near", "error"
DEDUP_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("kept", pa.bool_()),
        ("duplicate_of", pa.string()),
        ("similarity", pa.float32()),
        ("reason", pa.string()),
        ("block", pa.string()),
    ]
)
SCORE_COLUMNS = ("image_id", "status", "locatability", "sha256", "phash", "lat", "lon", "country")
SPLIT_DIR = "_split"
SAMPLE_ROWS = 50_000  # embeddings a k-means split of one block is trained on


# ---- input ---------------------------------------------------------------------------------


def _json(uri: str) -> dict | None:
    try:
        return json.loads(read_bytes(uri))
    except FileNotFoundError:
        return None


def read_scores(score_out: str) -> tuple[pa.Table, list[str], dict]:
    """Metadata of every committed score row (``_part`` = index of its part), the URIs of the
    aligned ``embeddings/`` parts, and the score job's record.

    Raises
    ------
    UserError
        No finished ``curate score`` output at ``score_out``.
    """
    reader = pl.PartWriter(score_out, tables=("scores",))
    files = reader.files()
    summary = _json(join_uri(score_out, "summary.json"))
    if not files or summary is None:
        raise UserError(
            f"{score_out} holds no finished `curate score` output (scores/ and summary.json); "
            "run or finish curate score first"
        )

    def part(k: int) -> pa.Table:
        names = pq.read_schema(files[k], filesystem=reader.fs).names
        t = pq.read_table(files[k], columns=[c for c in SCORE_COLUMNS if c in names],
                          filesystem=reader.fs)  # fmt: skip
        return t.append_column("_part", pa.array(np.full(t.num_rows, k, np.int32)))

    with ThreadPoolExecutor(16) as pool:  # thousands of parts on S3: one request each
        rows = pa.concat_tables(pool.map(part, range(len(files))), promote_options="permissive")
    if rows.num_rows != summary.get("rows_out", rows.num_rows):
        raise UserError(
            f"{score_out}: summary.json says {summary.get('rows_out')} rows but scores/ holds "
            f"{rows.num_rows}; rerun curate score there to finish it"
        )
    embeddings = [join_uri(score_out, "embeddings", posixpath.basename(f)) for f in files]
    return rows, embeddings, _json(join_uri(score_out, "job.json")) or {}


def _column(rows: pa.Table, name: str) -> np.ndarray | None:
    if name not in rows.column_names:
        return None
    return rows[name].to_numpy(zero_copy_only=False)


def block_column(rows: pa.Table, res: int, chunk: int = 200_000) -> pa.Array:
    """:func:`georay.curate.duplicates.block_keys` of every row as an Arrow string array,
    computed a chunk at a time (Python strings of millions of cells would cost ~75 bytes each)."""
    out = []
    for a in range(0, rows.num_rows, chunk):
        part = rows.slice(a, chunk)
        keys = dup.block_keys(part.num_rows, res, _column(part, "lat"), _column(part, "lon"),
                              _column(part, "country"))  # fmt: skip
        out.append(pa.array(keys.tolist(), pa.string()))
    return pa.concat_arrays(out) if out else pa.array([], pa.string())


# ---- splitting oversized blocks ------------------------------------------------------------


def _split_uri(output: str, block: str) -> str:
    return join_uri(output, SPLIT_DIR, re.sub(r"[^0-9A-Za-z_-]", "_", block) + ".npy")


def _read_embeddings(uri: str, ids: pa.Array | None = None) -> tuple[pa.Array, np.ndarray]:
    """(image_id, float32 matrix) of one embeddings part, optionally only ``ids``."""
    fs, path = filesystem_for(uri)
    t = pq.read_table(path, filesystem=fs)
    if ids is not None:
        t = t.filter(pc.is_in(t["image_id"], value_set=ids))
    col = t["embedding"].combine_chunks()
    dim = col.type.list_size
    return t["image_id"].combine_chunks(), col.values.to_numpy().reshape(-1, dim)


def split_centroids(
    cfg: DedupConfig, cand: pa.Table, embeddings: list[str], sizes: dict[str, int]
) -> dict[str, np.ndarray]:
    """k-means centroids of every block larger than ``--max-block-rows`` (saved, or trained on
    a seeded sample of score parts and saved before any block runs, so a resumed job splits a
    block the same way)."""
    big = sorted(b for b, n in sizes.items() if n > cfg.max_block_rows)
    centroids: dict[str, np.ndarray] = {}
    for block in big:
        with contextlib.suppress(FileNotFoundError):
            centroids[block] = np.load(io.BytesIO(read_bytes(_split_uri(cfg.output, block))))
    todo = [b for b in big if b not in centroids]
    if not todo:
        return centroids
    samples: dict[str, list[np.ndarray]] = {b: [] for b in todo}
    in_todo = cand.filter(pc.is_in(cand["block"], value_set=pa.array(todo)))
    rng = np.random.default_rng(cfg.seed)
    parts = np.unique(in_todo["_part"].to_numpy())
    for k in rng.permutation(parts):  # whole parts: one read each
        mine = in_todo.filter(pc.equal(in_todo["_part"], int(k)))
        ids, x = _read_embeddings(embeddings[k], mine["image_id"])
        blocks = dict(zip(mine["image_id"].to_pylist(), mine["block"].to_pylist(), strict=True))
        of = np.array([blocks[i] for i in ids.to_pylist()], dtype=object)
        for b in todo:
            samples[b].append(x[of == b])
        if all(sum(len(s) for s in samples[b]) >= SAMPLE_ROWS for b in todo):
            break
    for b in todo:
        x = normalise(np.concatenate(samples[b]))
        parts_n = max(2, math.ceil(sizes[b] / (cfg.max_block_rows / 2)))
        centroids[b], _ = dup.split_block(x, min(parts_n, max(1, len(x) // 2)), seed=cfg.seed)
        buf = io.BytesIO()
        np.save(buf, centroids[b])
        write_bytes(_split_uri(cfg.output, b), buf.getvalue())
        log.info("dedup: block %s (%d views) split into %d", b, sizes[b], len(centroids[b]))
    return centroids


# ---- Ray stages ----------------------------------------------------------------------------


def with_embeddings(
    batch: pa.Table, embeddings: list[str], centroids: dict[str, np.ndarray]
) -> pa.Table:
    """Candidate rows of some score parts -> the same rows with their ``embedding``; rows of a
    split block get the sub-block of their nearest centroid (``<block>/<k>``)."""
    out = []
    for k in np.unique(batch["_part"].to_numpy()):
        mine = batch.filter(pc.equal(batch["_part"], int(k)))
        ids, x = _read_embeddings(embeddings[k], mine["image_id"])
        at = pc.index_in(mine["image_id"], value_set=ids)
        if at.null_count:
            raise ValueError(f"{embeddings[k]} lacks embeddings of ok rows: rerun curate score")
        x = x[at.to_numpy()]
        blocks = np.array(mine["block"].to_pylist(), dtype=object)
        for b in set(blocks) & set(centroids):
            rows = np.flatnonzero(blocks == b)
            labels = dup.assign(x[rows], centroids[b])
            blocks[rows] = [f"{b}/{c}" for c in labels]
        flat = pa.array(x.reshape(-1), pa.float32())
        out.append(
            pa.table(
                {
                    "image_id": mine["image_id"],
                    "block": pa.array(blocks.tolist(), pa.string()),
                    "locatability": mine["locatability"],
                    "embedding": pa.FixedSizeListArray.from_arrays(flat, x.shape[1]),
                    **({"phash": mine["phash"]} if "phash" in mine.column_names else {}),
                }
            )
        )
    return pa.concat_tables(out)


def _matrix(column) -> np.ndarray:
    """(n, dim) float32 of an embedding column (Arrow fixed-size list or Ray tensor type)."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(col.type):
        return col.values.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
    return np.asarray(col.to_numpy(), dtype=np.float32)


def near_block(group: pa.Table, similarity: float, hamming: int | None, **search) -> pa.Table:
    """One block's decisions (the :data:`DEDUP_SCHEMA` columns, plus ``_group_rows`` so the
    driver knows when it has all of them). Embedding edges where the block has an
    ``embedding`` column, hash edges where it has ``phash`` and ``hamming`` is set."""
    group = group.sort_by("image_id")  # the same members give the same result in any order
    ids = np.array(group["image_id"].to_pylist(), dtype=object)
    loc = group["locatability"].to_numpy(zero_copy_only=False).astype(np.float64)
    x = _matrix(group["embedding"]) if "embedding" in group.column_names else None
    codes = None
    if hamming is not None and "phash" in group.column_names:
        codes = hash_codes(group["phash"].to_pylist())
    found = dup.near_groups(ids, loc, x, similarity, codes=codes, max_distance=hamming or 0,
                            **search)  # fmt: skip
    keeper, n = found["keeper"], len(ids)
    kept = keeper == np.arange(n)
    reason = np.where(kept, None, np.where(found["perceptual"], PERCEPTUAL, NEAR))
    return pa.table(
        {
            "image_id": group["image_id"],
            "kept": pa.array(kept),
            "duplicate_of": pa.array(np.where(kept, None, ids[keeper]).tolist(), pa.string()),
            "similarity": pa.array(
                found["similarity"], pa.float32(), mask=kept | np.isnan(found["similarity"])
            ),  # fmt: skip
            "reason": pa.array(reason.tolist(), pa.string()),
            "block": group["block"],
            "_group_rows": pa.array(np.full(n, n, np.int64)),
        }
    )


def _partitions(rows: int, dim: int, groups: int) -> int:
    """Shuffle partitions: enough for every CPU, and ~128 MiB of embeddings each."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    by_size = math.ceil(rows * (4 * dim + 100) / (128 << 20))
    return max(1, min(groups, max(cpus, by_size)))


def _run_blocks(cfg: DedupConfig, todo: pa.Table, embeddings, centroids, dim: int,
                hamming: int | None):  # fmt: skip
    """Ray Data: the decisions of the blocks of ``todo``, streamed a batch at a time (with the
    embeddings of its rows when ``cfg.near``)."""
    import ray
    from ray.data.context import DataContext, ShuffleStrategy

    todo = todo.sort_by("_part")
    parts = todo["_part"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, parts[1:] != parts[:-1], True])
    tables = [todo.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    groups = pc.count_distinct(todo["block"]).as_py() + sum(len(c) for c in centroids.values())
    search = {"k": cfg.neighbours, "exact_rows": cfg.exact_rows, "nprobe": cfg.nprobe,
              "seed": cfg.seed}  # fmt: skip
    ctx = DataContext.get_current()
    # A pull-based sort shuffle: far less fixed cost than the default hash shuffle's aggregator
    # partitions on small jobs (13 s vs 2 s for a toy job on 2 CPUs), and it scales the same way
    # (blocks spill to disk beyond the object store). A dataset keeps the context it was
    # created under, so set it first.
    old, ctx.shuffle_strategy = ctx.shuffle_strategy, ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        ds = ray.data.from_arrow(tables)
        if cfg.near:
            ds = ds.map_batches(
                with_embeddings,
                batch_format="pyarrow",
                batch_size=None,
                fn_kwargs={"embeddings": embeddings, "centroids": centroids},
            )
        grouped = ds.groupby("block", num_partitions=_partitions(todo.num_rows, dim, groups))
        out = grouped.map_groups(
            near_block,
            batch_format="pyarrow",
            fn_kwargs={"similarity": cfg.similarity, "hamming": hamming, **search},
        )
    finally:
        ctx.shuffle_strategy = old
    yield from out.iter_batches(batch_format="pyarrow", batch_size=None)


def whole_blocks(batches: Iterable[pa.Table]) -> Iterable[pa.Table]:
    """Regroup streamed decision batches into complete blocks (``_group_rows`` rows each)."""
    pending: dict[str, list[pa.Table]] = {}
    for batch in batches:
        if not batch.num_rows:
            continue
        blocks = batch["block"].to_numpy(zero_copy_only=False)
        for b in dict.fromkeys(blocks):
            part = batch.filter(pc.equal(batch["block"], b))
            pending.setdefault(b, []).append(part)
            got = sum(t.num_rows for t in pending[b])
            if got == part["_group_rows"][0].as_py():
                yield pa.concat_tables(pending.pop(b)).drop_columns(["_group_rows"])
    if pending:
        raise RuntimeError(f"dedup: incomplete blocks after the last batch: {sorted(pending)}")


# ---- the job -------------------------------------------------------------------------------


def _decisions(ids, kept: bool, block, *, reason=None, duplicate_of=None, similarity=None):
    """Decision rows of ``ids`` (Arrow) that share ``kept`` and ``reason``."""
    n = len(ids)
    return pa.table(
        {
            "image_id": ids,
            "kept": pa.array(np.full(n, kept)),
            "duplicate_of": pa.nulls(n, pa.string()) if duplicate_of is None else duplicate_of,
            "similarity": pa.nulls(n, pa.float32())
            if similarity is None
            else pa.array(similarity, pa.float32()),
            "reason": pa.array([reason] * n, pa.string()),
            "block": block,
        }
    )


def _followers(rows: pa.Table, keeper: np.ndarray, todo: np.ndarray, committed: pa.Table):
    """Decisions of exact copies (rows ``todo``): they follow their keeper's final fate."""
    keepers = rows["image_id"].take(pa.array(keeper[todo]))
    at = pc.index_in(keepers, value_set=committed["image_id"])
    fate = committed.take(at)
    kept = fate["kept"].to_numpy(zero_copy_only=False)
    rep = pc.if_else(fate["kept"], keepers, fate["duplicate_of"])  # the kept row they copy
    sim = np.where(kept, 1.0, fate["similarity"].to_numpy(zero_copy_only=False).astype(float))
    return rep, sim


def _hamming(cfg: DedupConfig, rows: pa.Table) -> int | None:
    """The Hamming distance of the perceptual tier, or None when it does not run."""
    if not cfg.perceptual:
        return None
    if "phash" not in rows.column_names:
        log.warning("dedup: %s has no phash column (score with --phash): edited copies are "
                    "found by their embeddings only", cfg.input)  # fmt: skip
        return None
    return cfg.hamming


def _check_input(cfg: DedupConfig, rows: pa.Table, score_job: dict) -> None:
    if cfg.near and not pl.PartWriter(cfg.input, tables=("scores", "embeddings")).files(
        "embeddings"
    ):
        raise UserError(
            f"{cfg.input} has no embeddings/: score with --embeddings (into a new --output), or "
            "give --no-near for exact and perceptual copies only"
        )
    if "sha256" not in rows.column_names:
        log.warning("dedup: %s has no sha256 column (score with --sha256): exact copies are "
                    "found as near duplicates only, within a block", cfg.input)  # fmt: skip
    if cfg.near and ":random" in str(score_job.get("model", "")):
        log.warning("dedup: embeddings of a random-init encoder: distinct views reach cosine "
                    "0.99; --similarity %.3f may merge them", cfg.similarity)  # fmt: skip


def dedup(cfg: DedupConfig) -> dict:
    """Decide, for every scored row, whether it is kept or duplicates a kept row; resumable.

    Returns
    -------
    dict
        What ``OUT/summary.json`` holds: ``rows`` = ``kept`` + ``exact`` + ``perceptual`` +
        ``near`` + ``error``, block sizes, ``elapsed_s``, ``rows_per_s``, the settings.

    Raises
    ------
    JobFailed
        The decisions do not cover every scored row exactly once (``summary.json`` says so).
    """
    start = time.perf_counter()
    rows, embeddings, score_job = read_scores(cfg.input)  # a wrong --input fails before Ray
    init_ray(cfg.address)
    _check_input(cfg, rows, score_job)
    hamming = _hamming(cfg, rows)
    record = {
        "job": "curate dedup",
        "input": cfg.input,
        "model": score_job.get("model"),
        "similarity": cfg.similarity if cfg.near else None,
        "hamming": hamming,
        "h3_resolution": cfg.h3_resolution,
        "max_block_rows": cfg.max_block_rows,
        "schema": describe_schema(DEDUP_SCHEMA),
    }
    writer = open_job(pl.PartWriter(cfg.output, tables=("dedup",)), record)
    done = writer.done_ids()
    n = rows.num_rows
    ok = pc.equal(rows["status"], "ok").to_numpy(zero_copy_only=False)
    is_done = pc.is_in(rows["image_id"], value_set=done).to_numpy(zero_copy_only=False)
    blocks = block_column(rows, cfg.h3_resolution)
    keeper = np.arange(n)
    if "sha256" in rows.column_names:
        okrows = np.flatnonzero(ok)
        keeper[okrows] = okrows[dup.exact_keepers(rows.take(pa.array(okrows)))]
    candidate = ok & (keeper == np.arange(n))
    log.info("dedup: %d rows (%d ok), %d exact copies, %d already decided", n, ok.sum(),
             (ok & ~candidate).sum(), is_done.sum())  # fmt: skip

    def commit(decisions: Iterable[pa.Table]) -> int:
        """Commit decision tables in parts of about --rows-per-part rows (whole tables)."""
        return stream_to_parts(decisions, writer, lambda t: {"dedup": conform(t, DEDUP_SCHEMA)},
                               rows_per_part=cfg.rows_per_part,
                               on_part=progress_logger("dedup", start))  # fmt: skip

    sizes = _block_sizes(rows, blocks, candidate)
    written = commit(_search_phase(cfg, rows, blocks, candidate, is_done, embeddings, sizes,
                                   hamming))  # fmt: skip
    # Exact copies follow their keeper's final fate, so the keepers must be committed first.
    committed = writer.read(["image_id", "kept", "duplicate_of", "similarity"])
    written += commit(_follow_phase(cfg, rows, blocks, keeper, ok, candidate, is_done, committed))
    return _summarize(cfg, writer, n, sizes, written, time.perf_counter() - start, hamming)


def _follow_phase(cfg, rows, blocks, keeper, ok, candidate, is_done, committed):
    """Decisions of error rows and of exact copies not yet committed."""
    ids = rows["image_id"]
    errors = np.flatnonzero(~ok & ~is_done)
    for a in range(0, len(errors), cfg.rows_per_part):
        i = pa.array(errors[a : a + cfg.rows_per_part])
        yield _decisions(ids.take(i), False, blocks.take(i), reason=ERROR)
    copies = np.flatnonzero(ok & ~candidate & ~is_done)
    for a in range(0, len(copies), cfg.rows_per_part):
        i = copies[a : a + cfg.rows_per_part]
        rep, sim = _followers(rows, keeper, i, committed)
        yield _decisions(ids.take(pa.array(i)), False, blocks.take(pa.array(i)),
                         reason=EXACT, duplicate_of=rep, similarity=sim)  # fmt: skip


def _block_sizes(rows, blocks, candidate) -> dict[str, int]:
    """Candidates (ok, not an exact copy) per block."""
    counts = pc.value_counts(blocks.filter(pa.array(candidate)))
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                    strict=True))  # fmt: skip


def _search_phase(cfg, rows, blocks, candidate, is_done, embeddings, sizes, hamming):
    """Decisions of every candidate (ok, not an exact copy) not yet committed, whole blocks."""
    columns = {"image_id": rows["image_id"], "block": blocks,
               "locatability": rows["locatability"], "_part": rows["_part"]}  # fmt: skip
    if hamming is not None:
        columns["phash"] = rows["phash"]
    cand = pa.table(columns).filter(pa.array(candidate))
    todo = cand.filter(pa.array(~is_done[candidate]))
    if not todo.num_rows:
        return
    if not cfg.near and hamming is None:  # exact copies only: every other view is kept
        yield _decisions(todo["image_id"], True, todo["block"])
        return
    # One view in its block: kept without any search.
    single = pa.array([b for b, k in sizes.items() if k == 1], pa.string())
    lone = pc.is_in(todo["block"], value_set=single)
    alone = todo.filter(lone)
    if alone.num_rows:
        yield _decisions(alone["image_id"], True, alone["block"])
    todo = todo.filter(pc.invert(lone))
    if not todo.num_rows:
        return
    centroids, dim = {}, 0
    if cfg.near:  # oversized blocks are split by their embeddings
        centroids = split_centroids(cfg, todo, embeddings, sizes)
        fs, path = filesystem_for(embeddings[int(todo["_part"][0].as_py())])
        dim = pq.read_schema(path, filesystem=fs).field("embedding").type.list_size
    yield from whole_blocks(_run_blocks(cfg, todo, embeddings, centroids, dim, hamming))


def _summarize(cfg, writer, n_in: int, sizes, written: int, elapsed: float, hamming) -> dict:
    out = writer.read(["kept", "reason"])
    reason = out["reason"].to_numpy(zero_copy_only=False)
    counts = {r: int((reason == r).sum()) for r in (EXACT, PERCEPTUAL, NEAR, ERROR)}
    kept = int(pc.sum(out["kept"]).as_py() or 0)
    problem = count_problem(n_in, out.num_rows)
    if not problem and kept + sum(counts.values()) != n_in:
        problem = f"{n_in} scored rows but {kept} kept + {counts} decided"
    big = sorted(sizes.values(), reverse=True)
    summary = {
        "rows": out.num_rows,
        "kept": kept,
        **counts,
        "blocks": len(sizes),
        "largest_blocks": big[:5],
        "blocks_searched_exactly": sum(1 < s <= cfg.exact_rows for s in big),
        "blocks_ivf": sum(s > cfg.exact_rows for s in big),
        "blocks_split": sum(s > cfg.max_block_rows for s in big),
        "similarity": cfg.similarity if cfg.near else None,
        "hamming": hamming,
        "h3_resolution": cfg.h3_resolution,
        **run_rates(written, elapsed),
        "input": cfg.input,
        "output": cfg.output,
    }
    return finish_job("dedup", cfg.output, summary, problem)
