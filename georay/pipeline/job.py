"""The one bulk-job skeleton: list the input, guard the output, resume, stream committed parts.

``curate score``, ``predict`` and the baselines differ only in their map stages and output
tables; everything else is here, once::

    init_ray -> done ids -> read rows not done (inputs.read_input) -> job record guard
      (open_job) -> job.stages(ds) -> committed parts (output.stream_to_parts, progress
      logged) -> summary.json, failing the job if rows out != rows in (finish_job)

A job's ``identity`` (model, head, threshold, engine, ...), input and commit schema are
recorded in ``OUT/job.json``; a rerun into the same output must match it, so rows of two models
never mix in one output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from georay.data.fetch import is_read_failure
from georay.pipeline import inputs, tally
from georay.pipeline.output import PartWriter, conform, status_counts, stream_to_parts
from georay.pipeline.record import (
    count_problem,
    describe_schema,
    finish_job,
    open_job,
    progress_logger,
    run_rates,
)
from georay.pipeline.settings import BulkSettings, PoolSettings
from georay.pipeline.stages import load_images
from georay.runtime import init_ray

log = logging.getLogger(__name__)


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
    finish
        ``{table: rows}`` -> the same, after the skeleton conformed them to their schemas and
        before they are written (e.g. derived columns and file metadata: GeoParquet).
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
    finish: Callable[[dict[str, pa.Table]], dict[str, pa.Table]] | None = None
    summarize: Callable[[PartWriter], dict] | None = None
    prepare: Callable[[pa.Table], pa.Table] | None = None
    record: dict[str, Any] = field(default_factory=dict, init=False)


def load_stage(ds, settings: PoolSettings, **kwargs):
    """Add :func:`georay.pipeline.stages.load_images` (``kwargs``: its geometry and extras) as
    CPU tasks beside the model actors."""
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


def read_failure_ids(writer: PartWriter) -> pa.Array:
    """Ids of committed error rows whose reason is a read failure (what ``--retry-errors``
    reads again); decode and size errors are properties of the bytes and stay."""
    table = writer.read([writer.id_column, "status", "error"])
    if not table.num_rows:
        return pa.array([], pa.string())
    keep = [s == "error" and is_read_failure(e)
            for s, e in zip(table["status"].to_pylist(), table["error"].to_pylist(), strict=True)]  # fmt: skip
    return table.filter(pa.array(keep, pa.bool_()))[writer.id_column].combine_chunks()


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
    """Run ``job`` to completion (or resume it); returns and writes ``OUT/summary.json``: row
    counts over every committed row (earlier runs included), this run's rates and
    :func:`stage_times`, the input's layout, the job's identity and ``summarize`` fields.

    Raises
    ------
    JobFailed
        Rows out differ from rows in (:func:`count_problem`; ``summary.json`` says so).
    """
    s = job.settings
    init_ray(s.address)
    start = time.perf_counter()
    writer = PartWriter(s.output, tables=job.tables)  # reads only, until open_job()
    done = writer.done_ids()
    retry = read_failure_ids(writer) if s.retry_errors else pa.array([], pa.string())
    if len(retry):  # read again: not done, and their rows are dropped once the guard passed
        done = done.filter(pc.invert(pc.is_in(done, value_set=retry)))
    read = inputs.read_input(s.input, done_ids=done, block_rows=s.block_rows,
                             columns=s.input_columns, image_root=s.image_root,
                             prepare=job.prepare)  # fmt: skip
    schemas = job.outputs(read.schema)
    commit = job.tables[0]
    job.record = {
        "job": job.name,
        **job.identity,
        "input": s.input,
        "schema": describe_schema(schemas[commit]),
    }
    open_job(writer, job.record)
    retried = writer.drop_rows(retry) if len(retry) else 0
    counter = tally.start()
    log.info("%s: %s -> %s; %d rows already done", job.name, s.input, s.output,
             len(writer.done_ids()))  # fmt: skip

    def split(rows: pa.Table) -> dict[str, pa.Table]:
        parts = job.split(rows) if job.split else {commit: rows}
        parts = {name: conform(parts[name], schema) for name, schema in schemas.items()}
        return job.finish(parts) if job.finish else parts

    results = job.stages(read.ds)
    batches = _restore_input_types(results, read.schema)
    written = stream_to_parts(batches, writer, split, rows_per_part=s.rows_per_part,
                              on_part=progress_logger(job.name, start))  # fmt: skip
    elapsed = time.perf_counter() - start
    counts = status_counts(writer.read(["status", "error"]))
    summary = {
        "rows_in": counts["rows"] if read.rows is None else read.rows,
        "rows_out": counts["rows"],
        "skipped_files": read.layout.get("skipped_files", 0),  # not images: never rows (inputs.py)
        **{k: counts[k] for k in ("ok", "error", "error_reasons")},
        **(job.summarize(writer) if job.summarize else {}),
        "retried_errors": retried,
        "fetch": tally.take(counter),
        **run_rates(written, elapsed),
        "stages": stage_times(results) if written else {},
        "input": s.input,
        "input_layout": read.layout,
        "output": s.output,
        **job.identity,
    }
    return finish_job(job.name, s.output, summary, count_problem(read.rows, counts["rows"]))
