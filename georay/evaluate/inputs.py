"""Read predictions and ground truth: one file (Parquet, CSV, JSONL) or a folder of Parquet parts,
in georay's columns or a benchmark's published layout (:mod:`georay.data.layouts`).

The bulk predict job writes its predictions as committed ``part-*.parquet`` files in a folder (or
an ``s3://`` prefix); a manifest or a hand-made truth table is usually one file. Only the columns
evaluation needs are read (:func:`georay.data.tables.read_table`), so a predictions table with
long ``raw_text``/``reasons`` columns costs no memory for them.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from georay.data.layouts import Detected, read_layout
from georay.data.manifest import MANIFEST_COLUMNS
from georay.errors import UserError
from georay.protocol.predictions import PREDICTIONS_SCHEMA

# Columns evaluation reads, with the type each is cast to (missing ones become nulls).
TRUTH_COLUMNS = {
    **{k: MANIFEST_COLUMNS[k] for k in ("image_id", "lat", "lon", "country", "city")},
    "split": pa.string(),
}
_EVALUATED = ("image_id", "lat", "lon", "country", "city", "country_code", "answered", "status",
              "country_confidence", "city_confidence", "candidates", "abstained")  # fmt: skip
PREDICTION_COLUMNS = {f.name: f.type for f in PREDICTIONS_SCHEMA if f.name in _EVALUATED}


def read_columns(
    uri: str, columns: dict[str, pa.DataType], *, mapping: str = "", flag: str = "--truth-columns"
) -> tuple[pa.Table, Detected]:
    """Read ``columns`` (georay name -> Arrow type) of a table in any known layout
    (:func:`georay.data.layouts.read_layout`), cast to their types; absent columns become
    all-null. Returns the columns and the layout the table was read with.

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


def read_truth(uri: str, *, mapping: str = "", split: str = "") -> tuple[pa.Table, int, dict]:
    """Truth rows (:data:`TRUTH_COLUMNS`) of ``split`` ('' = all), the row count before the
    split, and the layout record (``--truth``, ``--truth-columns`` and ``--split`` of a stage).

    Raises
    ------
    UserError
        As :func:`read_columns`, or a split asked of a table with no ``split`` column.
    """
    truth, layout = read_columns(uri, TRUTH_COLUMNS, mapping=mapping)
    rows = len(truth)
    if split:
        if truth["split"].null_count == len(truth):
            raise UserError(f"--split {split!r} given but {uri} has no 'split' column")
        truth = truth.filter(pc.fill_null(pc.equal(truth["split"], split), False))
    return truth, rows, layout.record()
