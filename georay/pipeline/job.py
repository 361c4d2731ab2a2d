"""The one bulk-job skeleton: list the input, guard the output, resume, stream committed parts.

``curate score``, ``predict`` and the baselines differ only in their map stages and output
tables; everything else is here, once::

    init_ray -> list input (driver) -> job record guard -> done ids -> read rows not done
      -> job.stages(ds) -> committed parts (progress logged) -> summary.json

A job describes itself with a :class:`BulkJob`. Its ``identity`` (model, head, threshold,
engine, ...) plus the input and the commit table's schema are recorded in ``OUT/job.json`` on
the first run; a rerun into the same output must match it, else it is refused with an error
naming both values, so rows of two different models never mix in one output.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from georay.data.fetch import is_read_failure
from georay.data.storage import join_uri, read_bytes, write_bytes
from georay.errors import UserError
from georay.pipeline import inputs, tally
from georay.pipeline.output import PartWriter, conform, status_counts, stream_to_parts
from georay.pipeline.settings import BulkSettings, PoolSettings
from georay.pipeline.stages import load_images
from georay.runtime import init_ray

log = logging.getLogger(__name__)

JOB_FILE = "job.json"


@dataclass
class BulkJob:
    """What one bulk job adds to the skeleton.

    Attributes
    ----------
    name
        The command (``"predict"``), recorded in ``job.json``.
    settings
        Input, output, pool and limits (:class:`BulkSettings`).
    identity
        What a resumed run must match besides input and schema (model, head, threshold, ...).
    tables
        Output table names; the first is the commit table (its parts say which rows are done).
    outputs
        Input schema -> ``{table: schema}`` for every table of ``tables``.
    stages
        The job's own map stages: pipeline rows in, result rows out (a Ray Dataset).
    split
        Result rows -> ``{table: rows}`` (default: all rows to the commit table); the skeleton
        conforms each to its schema.
    summarize
        Extra ``summary.json`` fields from the committed output.
    prepare
        Driver-side change of the listed input table before it is read (e.g. add a column).
    """

    name: str
    settings: BulkSettings
    identity: dict[str, Any]
    tables: tuple[str, ...]
    outputs: Callable[[pa.Schema], dict[str, pa.Schema]]
    stages: Callable[[Any], Any]
    split: Callable[[pa.Table], dict[str, pa.Table]] | None = None
    summarize: Callable[[PartWriter], dict] | None = None
    prepare: Callable[[pa.Table], pa.Table] | None = None
    record: dict[str, Any] = field(default_factory=dict, init=False)


def load_stage(ds, settings: PoolSettings, **kwargs):
    """Add :func:`georay.pipeline.stages.load_images` as CPU tasks beside the model actors.

    ``kwargs`` choose the geometry (``side=`` or ``max_pixels=``) and the extras (``sha256``,
    ``exif_gps``, ``skip_exif_gps``).
    """
    return ds.map_batches(
        load_images,
        batch_format="numpy",
        # A ray_remote_args_fn keeps Ray Data from fusing these tasks into the model actors
        # (it fuses a task stage into the next actor stage when their resources match), which
        # would serialize decoding and inference in one process.
        ray_remote_args_fn=lambda: {"num_cpus": settings.decode_cpus},
        fn_kwargs={
            "max_image_pixels": settings.max_image_pixels,
            "max_file_bytes": settings.max_file_bytes,
            "fetch": settings.fetch_policy(),
            **kwargs,
        },
    )


def _restore_input_types(batches, schema: pa.Schema):
    """Pass-through columns back to their input types, batch by batch.

    A column that is null throughout a block loses its type between numpy stages (a string
    column comes back as float NaN), and blocks of mixed types cannot be concatenated.
    """
    for batch in batches.iter_batches(batch_format="pyarrow", batch_size=None):
        for want in schema:
            if want.name not in batch.column_names or batch[want.name].type == want.type:
                continue
            column = batch[want.name]
            empty = column.null_count == len(column) or (
                pa.types.is_floating(column.type) and pc.all(pc.is_nan(column)).as_py()
            )
            fixed = pa.nulls(len(column), want.type) if empty else column.cast(want.type)
            batch = batch.set_column(batch.schema.get_field_index(want.name), want.name, fixed)
        yield batch


def describe_schema(schema: pa.Schema) -> list[str]:
    """``["name: type", ...]``: a schema as it is recorded in ``job.json``."""
    return [f"{f.name}: {f.type}" for f in schema]


def check_job(output: str, record: dict[str, Any], has_parts: bool) -> None:
    """Write ``OUT/job.json`` on a first run; refuse a run whose record differs from it.

    Raises
    ------
    UserError
        The output was written by another job, model, input or schema (both values named), or
        holds parts but no record (written by an older georay, so it cannot be checked).
    """
    uri = join_uri(output, JOB_FILE)
    try:
        old = json.loads(read_bytes(uri))
    except FileNotFoundError:
        if has_parts:
            raise UserError(
                f"{output} holds output parts but no {JOB_FILE}, so georay cannot tell which job "
                "wrote them; use a new --output"
            ) from None
        write_bytes(uri, json.dumps(record, indent=2).encode())
        return
    for key in sorted(set(old) | set(record)):
        if old.get(key) != record.get(key):
            raise UserError(
                f"{output} was written with {key}={old.get(key)!r}, not {record.get(key)!r}: "
                "rerun with the same settings to resume, or use a new --output"
            )


def read_failure_ids(writer: PartWriter) -> pa.Array:
    """Ids of committed error rows whose reason is a read failure (what ``--retry-errors``
    reads again); decode and size errors are properties of the bytes and stay."""
    table = writer.read([writer.id_column, "status", "error"])
    if not table.num_rows:
        return pa.array([], pa.string())
    keep = [s == "error" and is_read_failure(e)
            for s, e in zip(table["status"].to_pylist(), table["error"].to_pylist(), strict=True)]  # fmt: skip
    return table.filter(pa.array(keep, pa.bool_()))[writer.id_column].combine_chunks()


def _read(job: BulkJob, done: pa.Array) -> tuple[Any, pa.Schema, int | None, dict]:
    """(dataset of rows not done, input schema, input row count or None for WebDataset, how
    the input was read)."""
    s = job.settings
    kind = inputs.detect_kind(s.input)
    if kind == "webdataset":
        schema = pa.schema([("image_id", pa.string()), ("uri", pa.string())])
        rows = inputs.read_webdataset_rows(s.input, done_ids=done)
        return rows, schema, None, {"layout": "webdataset"}
    table, layout = inputs.listed_input(s.input, kind, columns=s.input_columns,
                                        image_root=s.image_root)  # fmt: skip
    if job.prepare:
        table = job.prepare(table)
    todo = inputs.filter_done(table, done)
    ds = inputs.dataset_from_table(todo, block_rows=s.block_rows)
    return ds, table.schema, table.num_rows, layout


def stage_times(ds) -> dict[str, dict]:
    """Where a finished dataset spent its time, per Ray Data operator: tasks, rows out, wall and
    CPU seconds summed over tasks (an actor's busy time) and the span from the first task's start
    to the last one's end. Empty if Ray Data's stats are unavailable (they are diagnostics)."""
    out: dict[str, dict] = {}

    def walk(node) -> None:
        for parent in node.parents:
            walk(parent)
        for op in node.operators_stats:
            if op.wall_time is None:
                continue
            out[op.operator_name] = {
                "tasks": int(op.wall_time.count),
                "rows": int(op.output_num_rows.sum) if op.output_num_rows else None,
                "wall_s": round(op.wall_time.sum, 3),
                "cpu_s": round(op.cpu_time.sum, 3),
                "span_s": round(op.latest_end_time - op.earliest_start_time, 3),
            }

    try:
        walk(ds.get_stats_summary())
    except Exception:  # Ray Data's stats are internal: never fail a finished job over them
        return {}
    return out


def run_bulk_job(job: BulkJob) -> dict:
    """Run ``job`` to completion (or resume it); returns and writes ``OUT/summary.json``.

    Returns
    -------
    dict
        ``rows_in``, ``rows_out``, ``ok``, ``error``, ``error_reasons`` over every committed row
        (earlier runs included), ``skipped_files`` (files in an input folder that are not
        images; why: ``input_layout``), ``rows_this_run``, ``elapsed_s``, ``rows_per_s`` and
        ``stages`` (:func:`stage_times`; this run), ``input``, ``output``, the job's identity and
        its own ``summarize`` fields.
    """
    s = job.settings
    init_ray(s.address)
    start = time.perf_counter()
    writer = PartWriter(s.output, tables=job.tables)  # reads only, until open()
    done = writer.done_ids()
    retry = read_failure_ids(writer) if s.retry_errors else pa.array([], pa.string())
    if len(retry):  # read again: not done, and their rows are dropped once the guard passed
        done = done.filter(pc.invert(pc.is_in(done, value_set=retry)))
    ds, input_schema, rows_in, layout = _read(job, done)
    schemas = job.outputs(input_schema)
    commit = job.tables[0]
    job.record = {
        "job": job.name,
        **job.identity,
        "input": s.input,
        "schema": describe_schema(schemas[commit]),
    }
    check_job(s.output, job.record, has_parts=bool(writer.files()))
    writer.open()
    retried = writer.drop_rows(retry) if len(retry) else 0
    counter = tally.start()
    log.info("%s: %s -> %s; %d rows already done", job.name, s.input, s.output,
             len(writer.done_ids()))  # fmt: skip

    def split(rows: pa.Table) -> dict[str, pa.Table]:
        parts = job.split(rows) if job.split else {commit: rows}
        return {name: conform(parts[name], schema) for name, schema in schemas.items()}

    def progress(total: int) -> None:
        elapsed = time.perf_counter() - start
        log.info("%s: committed %d rows (%.1f rows/s)", job.name, total, total / elapsed)

    results = job.stages(ds)
    batches = _restore_input_types(results, input_schema)
    written = stream_to_parts(
        batches, writer, split, rows_per_part=s.rows_per_part, on_part=progress
    )
    elapsed = time.perf_counter() - start
    counts = status_counts(writer.read(["status", "error"]))
    if rows_in is not None and rows_in != counts["rows"]:
        log.error("%s: %d input rows but %d output rows", job.name, rows_in, counts["rows"])
    summary = {
        "rows_in": counts["rows"] if rows_in is None else rows_in,
        "rows_out": counts["rows"],
        "skipped_files": layout.get("skipped_files", 0),  # not images: never rows (inputs.py)
        **{k: counts[k] for k in ("ok", "error", "error_reasons")},
        **(job.summarize(writer) if job.summarize else {}),
        "rows_this_run": written,
        "retried_errors": retried,
        "fetch": tally.take(counter),
        "elapsed_s": round(elapsed, 3),
        "rows_per_s": round(written / elapsed, 3) if elapsed > 0 else None,
        "stages": stage_times(results) if written else {},
        "input": s.input,
        "input_layout": layout,
        "output": s.output,
        **job.identity,
    }
    write_bytes(join_uri(s.output, "summary.json"), json.dumps(summary, indent=2).encode())
    log.info("%s: %s", job.name,
             {k: v for k, v in summary.items() if k not in ("error_reasons", "stages")})  # fmt: skip
    return summary
