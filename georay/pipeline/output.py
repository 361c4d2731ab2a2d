"""Resumable, exactly-once output: Parquet part files committed atomically, written by the driver.

Why not Ray Data's ``CheckpointConfig`` (beta in 2.60)? It adds checkpoint-filter actors with a
1 GiB memory reservation each, which a 2-CPU node cannot spare next to a model pool, and it only
covers one ``write_*`` sink, while a stage writes several aligned outputs (scores, curated rows,
embeddings). Instead, rows stream back to the driver (they are small: pixels and bytes are
dropped in the workers) and every ``rows_per_part`` rows become one part in each output table:

* the parts of the non-commit tables are written first, the **commit table**'s part last. A
  local part is written to a hidden temp file and renamed; an S3 object appears atomically when
  its upload completes. A committed part is therefore complete, and marks its rows as done;
* on a rerun, :meth:`PartWriter.done_ids` reads the ``image_id`` column of the committed parts,
  the readers skip those rows, and parts of the other tables without a committed twin (the
  driver died in between) are deleted, so every input row ends up in exactly one committed part.

Part names are ``part-<run>-<seq>.parquet`` with a fresh run id per run, so runs never overwrite
each other's parts. Memory on the driver is one part of rows plus the set of done ids.
"""

from __future__ import annotations

import os
import posixpath
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from georay.data.storage import filesystem_for, join_uri

PART_PREFIX = "part-"


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast ``table`` to ``schema``: columns in order, missing ones null, extra ones dropped.

    Part files must share one schema to be read back as one dataset, but a block where every
    value of a column is null comes back from the workers typed ``null``.
    """
    cols = []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table[field.name].cast(field.type))
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)


class PartWriter:
    """Committed-part output of one job under ``output/<table>/``.

    Constructing one only reads (``done_ids``, ``read``, ``files``); :meth:`open` creates the
    folders and removes what an interrupted run left uncommitted, before the first write.

    Parameters
    ----------
    output
        Local folder or ``s3://`` prefix.
    tables
        Output tables; the first is the commit table (its parts define what is done).
    id_column
        Row id, unique per input row.
    """

    def __init__(self, output: str, tables: Sequence[str] = ("scores",), id_column="image_id"):
        self.output, self.tables, self.id_column = str(output), tuple(tables), id_column
        self.fs, self.root = filesystem_for(self.output)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.run = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.seq = 0

    def open(self) -> PartWriter:
        """Create the table folders and delete uncommitted parts; returns ``self``."""
        for t in self.tables:
            self.fs.create_dir(posixpath.join(self.root, t), recursive=True)
        self._drop_uncommitted()
        return self

    def _names(self, table: str) -> list[str]:
        sel = pafs.FileSelector(posixpath.join(self.root, table), allow_not_found=True)
        return sorted(
            posixpath.basename(i.path)
            for i in self.fs.get_file_info(sel)
            if i.type == pafs.FileType.File
        )

    def files(self, table: str | None = None) -> list[str]:
        """Committed part paths (in-filesystem) of ``table`` (default: the commit table)."""
        table = table or self.tables[0]
        committed = {n for n in self._names(self.tables[0]) if n.startswith(PART_PREFIX)}
        return [posixpath.join(self.root, table, n) for n in self._names(table) if n in committed]

    def _drop_uncommitted(self) -> None:
        committed = set(self._names(self.tables[0]))
        for t in self.tables:
            for name in self._names(t):
                if name.startswith(".") or (t != self.tables[0] and name not in committed):
                    self.fs.delete_file(posixpath.join(self.root, t, name))

    def read(self, columns: Sequence[str] | None = None, table: str | None = None) -> pa.Table:
        """All committed rows of ``table`` (default: the commit table)."""
        parts = [pq.read_table(p, columns=columns, filesystem=self.fs) for p in self.files(table)]
        if parts:
            return pa.concat_tables(parts, promote_options="permissive")
        return pa.table({c: pa.array([], pa.string()) for c in (columns or [self.id_column])})

    def done_ids(self) -> pa.Array:
        """``id_column`` values of every committed row."""
        return self.read([self.id_column])[self.id_column].combine_chunks()

    def _write(self, table: pa.Table, path: str) -> None:
        if not self.local:  # an S3 object becomes visible only once complete
            pq.write_table(table, path, filesystem=self.fs)
            return
        tmp = posixpath.join(posixpath.dirname(path), "." + posixpath.basename(path) + ".tmp")
        pq.write_table(table, tmp, filesystem=self.fs)
        os.replace(tmp, path)

    def write_part(self, parts: Mapping[str, pa.Table]) -> str:
        """Write one part of every table (commit table last); returns the part name."""
        name = f"{PART_PREFIX}{self.run}-{self.seq:06d}.parquet"
        self.seq += 1
        for t in (*self.tables[1:], self.tables[0]):
            self._write(parts[t], posixpath.join(self.root, t, name))
        return name

    def drop_rows(self, ids: pa.Array) -> int:
        """Rewrite the committed parts that hold any of ``ids`` without those rows.

        What ``--retry-errors`` does before reading those rows again. Each part file is
        replaced whole (a local rename, an S3 object overwritten on upload), the other tables'
        first and the commit table's last, so at any moment a row is in its committed part or
        in none (and then not done: the next run reads it again), never twice.

        Returns
        -------
        int
            Rows dropped from the commit table.
        """
        dropped = 0
        for path in self.files():
            found = pq.read_table(path, columns=[self.id_column], filesystem=self.fs)
            hits = pc.sum(pc.is_in(found[self.id_column], value_set=ids)).as_py() or 0
            if not hits:
                continue
            name = posixpath.basename(path)
            for t in (*self.tables[1:], self.tables[0]):
                part = posixpath.join(self.root, t, name)
                if self.fs.get_file_info(part).type != pafs.FileType.File:
                    continue
                table = pq.read_table(part, filesystem=self.fs)
                if self.id_column in table.column_names:
                    keep = pc.invert(pc.is_in(table[self.id_column], value_set=ids))
                    self._write(table.filter(keep), part)
            dropped += hits
        return dropped

    def uri(self, table: str) -> str:
        """URI of a table's folder (for readers outside this class)."""
        return join_uri(self.output, table)


