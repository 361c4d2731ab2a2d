"""Manifests: one row per image (DESIGN "manifest" contract), as Parquet, CSV or JSONL.

Columns: ``image_id`` (string, unique), ``uri`` (local path or ``s3://``), and optional ``lat``,
``lon`` (float64 WGS84 degrees), ``country`` (ISO 3166-1 alpha-2), ``city``, ``source``. Extra
columns (``split``, ``ade20k_fractions``, ...) are kept. The format follows the suffix
(``.parquet``/``.pq``, ``.csv``, ``.jsonl``/``.json``/``.ndjson``, each optionally ``.gz``).

A relative ``uri`` is resolved against the manifest's own folder on read, so a manifest written
next to its images (the synthetic world does this) can be moved or copied to S3 as a whole.
"""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from georay.data.storage import parent_of, resolve_relative, write_bytes
from georay.data.tables import is_folder, read_table, table_format
from georay.errors import UserError

REQUIRED_COLUMNS = ("image_id", "uri")
MANIFEST_COLUMNS: dict[str, pa.DataType] = {
    "image_id": pa.string(),
    "uri": pa.string(),
    "lat": pa.float64(),
    "lon": pa.float64(),
    "country": pa.string(),
    "city": pa.string(),
    "source": pa.string(),
}
_SHOW = 5  # offending rows named in an error message


class ManifestError(UserError):
    """A manifest that breaks the contract; the message names the column and offending rows."""


def _offenders(table: pa.Table, mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = rows[:_SHOW]
    ids = table.column("image_id").take(pa.array(shown)).to_pylist() if len(shown) else []
    more = f", ... ({len(rows)} in all)" if len(rows) > _SHOW else ""
    return ", ".join(f"row {r} (image_id={i!r})" for r, i in zip(shown, ids, strict=True)) + more


def _cast(table: pa.Table, name: str, dtype: pa.DataType) -> pa.Table:
    col = table.column(name)
    if col.type == dtype:
        return table
    try:
        if pa.types.is_null(col.type):
            cast = pa.nulls(len(col), dtype)
        elif dtype == pa.string() and not pa.types.is_string(col.type):
            cast = pc.cast(col, pa.string())
        else:
            cast = pc.cast(col, dtype)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ManifestError(
            f"column {name!r}: cannot convert {col.type} to {dtype}: {err}"
        ) from None
    return table.set_column(table.schema.get_field_index(name), name, cast)


def validate_manifest(table: pa.Table) -> pa.Table:
    """Check a manifest table against the contract and return it normalised (same rows, same
    order): missing optional columns added as nulls, types cast, ``country`` upper-cased.

    Raises
    ------
    ManifestError
        Missing ``image_id``/``uri`` columns, null or duplicate ``image_id``, null ``uri``,
        ``lat`` outside [-90, 90], ``lon`` outside [-180, 180], ``country`` not two letters.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ManifestError(
            f"manifest is missing required column(s) {missing}; has {table.column_names}"
        )
    for name, dtype in MANIFEST_COLUMNS.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), dtype))
        else:
            table = _cast(table, name, dtype)
    table = table.combine_chunks()

    problems = []
    for name in REQUIRED_COLUMNS:
        nulls = pc.is_null(table.column(name)).to_numpy(zero_copy_only=False)
        if nulls.any():
            problems.append(
                f"column {name!r}: {int(nulls.sum())} null value(s) at rows "
                f"{np.flatnonzero(nulls)[:_SHOW].tolist()}"
            )
    ids = table.column("image_id").to_numpy(zero_copy_only=False)
    _, first, counts = np.unique(ids.astype(str), return_index=True, return_counts=True)
    if (counts > 1).any():
        dup_first = np.zeros(len(ids), dtype=bool)
        dup_first[first[counts > 1]] = True
        problems.append(
            f"column 'image_id': {int((counts > 1).sum())} duplicated id(s): "
            + _offenders(table, dup_first)
        )
    for name, bound in (("lat", 90.0), ("lon", 180.0)):
        values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~np.isnan(values) & ((values < -bound) | (values > bound))
        bad |= np.isinf(values)
        if bad.any():
            problems.append(
                f"column {name!r}: {int(bad.sum())} value(s) outside [-{bound:g}, {bound:g}]: "
                + _offenders(table, bad)
            )
    country = pc.utf8_upper(pc.utf8_trim_whitespace(table.column("country")))
    valid = pc.match_substring_regex(country, r"^[A-Z]{2}$")
    bad = pc.is_valid(country).to_numpy(zero_copy_only=False) & ~pc.fill_null(
        valid, False
    ).to_numpy(zero_copy_only=False)
    if bad.any():
        problems.append(
            f"column 'country': {int(bad.sum())} value(s) not an ISO 3166-1 alpha-2 code: "
            + _offenders(table, bad)
        )
    if problems:
        raise ManifestError("invalid manifest: " + "; ".join(problems))
    return table.set_column(table.schema.get_field_index("country"), "country", country)


def _resolve_uris(table: pa.Table, manifest_uri: str) -> pa.Table:
    base = parent_of(manifest_uri)
    uris = [
        u if u is None or u.startswith("file://") else resolve_relative(u, base)
        for u in table.column("uri").to_pylist()
    ]
    return table.set_column(table.schema.get_field_index("uri"), "uri", pa.array(uris, pa.string()))


def read_manifest(uri: str, *, resolve_uris: bool = True) -> pa.Table:
    """Read and validate a manifest file or folder of Parquet parts (local or ``s3://``);
    ``resolve_uris``: relative ``uri`` values made absolute against the manifest's folder.

    Raises
    ------
    ManifestError
        Unknown format, unparsable file, or a table that breaks the contract.
    FileNotFoundError
        No such manifest.
    """
    if not is_folder(uri):
        try:
            table_format(uri)
        except UserError:
            raise ManifestError(
                f"unknown manifest format for {uri!r}: use .parquet, .csv or .jsonl, or a "
                "folder of Parquet parts"
            ) from None
    try:
        table = read_table(uri, column_types=MANIFEST_COLUMNS)
    except UserError as err:  # a file that does not parse, as a manifest error
        raise ManifestError(str(err)) from None
    table = validate_manifest(table)
    return _resolve_uris(table, uri) if resolve_uris else table


def write_manifest(table: pa.Table, uri: str) -> None:
    """Validate and write a manifest; the format follows the suffix (Parquet is deterministic:
    fixed compression, no timestamps, so equal tables give equal bytes).

    Raises
    ------
    ManifestError
        Invalid table, or list columns with a CSV target.
    """
    table = validate_manifest(table)
    fmt = table_format(uri)
    buf = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, buf, compression="zstd", row_group_size=64 * 1024)
    elif fmt == "csv":
        nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
        if nested:
            raise ManifestError(f"CSV cannot hold list/struct column(s) {nested}; use Parquet")
        pacsv.write_csv(table, buf)
    else:
        for row in table.to_pylist():
            buf.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode())
    data = buf.getvalue()
    if str(uri).lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    write_bytes(uri, data)
