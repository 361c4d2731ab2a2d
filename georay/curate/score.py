"""``curate score``: the student scores every image; streaming, resumable, never drops a row.

read input -> fetch bytes (tasks) -> decode + resize to the encoder's side, uint8 (tasks) ->
encoder + head (actor pool) -> committed parts (driver), via :mod:`georay.pipeline`. Outputs:

* ``OUT/scores/``: the DESIGN "scores" schema (the input's scalar columns, ``locatability``,
  ``teacher_locatability``, ``status``, ``error``, ``model``; ``sha256`` on request);
* ``OUT/curated/``: the input rows at or above the threshold, with their ``locatability``;
* ``OUT/embeddings/`` on request: ``image_id`` + ``embedding`` of every ``ok`` row;
* ``OUT/summary.json``: rows in, ok, error (with reasons), kept, score histogram.

Resuming is shard-level idempotence through :class:`georay.pipeline.PartWriter` (see
:mod:`georay.pipeline.output` for why not Ray Data's ``CheckpointConfig``): rerunning the same
command skips every committed row and ends with exactly one row per ``image_id``.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from georay import pipeline as pl
from georay.curate.config import ScoreConfig
from georay.curate.embedder import EncoderSpec, embed_dataset
from georay.curate.head import load_head
from georay.curate.teacher import TEACHER, with_teacher
from georay.data.storage import join_uri, read_bytes, write_bytes
from georay.runtime import init_ray

log = logging.getLogger(__name__)

SCORE_COLUMNS = [
    ("locatability", pa.float32()),
    (TEACHER, pa.float32()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("model", pa.string()),
]


def output_schemas(input_schema: pa.Schema, sha256: bool) -> tuple[pa.Schema, pa.Schema]:
    """(scores, curated) schemas for an input with ``input_schema``."""
    own = {name for name, _ in SCORE_COLUMNS} | {"sha256"}
    base = [f for f in input_schema if f.name in pl.scalar_columns(input_schema)]
    base = [f for f in base if f.name not in own]
    scores = pa.schema(base + SCORE_COLUMNS + ([("sha256", pa.string())] if sha256 else []))
    curated = pa.schema(base + [("locatability", pa.float32())])
    return scores, curated


def _embedding_table(t: pa.Table) -> pa.Table:
    """``image_id`` + ``embedding`` (fixed-size list of float32) of the ok rows of ``t``."""
    ok = t.filter(pc.equal(t["status"], "ok"))
    if "embedding" not in ok.column_names or ok.num_rows == 0:
        return pa.table({"image_id": pa.array([], pa.string()), "embedding": pa.array([])})
    # Ray hands tensors back as its tensor extension type, whose chunks convert to (n, dim).
    emb = np.concatenate(
        [np.asarray(c.to_numpy(), dtype=np.float32) for c in ok["embedding"].chunks]
    )
    flat = pa.array(emb.reshape(-1), pa.float32())
    return pa.table(
        {
            "image_id": ok["image_id"],
            "embedding": pa.FixedSizeListArray.from_arrays(flat, emb.shape[1]),
        }
    )


def _splitter(scores_schema, curated_schema, threshold: float, embeddings: bool):
    def split(t: pa.Table) -> dict[str, pa.Table]:
        ok = pc.equal(t["status"], "ok")
        loc = pc.if_else(ok, t["locatability"], pa.scalar(None, pa.float32()))
        t = t.set_column(t.column_names.index("locatability"), "locatability", loc)
        keep = pc.and_(ok, pc.greater_equal(t["locatability"], threshold))
        out = {
            "scores": pl.conform(t, scores_schema),
            "curated": pl.conform(t.filter(pc.fill_null(keep, False)), curated_schema),
        }
        if embeddings:
            out["embeddings"] = _embedding_table(t)
        return out

    return split


def summarize(writer: pl.PartWriter, threshold: float, bins: int, rows_in: int | None) -> dict:
    """Counts and the score histogram of every committed row (this run and earlier ones).

    ``rows_in`` is the number of input rows when known up front (manifests, folders); for
    WebDataset it is the number of rows read, which is every sample by construction.
    """
    rows = writer.read(["status", "error", "locatability", TEACHER])
    counts = pl.status_counts(rows)
    if rows_in is not None and rows_in != counts["rows"]:
        log.error("%d input rows but %d output rows", rows_in, counts["rows"])
    scores = rows["locatability"].to_numpy(zero_copy_only=False).astype(float)
    scores = scores[~np.isnan(scores)]
    hist, edges = np.histogram(scores, bins=bins, range=(0.0, 1.0))
    summary = {
        "rows_in": counts["rows"] if rows_in is None else rows_in,
        "rows_out": counts["rows"],
        **{k: counts[k] for k in ("ok", "error", "error_reasons")},
        "kept": int((scores >= threshold).sum()),
        "threshold": threshold,
        "mean_locatability": float(scores.mean()) if len(scores) else None,
        "histogram": {"edges": [round(float(e), 6) for e in edges], "counts": hist.tolist()},
    }
    teacher = rows[TEACHER].to_numpy(zero_copy_only=False).astype(float)
    student = rows["locatability"].to_numpy(zero_copy_only=False).astype(float)
    both = ~np.isnan(teacher) & ~np.isnan(student)
    if both.sum() >= 3:
        from scipy.stats import spearmanr

        summary["teacher_spearman"] = float(spearmanr(student[both], teacher[both]).statistic)
        summary["teacher_kept"] = int((teacher >= threshold).sum())
    return summary


def _check_job(cfg: ScoreConfig, threshold: float, model: str) -> None:
    """Refuse to resume into an output written with another threshold or model."""
    uri = join_uri(cfg.output, "job.json")
    job = {"threshold": threshold, "model": model, "input": cfg.source[0]}
    try:
        old = json.loads(read_bytes(uri))
    except (FileNotFoundError, OSError):
        write_bytes(uri, json.dumps(job, indent=2).encode())
        return
    for key in ("threshold", "model", "input"):
        if old.get(key) != job[key]:
            raise ValueError(
                f"{cfg.output} was written with {key}={old.get(key)!r}, not {job[key]!r}: "
                "rerun with the same settings to resume, or use a new --output"
            )


def score(cfg: ScoreConfig) -> dict:
    """Score every input image; returns (and writes) ``OUT/summary.json``.

    Joins the Ray cluster in ``RAY_ADDRESS``, or starts a local one (:func:`init_ray`).
    """
    init_ray()
    head = load_head(cfg.head)
    info = head.info
    threshold = cfg.threshold if cfg.threshold is not None else info["threshold"]
    model = f"{info['encoder']['id']}+ridge:{info['fitted']}"
    _check_job(cfg, threshold, model)
    tables = ("scores", "curated") + (("embeddings",) if cfg.embeddings else ())
    writer = pl.PartWriter(cfg.output, tables=tables)
    done = writer.done_ids()
    uri, kind = cfg.source
    if kind == "webdataset":
        ds = pl.read_webdataset_rows(uri, done_ids=done)
        schema = pa.schema([("image_id", pa.string()), ("uri", pa.string())])
        rows_in = None
    else:
        table = with_teacher(pl.input_table(uri, kind))
        schema, rows_in = table.schema, table.num_rows
        ds = pl.dataset_from_table(pl.filter_done(table, done), block_rows=cfg.block_rows)
    log.info("scoring %s (%s); %d rows already done", uri, kind, len(done))
    spec = EncoderSpec(**info["encoder"]["spec"])
    if spec.weights:  # saved next to head.json: resolve against where the head is now
        spec = dataclasses.replace(spec, weights=join_uri(cfg.head, spec.weights))
    ds = embed_dataset(
        ds,
        spec,
        info["side"],
        cfg,
        head=cfg.head,
        keep_embedding=cfg.embeddings,
        sha256=cfg.sha256,
        max_pixels=cfg.max_pixels,
        model_id=model,
    )
    scores_schema, curated_schema = output_schemas(schema, cfg.sha256)
    split = _splitter(scores_schema, curated_schema, threshold, cfg.embeddings)
    pl.stream_to_parts(ds, writer, split, rows_per_part=cfg.rows_per_part)
    summary = {**summarize(writer, threshold, cfg.bins, rows_in), "model": model}
    write_bytes(join_uri(cfg.output, "summary.json"), json.dumps(summary, indent=2).encode())
    return summary
