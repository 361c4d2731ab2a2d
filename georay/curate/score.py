"""``curate score``: the student scores every image; streaming, resumable, never drops a row.

read input -> fetch bytes (tasks) -> decode + resize to the encoder's side, uint8 (tasks) ->
encoder + head (actor pool) -> committed parts (driver), via :mod:`georay.pipeline`. Outputs:

* ``OUT/scores/``: the DESIGN "scores" schema (the input's scalar columns, ``locatability``,
  ``teacher_locatability``, ``status``, ``error``, ``model``; ``sha256`` and ``phash`` on request);
* ``OUT/curated/``: the input rows at or above the threshold, with their ``locatability``;
* ``OUT/embeddings/`` on request: ``image_id`` + ``embedding`` of every ``ok`` row;
* ``OUT/summary.json``: rows in, ok, error (with reasons), kept, score histogram.

Resuming is shard-level idempotence through :class:`georay.pipeline.PartWriter` (see
:mod:`georay.pipeline.output` for why not Ray Data's ``CheckpointConfig``): rerunning the same
command skips every committed row and ends with exactly one row per ``image_id``.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from georay import pipeline as pl
from georay.curate.config import ScoreConfig
from georay.curate.embedder import EncoderSpec, embed_dataset
from georay.curate.head import load_head
from georay.curate.teacher import TEACHER, with_teacher
from georay.data.storage import join_uri

log = logging.getLogger(__name__)

SCORE_COLUMNS = [
    ("locatability", pa.float32()),
    (TEACHER, pa.float32()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("model", pa.string()),
]


def output_schemas(
    input_schema: pa.Schema, sha256: bool, phash: bool = False
) -> tuple[pa.Schema, pa.Schema]:
    """(scores, curated) schemas for an input with ``input_schema``."""
    hashes = [(name, pa.string()) for name, on in (("sha256", sha256), ("phash", phash)) if on]
    own = {name for name, _ in SCORE_COLUMNS} | {"sha256", "phash"}
    base = [f for f in input_schema if f.name in pl.scalar_columns(input_schema)]
    base = [f for f in base if f.name not in own]
    scores = pa.schema(base + SCORE_COLUMNS + hashes)
    curated = pa.schema(base + [("locatability", pa.float32())])
    return scores, curated


def embeddings_schema(dim: int) -> pa.Schema:
    """``image_id`` + ``embedding`` (fixed-size list of ``dim`` float32)."""
    return pa.schema([("image_id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])


def _embedding_table(t: pa.Table) -> pa.Table:
    """``image_id`` + ``embedding`` of the ok rows of ``t`` (empty: no embedding column)."""
    ok = t.filter(pc.equal(t["status"], "ok"))
    if "embedding" not in ok.column_names or ok.num_rows == 0:
        return pa.table({"image_id": pa.array([], pa.string())})
    # Ray hands tensors back as its tensor extension type, whose chunks convert to (n, dim).
    emb = np.concatenate(
        [np.asarray(c.to_numpy(), dtype=np.float32) for c in ok["embedding"].chunks]
    )
    flat = pa.array(emb.reshape(-1), pa.float32())
    lists = pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])
    return pa.table({"image_id": ok["image_id"], "embedding": lists})


def _splitter(threshold: float, embeddings: bool):
    def split(t: pa.Table) -> dict[str, pa.Table]:
        ok = pc.equal(t["status"], "ok")
        loc = pc.if_else(ok, t["locatability"], pa.scalar(None, pa.float32()))
        t = t.set_column(t.column_names.index("locatability"), "locatability", loc)
        keep = pc.and_(ok, pc.greater_equal(t["locatability"], threshold))
        out = {"scores": t, "curated": t.filter(pc.fill_null(keep, False))}
        if embeddings:
            out["embeddings"] = _embedding_table(t)
        return out

    return split


def summarize(writer: pl.PartWriter, threshold: float, bins: int) -> dict:
    """Kept count and the score histogram of every committed row (this run and earlier ones)."""
    rows = writer.read(["locatability", TEACHER])
    scores = rows["locatability"].to_numpy(zero_copy_only=False).astype(float)
    scores = scores[~np.isnan(scores)]
    hist, edges = np.histogram(scores, bins=bins, range=(0.0, 1.0))
    summary = {
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


def score(cfg: ScoreConfig) -> dict:
    """Score every input image; returns (and writes) ``OUT/summary.json``.

    A bulk job on :func:`georay.pipeline.run_bulk_job`: joins the cluster in ``--address`` /
    ``RAY_ADDRESS`` or starts a local Ray, resumes a killed run, refuses an output written with
    another head, threshold or input.
    """
    head = load_head(cfg.head)
    info = head.info
    threshold = cfg.threshold if cfg.threshold is not None else info["threshold"]
    model = f"{info['encoder']['id']}+ridge:{info['fitted']}"
    spec = EncoderSpec(**info["encoder"]["spec"])
    if spec.weights:  # saved next to head.json: resolve against where the head is now
        spec = dataclasses.replace(spec, weights=join_uri(cfg.head, spec.weights))
    tables = ("scores", "curated") + (("embeddings",) if cfg.embeddings else ())

    def outputs(input_schema: pa.Schema) -> dict[str, pa.Schema]:
        scores, curated = output_schemas(input_schema, cfg.sha256, cfg.phash)
        return {"scores": scores, "curated": curated,
                "embeddings": embeddings_schema(info["embedding_dim"])}  # fmt: skip

    def stages(ds):
        return embed_dataset(ds, spec, info["side"], cfg, head=cfg.head,
                             keep_embedding=cfg.embeddings, sha256=cfg.sha256, phash=cfg.phash, model_id=model,
                             decode=cfg.decode)  # fmt: skip

    job = pl.BulkJob(
        name="curate score",
        settings=cfg,
        identity={"model": model, "threshold": threshold},
        tables=tables,
        outputs=lambda schema: {t: s for t, s in outputs(schema).items() if t in tables},
        stages=stages,
        split=_splitter(threshold, cfg.embeddings),
        summarize=lambda writer: summarize(writer, threshold, cfg.bins),
        prepare=with_teacher,
    )
    return pl.run_bulk_job(job)
