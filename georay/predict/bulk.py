"""Bulk geotagging: ``georay predict --input DIR|s3://prefix|MANIFEST --model ARTIFACT --output OUT``.

A streaming Ray Data job built from the shared :mod:`georay.pipeline` plumbing::

    read_input (rows not committed yet) -> fetch bytes + EXIF GPS + decode (CPU tasks)
      -> generate + parse + place (actor pool, a GPU per actor when present) -> committed parts

Pixels are decoded in CPU tasks at the size the model will see, so the model actors only
generate, while the next blocks are read and decoded beside them. Every input row ends in exactly one committed row of ``OUT/predictions/`` (``ok`` or
``error`` with a reason); a rerun with the same ``--output`` skips committed rows, so a killed
job resumes where it stopped. ``OUT/summary.json`` has the counts.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from georay import pipeline as pl
from georay.data.exif import gps_from_bytes
from georay.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError
from georay.data.storage import join_uri, write_bytes
from georay.predict.predictor import (
    PREDICTION_FIELDS,
    ModelSettings,
    Predictor,
    decode_for_model,
    error_row,
)
from georay.runtime import init_ray

log = logging.getLogger(__name__)

# Qwen2-VL's documented practical cap (1280 visual tokens of 28x28 pixels). Decoding in the CPU
# tasks stops there; a processor with a lower cap (the tiny model) resizes the rest.
DEFAULT_DECODE_PIXELS = 1280 * 28 * 28
SKIPPED_EXIF = "skipped: image has EXIF GPS"

PREDICTIONS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("uri", pa.string()),
        ("country", pa.string()),
        ("country_code", pa.string()),
        ("city", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("h3", pa.string()),
        ("reasons", pa.string()),
        ("raw_text", pa.string()),
        ("answered", pa.bool_()),
        ("resolution", pa.string()),
        ("answer_error", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("model", pa.string()),
        ("exif_lat", pa.float64()),
        ("exif_lon", pa.float64()),
    ]
)


@dataclass(kw_only=True)
class PredictConfig(ModelSettings):
    """Settings of ``georay predict`` (the model settings plus input, output and the pool)."""

    input: str = field(
        metadata={"help": "images folder, s3:// prefix, WebDataset tar(s) or manifest file"}
    )
    output: str = field(metadata={"help": "output folder or s3:// prefix (resumable)"})
    num_actors: int = field(default=1, metadata={"help": "model actors (one model copy each)"})
    num_gpus: float | None = field(
        default=None, metadata={"help": "GPUs per actor (default: 1 if the cluster has GPUs)"}
    )
    num_cpus: float | None = field(
        default=None,
        metadata={"help": "CPUs per actor (default: 1 with a GPU, else a share leaving 1 CPU)"},
    )
    skip_exif_gps: bool = field(
        default=False,
        metadata={"help": "do not run the model on images whose EXIF already has GPS"},
    )
    load_cpus: float = field(
        default=0.5, metadata={"help": "CPUs per read+decode task (beside the model actors)"}
    )
    block_rows: int = field(
        default=64,
        metadata={
            "help": "input rows per block (the unit of scheduling: small blocks start the "
            "model actors sooner)"
        },
    )
    rows_per_part: int = field(default=1024, metadata={"help": "rows per committed part file"})
    max_file_bytes: int = field(default=64 << 20, metadata={"help": "larger files are errors"})
    max_image_pixels: int = field(
        default=DEFAULT_MAX_PIXELS, metadata={"help": "images with more pixels are errors"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.input or not self.output:
            raise ValueError("input and output are required")
        if self.num_actors < 1:
            raise ValueError(f"num_actors must be >= 1, got {self.num_actors}")
        if self.load_cpus <= 0:
            raise ValueError(f"load_cpus must be > 0, got {self.load_cpus}")
        if self.block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {self.block_rows}")
        if self.rows_per_part < 1:
            raise ValueError(f"rows_per_part must be >= 1, got {self.rows_per_part}")


def load_stage(
    batch: dict[str, np.ndarray],
    *,
    max_file_bytes: int,
    max_pixels: int,
    max_image_pixels: int,
    skip_exif_gps: bool,
) -> dict[str, np.ndarray]:
    """Fetch bytes, record EXIF GPS, decode to model-sized pixels (raw bytes + height/width).

    Raw bytes with their shape travel through Arrow as plain binary, whatever each image's
    aspect ratio. Undecodable images become error rows; with ``skip_exif_gps``, rows whose
    EXIF has a position get ``skip=True`` and no pixels.
    """
    batch = pl.fetch_bytes(batch, max_bytes=max_file_bytes)
    n = len(batch["image_id"])
    exif_lat, exif_lon = np.full(n, np.nan), np.full(n, np.nan)
    pixels = np.empty(n, dtype=object)
    height, width = np.zeros(n, dtype=np.int32), np.zeros(n, dtype=np.int32)
    skip = np.zeros(n, dtype=bool)
    ok = pl.ok_mask(batch)
    for i in range(n):
        if not ok[i]:
            continue
        data = batch["bytes"][i]
        try:
            gps = gps_from_bytes(data)
        except Exception:  # a broken EXIF block must not fail a row the model can still see
            gps = None
        if gps is not None:
            exif_lat[i], exif_lon[i] = gps
            if skip_exif_gps:
                skip[i] = True
                continue
        try:
            image = decode_for_model(data, max_pixels, max_image_pixels=max_image_pixels)
        except ImageDecodeError as err:
            pl.set_error(batch, i, err.reason)
            continue
        height[i], width[i] = image.shape[:2]
        pixels[i] = image.tobytes()
    out = {k: v for k, v in batch.items() if k != "bytes"}
    out.update(pixels=pixels, height=height, width=width, skip=skip)
    out.update(exif_lat=exif_lat, exif_lon=exif_lon)
    return pl.clean_status(out)


class PredictActor:
    """A Ray Data actor holding one :class:`Predictor`; batches in, predictions tables out."""

    def __init__(self, settings: dict):
        self.predictor = Predictor(ModelSettings(**settings))

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["image_id"])
        model = self.predictor.model_id
        todo = np.flatnonzero(pl.ok_mask(batch) & ~np.asarray(batch["skip"], dtype=bool))
        images = [
            np.frombuffer(batch["pixels"][i], np.uint8).reshape(
                int(batch["height"][i]), int(batch["width"][i]), 3
            )
            for i in todo
        ]
        predicted = dict(zip(todo.tolist(), self.predictor.predict(images), strict=True))
        rows = []
        for i in range(n):
            if i in predicted:
                row = predicted[i]
            elif batch["status"][i] != pl.OK:
                row = error_row(str(batch["error"][i]), model)
            else:  # skipped: its position is already known from EXIF
                row = error_row("", model) | {"status": pl.OK, "error": None}
                row["answer_error"] = SKIPPED_EXIF
            lat, lon = batch["exif_lat"][i], batch["exif_lon"][i]
            row.update(
                image_id=str(batch["image_id"][i]),
                uri=str(batch["uri"][i]),
                exif_lat=None if np.isnan(lat) else float(lat),
                exif_lon=None if np.isnan(lon) else float(lon),
            )
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=PREDICTIONS_SCHEMA)


def predict(cfg: PredictConfig) -> dict:
    """Run the bulk job; returns (and writes to ``OUT/summary.json``) the counts.

    Returns
    -------
    dict
        ``rows``, ``ok``, ``error``, ``error_reasons`` over all committed rows (earlier runs
        included), ``answered``, ``skipped_exif``, ``rows_this_run``, ``elapsed_s``,
        ``images_per_s`` (this run).
    """
    init_ray()
    start = time.perf_counter()
    writer = pl.PartWriter(cfg.output, tables=("predictions",))
    done = writer.done_ids()
    if len(done):
        log.info("resuming: %d rows already committed under %s", len(done), cfg.output)
    ds = pl.read_input(cfg.input, done_ids=done, block_rows=cfg.block_rows)
    ds = ds.map_batches(
        load_stage,
        batch_format="numpy",
        # A ray_remote_args_fn keeps Ray Data from fusing this stage into the model actors
        # (it fuses a task stage into the next actor stage when their resources match), which
        # would serialize decoding and generation in one process.
        ray_remote_args_fn=lambda: {"num_cpus": cfg.load_cpus},
        fn_kwargs={
            "max_file_bytes": cfg.max_file_bytes,
            "max_pixels": cfg.max_pixels or DEFAULT_DECODE_PIXELS,
            "max_image_pixels": cfg.max_image_pixels,
            "skip_exif_gps": cfg.skip_exif_gps,
        },
    )
    ds = ds.map_batches(
        PredictActor,
        fn_constructor_kwargs={"settings": asdict(ModelSettings.of(asdict(cfg)))},
        batch_size=cfg.batch_size,
        batch_format="numpy",
        **pl.actor_pool_options(cfg.num_actors, num_gpus=cfg.num_gpus, num_cpus=cfg.num_cpus),
    )
    written = pl.stream_to_parts(
        ds,
        writer,
        split=lambda t: {"predictions": pl.conform(t, PREDICTIONS_SCHEMA)},
        rows_per_part=cfg.rows_per_part,
        on_part=lambda total: log.info("committed %d rows", total),
    )
    elapsed = time.perf_counter() - start
    summary = summarize(writer.read(["status", "error", "answered", "answer_error"]))
    summary.update(
        input=cfg.input,
        output=cfg.output,
        model=cfg.model,
        rows_this_run=written,
        elapsed_s=round(elapsed, 3),
        images_per_s=round(written / elapsed, 3) if elapsed > 0 else None,
    )
    write_bytes(join_uri(cfg.output, "summary.json"), json.dumps(summary, indent=2).encode())
    log.info("predict: %s", summary)
    return summary


def summarize(table: pa.Table) -> dict:
    """Counts of committed prediction rows: status counts plus answered and EXIF-skipped."""
    counts = pl.status_counts(table)
    answered = table["answered"].to_pylist() if table.num_rows else []
    notes = table["answer_error"].to_pylist() if table.num_rows else []
    counts["answered"] = sum(bool(a) for a in answered)
    counts["skipped_exif"] = sum(note == SKIPPED_EXIF for note in notes)
    return counts


__all__ = ["PREDICTION_FIELDS", "PREDICTIONS_SCHEMA", "PredictConfig", "predict", "summarize"]
