"""Read predictions and ground truth: one file (Parquet, CSV, JSONL) or a folder of Parquet parts.

The bulk predict job writes its predictions as committed ``part-*.parquet`` files in a folder (or
an ``s3://`` prefix); a manifest or a hand-made truth table is usually one file. Only the columns
evaluation needs are read (:func:`georay.data.tables.read_table`), so a predictions table with
long ``raw_text``/``reasons`` columns costs no memory for them.
"""

from __future__ import annotations

import pyarrow as pa

from georay.data.manifest import MANIFEST_COLUMNS
from georay.data.tables import read_table
from georay.errors import UserError
from georay.protocol.predictions import PREDICTIONS_SCHEMA

# Columns evaluation reads, with the type each is cast to (missing ones become nulls).
TRUTH_COLUMNS = {
    **{k: MANIFEST_COLUMNS[k] for k in ("image_id", "lat", "lon", "country", "city")},
    "split": pa.string(),
}
_EVALUATED = ("image_id", "lat", "lon", "country", "city", "country_code", "answered", "status")
PREDICTION_COLUMNS = {f.name: f.type for f in PREDICTIONS_SCHEMA if f.name in _EVALUATED}


def read_columns(uri: str, columns: dict[str, pa.DataType]) -> pa.Table:
    """Read ``columns`` of a table, cast to their types; absent columns become all-null.

    Parameters
    ----------
    uri : str
        A ``.parquet``/``.csv``/``.jsonl`` file or a folder/prefix of Parquet files, local or
        ``s3://``.
    columns : dict
        Column name -> Arrow type; ``image_id`` must be present in the data.

    Raises
    ------
    UserError
        No ``image_id`` column, or a column that cannot be cast (the message names it).
    """
    table = read_table(uri, list(columns), column_types={"image_id": pa.string()})
    if "image_id" not in table.column_names:
        raise UserError(f"{uri}: no 'image_id' column (has {table.column_names})")
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
    return pa.table(out, names=list(columns)).combine_chunks()
