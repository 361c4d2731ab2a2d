"""The pieces of a job around its work: the ``job.json`` guard, progress, ``summary.json``.

:func:`georay.pipeline.run_bulk_job` puts them together for a map over input images; a job that
is not one (``curate dedup``, ``curate balance``) uses them directly::

    writer = open_job(PartWriter(out, tables=(...)), record)   # refuse other settings, open
    written = stream_to_parts(tables, writer, split, on_part=progress_logger(name, start))
    finish_job(name, out, summary, count_problem(rows_in, rows_out))   # fails if they differ

No Ray here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from georay.data.storage import join_uri, read_bytes, write_bytes
from georay.errors import JobFailed, UserError
from georay.pipeline.output import PartWriter

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
SUMMARY_FILE = "summary.json"


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


def open_job(writer: PartWriter, record: dict[str, Any]) -> PartWriter:
    """The job guard: :func:`check_job` against ``writer``'s output, then open it for writing.

    The first piece of every job that writes committed parts (the bulk jobs, ``curate dedup``):
    a rerun with other settings is refused before anything is deleted or written.
    """
    check_job(writer.output, record, has_parts=bool(writer.files()))
    return writer.open()


def count_problem(rows_in: int | None, rows_out: int) -> str | None:
    """Why a finished job's output is wrong, or None: every input row must be there exactly once
    (``rows_in`` None: the input was streamed, not counted)."""
    if rows_in is None or rows_in == rows_out:
        return None
    return (
        f"{rows_in} input rows but {rows_out} output rows (was the input changed since an "
        "earlier run into this output?)"
    )


def finish_job(name: str, output: str, summary: dict, problem: str | None = None) -> dict:
    """Write ``OUT/summary.json``; a ``problem`` is recorded there (``failed``) and fails the job.

    Raises
    ------
    JobFailed
        ``problem`` is given: the output is written, but incomplete or wrong.
    """
    if problem:
        summary = {"failed": problem, **summary}
    write_bytes(join_uri(output, SUMMARY_FILE), json.dumps(summary, indent=2).encode())
    log.info("%s: %s", name,
             {k: v for k, v in summary.items() if k not in ("error_reasons", "stages")})  # fmt: skip
    if problem:
        raise JobFailed(f"{problem}; see {join_uri(output, SUMMARY_FILE)}")
    return summary


def progress_logger(name: str, start: float) -> Callable[[int], None]:
    """``on_part`` of :func:`stream_to_parts`: log the rows committed so far and their rate."""

    def progress(total: int) -> None:
        elapsed = time.perf_counter() - start
        log.info("%s: committed %d rows (%.1f rows/s)", name, total, total / elapsed)

    return progress


def run_rates(written: int, elapsed: float) -> dict:
    """``rows_this_run``, ``elapsed_s``, ``rows_per_s`` of a job's summary."""
    return {
        "rows_this_run": written,
        "elapsed_s": round(elapsed, 3),
        "rows_per_s": round(written / elapsed, 3) if elapsed > 0 else None,
    }
