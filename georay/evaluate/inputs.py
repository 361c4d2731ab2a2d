"""Read predictions and ground truth: one file (Parquet, CSV, JSONL) or a folder of Parquet parts,
in georay's columns or a benchmark's published layout (:mod:`georay.data.layouts`).

The bulk predict job writes its predictions as committed ``part-*.parquet`` files in a folder (or
an ``s3://`` prefix); a manifest or a hand-made truth table is usually one file. Only the columns
evaluation needs are read (:func:`georay.data.tables.read_table`), so a predictions table with
long ``raw_text``/``reasons`` columns costs no memory for them.
"""

from __future__ import annotations

import pyarrow as pa

from georay.data.layouts import Detected, read_layout
from georay.data.manifest import MANIFEST_COLUMNS
from georay.errors import UserError
from georay.protocol.predictions import PREDICTIONS_SCHEMA

# Columns evaluation reads, with the type each is cast to (missing ones become nulls).
TRUTH_COLUMNS = {
    **{k: MANIFEST_COLUMNS[k] for k in ("image_id", "lat", "lon", "country", "city")},
    "split": pa.string(),
}
_EVALUATED = ("image_id", "lat", "lon", "country", "city", "country_code", "answered", "status")
PREDICTION_COLUMNS = {f.name: f.type for f in PREDICTIONS_SCHEMA if f.name in _EVALUATED}


def read_columns(
    uri: str, columns: dict[str, pa.DataType], *, mapping: str = "", flag: str = "--truth-columns"
) -> tuple[pa.Table, Detected]:
    """Read ``columns`` of a table in any known layout, cast to their types; absent columns
    become all-null.

    Parameters
    ----------
    uri : str
        A ``.parquet``/``.csv``/``.jsonl`` file or a folder/prefix of Parquet files, local or
        ``s3://``: a georay table or a benchmark table (:mod:`georay.data.layouts`).
    columns : dict
        Column name -> Arrow type, in georay's names.
    mapping, flag
        A ``ROLE=COLUMN,...`` mapping for a table in no known layout, and its flag's name.

    Returns
    -------
    (pyarrow.Table, Detected)
        The columns, and the layout the table was read with.

    Raises
    ------
    UserError
        A table in no known layout (the message names its columns and the known layouts), or
        a column that cannot be cast (the message names it).
    """
    table, detected = read_layout(uri, columns=mapping, keep=list(columns), flag=flag)
    out = []
    for name, dtype in columns.items():
        if name not in table.column_names:
            out.append(pa.nulls(len(table), dtype))
            continue
        col = table[name]
        try:
            out.append(col.cast(dtype) if col.type != dtype else col)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise UserError(f"{uri}: column {name!r} is not {dtype}: {err}") from None
    return pa.table(out, names=list(columns)).combine_chunks(), detected