def stream_to_parts(
    batches,
    writer: PartWriter,
    split: Callable[[pa.Table], Mapping[str, pa.Table]],
    *,
    rows_per_part: int = 1024,
    on_part: Callable[[int], None] | None = None,
) -> int:
    """Consume result batches (pyarrow tables) and commit them in parts of ~``rows_per_part``.

    Parameters
    ----------
    batches
        A ``ray.data.Dataset`` (its blocks are pulled to the driver as they finish) or any
        iterable of ``pyarrow.Table``.
    split
        Turns a part's rows into one table per output table of ``writer``.
    on_part
        Called with the running row count after each commit (progress, tests).

    Returns
    -------
    int
        Rows committed by this call.
    """
    if hasattr(batches, "iter_batches"):  # a ray.data.Dataset: whole blocks, as Arrow
        batches = batches.iter_batches(batch_format="pyarrow", batch_size=None)
    pending: list[pa.Table] = []
    held = total = 0

    def flush() -> None:
        nonlocal pending, held, total
        rows = pa.concat_tables(pending, promote_options="permissive")
        writer.write_part(split(rows))
        total += rows.num_rows
        pending, held = [], 0
        if on_part:
            on_part(total)

    for batch in batches:
        if batch.num_rows:
            pending.append(batch)
            held += batch.num_rows
        if held >= rows_per_part:
            flush()
    if held:
        flush()
    return total


def status_counts(table: pa.Table) -> dict:
    """``rows``, ``ok``, ``error`` and the most common error reasons of committed rows."""
    status = table["status"].to_pylist()
    errors: dict[str, int] = {}
    for s, e in zip(status, table["error"].to_pylist(), strict=True):
        if s != "ok":
            key = (e or "unknown").split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    ok = sum(s == "ok" for s in status)
    return {"rows": len(status), "ok": ok, "error": len(status) - ok, "error_reasons": errors}
