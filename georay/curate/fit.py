"""``curate fit``: teacher-label a sample, embed it with Ray Data, fit and save the student head.

The sample is drawn from the manifest (seeded); its teacher labels come from the manifest's
``ade20k_fractions`` or from a segmenter running in the same actors as the encoder. A fixed
share of the sample, chosen by a hash of ``image_id`` (so it does not move when the sample
grows), is held out: the saved head is fitted on the rest, and the held-out Spearman correlation
with the teacher is recorded in ``head.json`` next to the encoder id, embedding size and
threshold.
"""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import pyarrow as pa

from georay import pipeline as pl
from georay.curate.config import FitConfig
from georay.curate.embedder import EncoderSpec, embed_dataset, load_encoder
from georay.curate.head import fit_ridge, regression_metrics, save_head
from georay.curate.teacher import FRACTIONS, TEACHER, with_teacher
from georay.data.manifest import read_manifest
from georay.data.splits import holdout_mask
from georay.data.storage import join_uri, write_bytes
from georay.errors import UserError
from georay.runtime import init_ray

log = logging.getLogger(__name__)
ENCODER_FILE = "encoder.pt"


def _teacher_mode(cfg: FitConfig, table: pa.Table) -> str:
    if cfg.teacher != "auto":
        return cfg.teacher
    if FRACTIONS in table.column_names:
        return "manifest"
    if cfg.segmenter:
        return "segmenter"
    raise UserError(f"{cfg.input} has no {FRACTIONS} column: give --segmenter")


def _sample(cfg: FitConfig, table: pa.Table, mode: str) -> pa.Table:
    if mode == "manifest":
        table = with_teacher(table)
        table = table.filter(table[TEACHER].is_valid())
    n = min(cfg.sample, table.num_rows)
    idx = np.sort(np.random.default_rng(cfg.seed).choice(table.num_rows, n, replace=False))
    return table.take(pa.array(idx))


def _encoder_for_fit(cfg: FitConfig):
    """The spec the actors load, and its side; random-init weights are saved for reuse."""
    import torch

    spec = EncoderSpec(cfg.encoder, cfg.pretrained, cfg.seed)
    visual, pre = load_encoder(spec)
    if cfg.pretrained:
        return spec, pre.side, visual.output_dim
    buf = io.BytesIO()
    torch.save(visual.state_dict(), buf)
    uri = join_uri(cfg.output, ENCODER_FILE)
    write_bytes(uri, buf.getvalue())
    return EncoderSpec(cfg.encoder, None, cfg.seed, uri), pre.side, visual.output_dim


def _collect(ds) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """ids, embeddings and teacher labels of the ok rows; and the number of error rows."""
    ids, embs, teacher, errors = [], [], [], 0
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        ok = pl.ok_mask(batch)
        errors += int((~ok).sum())
        if ok.any():
            ids += [str(i) for i in batch["image_id"][ok]]
            embs.append(np.asarray(batch["embedding"])[ok])
            teacher.append(np.asarray(batch[TEACHER], dtype=np.float64)[ok])
    if not ids:
        raise UserError("no image of the sample could be embedded (see the input's error rows)")
    return ids, np.concatenate(embs), np.concatenate(teacher), errors


def fit(cfg: FitConfig) -> dict:
    """Fit the student head; writes ``head.json`` / ``head.npz`` (/ ``encoder.pt``).

    Returns
    -------
    dict
        The head's info (what ``head.json`` holds).
    """
    init_ray(cfg.address)
    table = read_manifest(cfg.input)
    mode = _teacher_mode(cfg, table)
    sample = _sample(cfg, table, mode)
    spec, side, dim = _encoder_for_fit(cfg)
    segmenter = cfg.segmenter if mode == "segmenter" else None
    log.info("fit: %d images, teacher=%s, encoder=%s", sample.num_rows, mode, spec.id)
    if segmenter and TEACHER in sample.column_names:  # the segmenter's labels replace it
        sample = sample.drop_columns([TEACHER])
    ds = pl.dataset_from_table(sample)
    ds = embed_dataset(
        ds,
        spec,
        max(side, cfg.teacher_side) if segmenter else side,
        cfg,
        segmenter=segmenter,
    )
    ids, emb, y, errors = _collect(ds)
    labelled = ~np.isnan(y)
    ids = [i for i, keep in zip(ids, labelled, strict=True) if keep]
    emb, y = emb[labelled], y[labelled]
    held = holdout_mask(ids, cfg.holdout, cfg.seed)
    if held.sum() < 3 or (~held).sum() < 10:
        raise UserError(f"sample too small to hold out {cfg.holdout:.0%}: {len(ids)} labelled")
    head = fit_ridge(emb[~held], y[~held], seed=cfg.seed)
    weights = ENCODER_FILE if spec.weights else None
    head.info = {
        "kind": "ridge",
        "encoder": {"id": spec.id, "spec": {**spec.to_dict(), "weights": weights}},
        "embedding_dim": int(dim),
        "side": int(side),
        "threshold": cfg.threshold,
        "teacher": mode if mode == "manifest" else f"segmenter:{cfg.segmenter}",
        "fitted": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        **head.info,
        "metrics": {
            "holdout": regression_metrics(head.predict(emb[held]), y[held]),
            "train": regression_metrics(head.predict(emb[~held]), y[~held]),
            "errors": errors,
            "input": cfg.input,
        },
    }
    save_head(head, cfg.output)
    log.info("fit: holdout spearman %.3f", head.info["metrics"]["holdout"]["spearman"])
    return head.info
