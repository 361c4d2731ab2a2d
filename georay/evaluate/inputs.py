"""Read predictions and ground truth: one file (Parquet, CSV, JSONL) or a folder of Parquet parts.

The bulk predict job writes its predictions as committed ``part-*.parquet`` files in a folder (or
an ``s3://`` prefix); a manifest or a hand-made truth table is usually one file. Only the columns
evaluation needs are read, so a predictions table with long ``raw_text``/``reasons`` columns
costs no memory for them.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.json as pajson

from georay.data.manifest import manifest_format
from georay.data.storage import filesystem_for, read_bytes

# Columns evaluation reads, with the type each is cast to (missing ones become nulls).
TRUTH_COLUMNS = {
    "image_id": pa.string(),
    "lat": pa.float64(),
    "lon": pa.float64(),
    "country": pa.string(),
    "city": pa.string(),
    "split": pa.string(),
}
PREDICTION_COLUMNS = {
    **{k: v for k, v in TRUTH_COLUMNS.items() if k != "split"},
    "country_code": pa.string(),
    "answered": pa.bool_(),
    "status": pa.string(),
}


def _read_any(uri: str, wanted: list[str]) -> pa.Table:
    fs, path = filesystem_for(uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        # A folder of parts; hidden and "_"-prefixed files (temp parts, _SUCCESS) are skipped.
        dataset = pads.dataset(path, filesystem=fs, format="parquet")
        return dataset.to_table(columns=[c for c in wanted if c in dataset.schema.names])
    fmt = manifest_format(uri)
    if fmt == "parquet":
        dataset = pads.dataset(path, filesystem=fs, format="parquet")
        return dataset.to_table(columns=[c for c in wanted if c in dataset.schema.names])
    data = read_bytes(uri)
    if fmt == "csv":
        opts = pacsv.ConvertOptions(
            strings_can_be_null=True, column_types={"image_id": pa.string()}
        )
        table = pacsv.read_csv(io.BytesIO(data), convert_options=opts)
    else:
        table = pajson.read_json(io.BytesIO(data))
    return table.select([c for c in wanted if c in table.column_names])


def read_table(uri: str, columns: dict[str, pa.DataType]) -> pa.Table:
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
    ValueError
        No ``image_id`` column, or a column that cannot be cast (the message names it).
    """
    table = _read_any(uri, list(columns))
    if "image_id" not in table.column_names:
        raise ValueError(f"{uri}: no 'image_id' column (has {table.column_names})")
    out = []
    for name, dtype in columns.items():
        if name not in table.column_names:
            out.append(pa.nulls(len(table), dtype))
            continue
        col = table[name]
        try:
            out.append(col.cast(dtype) if col.type != dtype else col)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise ValueError(f"{uri}: column {name!r} is not {dtype}: {err}") from None
    return pa.table(out, names=list(columns)).combine_chunks()
