"""One reader for "a table": a Parquet, CSV/TSV or JSON-lines file (optionally ``.gz``), or a
folder / ``s3://`` prefix of Parquet parts (what every georay job writes), local or on S3."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.json as pajson

from georay.data.storage import filesystem_for, read_bytes
from georay.errors import UserError


def table_format(uri: str) -> str:
    """``"parquet"``, ``"csv"`` or ``"jsonl"`` from a file's suffix (``.gz`` allowed); any
    other suffix raises :class:`UserError`."""
    name = str(uri).lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise UserError(f"unknown table format for {uri!r}: use .parquet, .csv, .tsv or .jsonl")


def is_folder(uri: str) -> bool:
    """True for a local folder or an S3 prefix with objects under it."""
    fs, path = filesystem_for(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def read_table(
    uri: str,
    columns: Sequence[str] | None = None,
    *,
    column_types: Mapping[str, pa.DataType] | None = None,
    strings_can_be_null: bool = True,
) -> pa.Table:
    """Read a table file or a folder of Parquet parts (hidden and ``_``-prefixed files, such
    as temp parts, skipped); of ``columns``, those present.

    ``column_types`` fixes CSV columns that must not be inferred (ids that look like numbers);
    ``strings_can_be_null=False`` keeps CSV ``NA`` as text (Namibia's code in benchmark tables).

    Raises
    ------
    UserError
        Unknown format or a file that does not parse (the message names the file).
    FileNotFoundError
        No such file or folder.
    """
    fs, path = filesystem_for(uri)
    try:
        if is_folder(uri) or table_format(uri) == "parquet":
            dataset = pads.dataset(path, filesystem=fs, format="parquet")
            wanted = None if columns is None else [c for c in columns if c in dataset.schema.names]
            return dataset.to_table(columns=wanted)
        data = read_bytes(uri)
        if str(uri).lower().endswith(".gz"):
            data = gzip.decompress(data)
        if table_format(uri) == "csv":
            table = pacsv.read_csv(
                io.BytesIO(data),
                parse_options=pacsv.ParseOptions(delimiter="\t" if ".tsv" in uri.lower() else ","),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict(column_types or {}),
                    strings_can_be_null=strings_can_be_null,
                ),
            )
        else:
            table = pajson.read_json(io.BytesIO(data))
    except (pa.ArrowInvalid, pa.ArrowTypeError, gzip.BadGzipFile, EOFError) as err:
        raise UserError(f"cannot parse {uri}: {err}") from None
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    return table


def table_columns(uri: str) -> list[str]:
    """Column names of a table without reading its rows: the Parquet schema, a CSV/TSV header
    line, or the keys of a JSON-lines file's first record (the first 1 MiB is read)."""
    fs, path = filesystem_for(uri)
    if is_folder(uri) or table_format(uri) == "parquet":
        return pads.dataset(path, filesystem=fs, format="parquet").schema.names
    with fs.open_input_stream(path) as stream:
        head = stream.read(1 << 20)
    if str(uri).lower().endswith(".gz"):
        head = zlib.decompressobj(wbits=31).decompress(head)
    first = head.decode("utf-8-sig", errors="replace").splitlines()[:1] or [""]
    if table_format(uri) == "csv":
        delimiter = "\t" if ".tsv" in str(uri).lower() else ","
        return next(csv.reader(first, delimiter=delimiter), [])
    try:
        return list(json.loads(first[0]))
    except (ValueError, TypeError) as err:
        raise UserError(f"cannot parse {uri}: first line is not a JSON object: {err}") from None
