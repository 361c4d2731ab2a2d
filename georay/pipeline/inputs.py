"""Input readers: a manifest, a folder or S3 prefix of images, or WebDataset tar shards.

Every reader yields the same row layout (see :mod:`georay.pipeline`): ``image_id``, ``uri``,
``status`` (``"ok"``), ``error`` (null) and, for WebDataset, the undecoded ``bytes``. Manifests
and folders are listed on the driver (a few hundred bytes per image) so rows already written by
an earlier run can be skipped before any work is scheduled; tar shards are streamed by
``ray.data.read_webdataset`` and finished rows are dropped right after the read.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray

from georay.data.images import IMAGE_SUFFIXES, list_images
from georay.data.layouts import read_images_table
from georay.data.storage import filesystem_for, is_s3, list_files
from georay.data.tables import table_format
from georay.errors import UserError

log = logging.getLogger(__name__)

InputKind = Literal["manifest", "images", "webdataset"]

TAR_SUFFIXES = (".tar",)
# Extensions of image members inside a WebDataset sample, most common first.
WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "heic", "heif", "avif")


def detect_kind(uri: str) -> InputKind:
    """Guess the input kind: a manifest by suffix or a folder of Parquet parts (another job's
    output), a ``.tar`` or a folder of tars, else a folder of images."""
    lower = str(uri).lower().rstrip("/")
    try:
        table_format(lower)
        return "manifest"
    except UserError:
        pass
    if lower.endswith(TAR_SUFFIXES):
        return "webdataset"
    files = list_files(uri, IMAGE_SUFFIXES + TAR_SUFFIXES + (".parquet",))
    for kind, suffixes in (("webdataset", TAR_SUFFIXES), ("manifest", (".parquet",))):
        if files and all(f.lower().endswith(suffixes) for f in files):
            return kind
    return "images"


def _with_status(table: pa.Table) -> pa.Table:
    n = table.num_rows
    table = table.append_column("status", pa.array(["ok"] * n, pa.string()))
    return table.append_column("error", pa.nulls(n, pa.string()))


def image_table(uri: str) -> tuple[pa.Table, dict]:
    """List a folder or S3 prefix of images as rows (``image_id``, ``uri``), and its layout
    record: ``{"layout": "images"}``, plus ``skipped_files`` and ``skipped_reasons`` (reason ->
    count) when files that are not images were left out (AppleDouble ``._*`` files,
    ``.DS_Store``, ``Thumbs.db``, other extensions: :func:`georay.data.images.skip_reason`).

    ``image_id`` is the path relative to ``uri`` without its extension (``a/b.jpg`` ->
    ``a/b``), stable across reruns and equal to the id the synthetic world's manifest uses.
    Two files differing only by extension would share an id, so that raises ``ValueError``.
    """
    files, skipped = list_images(uri)
    layout: dict = {"layout": "images"}
    if skipped:
        layout.update(skipped_files=skipped.total(), skipped_reasons=dict(sorted(skipped.items())))
        log.info("%s: skipped %d non-image files: %s", uri, skipped.total(), dict(skipped))
    _, root = filesystem_for(uri)
    root = root.rstrip("/") + "/"
    ids = []
    for f in files:
        _, path = filesystem_for(f)
        ids.append(posixpath.splitext(path[len(root) :] if path.startswith(root) else path)[0])
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].tolist()[:5]
        raise ValueError(f"image ids collide (same name, different extension): {dup}")
    table = pa.table({"image_id": pa.array(ids, pa.string()), "uri": pa.array(files, pa.string())})
    return table, layout


def listed_input(
    uri: str,
    kind: InputKind | Literal["auto"] = "auto",
    *,
    columns: str = "",
    image_root: str = "",
) -> tuple[pa.Table, dict]:
    """The input rows of a table (a georay manifest or a benchmark table in a known layout,
    :mod:`georay.data.layouts`, read with ``--input-columns`` and ``--image-root``) or of a folder
    of images, listed on the driver, and the layout record saying how it was read."""
    kind = detect_kind(uri) if kind == "auto" else kind
    if kind == "manifest":
        table, detected = read_images_table(uri, columns=columns, image_root=image_root or None)
        return table, detected.record()
    if kind == "images":
        return image_table(uri)
    raise ValueError(f"listed_input() lists tables and image folders, not {kind!r}")


def scalar_columns(schema: pa.Schema) -> list[str]:
    """Columns a pipeline carries through: scalars only (lists, structs and binary stay behind)."""
    keep = []
    for f in schema:
        t = f.type
        if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            continue
        keep.append(f.name)
    return keep


def filter_done(table: pa.Table, done_ids: pa.Array | None) -> pa.Table:
    """Drop rows whose ``image_id`` is in ``done_ids`` (the ids an earlier run committed)."""
    if done_ids is None or len(done_ids) == 0:
        return table
    return table.filter(pc.invert(pc.is_in(table["image_id"], value_set=done_ids)))


def dataset_from_table(table: pa.Table, *, block_rows: int = 256) -> ray.data.Dataset:
    """A Ray Dataset of pipeline rows (the table's :func:`scalar_columns`, plus ``status`` and
    ``error``) from a driver-side table, in blocks of ``block_rows``."""
    table = _with_status(table.select(scalar_columns(table.schema)))
    slices = [table.slice(i, block_rows) for i in range(0, table.num_rows, block_rows)]
    return ray.data.from_arrow(slices or [table])


def _wds_rows(batch: pd.DataFrame, scheme: str, skip: np.ndarray) -> pd.DataFrame:
    """WebDataset samples -> pipeline rows; the first image member is the image."""
    urls = batch["__url__"].astype(str)
    ids = (scheme + urls + "#" + batch["__key__"].astype(str)).tolist()
    data, errors = [], []
    for i in range(len(batch)):
        members = (batch[k].iat[i] for k in WDS_IMAGE_KEYS if k in batch)
        value = next((v for v in members if isinstance(v, bytes | bytearray)), None)
        data.append(bytes(value) if value is not None else None)
        errors.append(None if value is not None else "no image member in WebDataset sample")
    out = pd.DataFrame(
        {
            "image_id": ids,
            "uri": ids,
            "bytes": data,
            "status": ["ok" if e is None else "error" for e in errors],
            "error": errors,
        }
    )
    if len(skip):
        out = out[~out["image_id"].isin(skip)]
    return out


def read_webdataset_rows(
    uris: str | Iterable[str], *, done_ids: pa.Array | None = None
) -> ray.data.Dataset:
    """Stream WebDataset tar shards (img2dataset / LAION / DataComp layout) as pipeline rows.

    ``image_id`` = ``uri`` = ``<tar url>#<sample key>``; ``bytes`` holds the undecoded image
    member (``jpg``, ``jpeg``, ``png`` or ``webp``); a sample without one becomes an error row.
    """
    uris = [uris] if isinstance(uris, str) else list(uris)
    scheme = "s3://" if is_s3(uris[0]) else ""
    fs, _ = filesystem_for(uris[0])
    paths = [filesystem_for(u)[1] for u in uris]
    skip = np.asarray(done_ids.to_pylist() if done_ids is not None else [], dtype=object)
    ds = ray.data.read_webdataset(paths, filesystem=fs, decoder=None, file_extensions=["tar"])
    return ds.map_batches(
        _wds_rows, batch_format="pandas", fn_kwargs={"scheme": scheme, "skip": skip}
    )


@dataclass
class Input:
    """What :func:`read_input` read: the rows not done, and what a job records about the input."""

    ds: ray.data.Dataset  # pipeline rows not done yet
    schema: pa.Schema  # of the listed input (WebDataset: image_id, uri)
    rows: int | None  # input rows; None for WebDataset (streamed, not listed)
    layout: dict  # how the input was read (``job.json`` / ``summary.json``)


def read_input(
    uri: str,
    *,
    done_ids: pa.Array | None = None,
    block_rows: int = 256,
    columns: str = "",
    image_root: str = "",
    prepare: Callable[[pa.Table], pa.Table] | None = None,
) -> Input:
    """Any input :func:`detect_kind` knows as a Ray Dataset of pipeline rows, minus the
    ``done_ids``; ``prepare`` changes a listed input table on the driver before it is read."""
    kind = detect_kind(uri)
    if kind == "webdataset":
        schema = pa.schema([("image_id", pa.string()), ("uri", pa.string())])
        ds = read_webdataset_rows(uri, done_ids=done_ids)
        return Input(ds, schema, None, {"layout": "webdataset"})
    table, layout = listed_input(uri, kind, columns=columns, image_root=image_root)
    if prepare:
        table = prepare(table)
    ds = dataset_from_table(filter_done(table, done_ids), block_rows=block_rows)
    return Input(ds, table.schema, table.num_rows, layout)
