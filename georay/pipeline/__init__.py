"""Ray Data job plumbing shared by the bulk stages (``curate score``, ``curate fit``, ``predict``).

A bulk job maps every input image to exactly one output row, ``ok`` or ``error``, and can be
killed and rerun at any point. Its shape::

    from georay import pipeline as pl

    writer = pl.PartWriter(out, tables=("predictions",))      # first table = commit table
    ds = pl.read_input(src, done_ids=writer.done_ids())        # rows not committed yet
    ds = ds.map_batches(pl.fetch_bytes, fn_kwargs={"sha256": False})        # CPU tasks
    ds = ds.map_batches(pl.decode_images, fn_kwargs={"side": 224})          # CPU tasks
    ds = ds.map_batches(MyModelActor, batch_size=32, **pl.actor_pool_options(1))
    pl.stream_to_parts(ds, writer, split=lambda t: {"predictions": pl.conform(t, SCHEMA)})
    counts = pl.status_counts(writer.read(["status", "error"]))  # rows, ok, error, reasons

Row layout (``batch_format="numpy"`` dicts between stages):

``image_id``, ``uri``
    Id (unique, stable across reruns) and location of the image. Manifests give both; a folder
    gives its relative path without extension as the id; WebDataset gives ``<tar>#<key>``.
``status``, ``error``
    ``"ok"`` / null until a stage fails the row: then ``"error"`` and a short reason
    (``missing file: ...``, ``empty file (0 bytes)``, ``not an image ...``, ``too many
    pixels ...``, ``truncated or corrupt image data ...``). Later stages skip error rows and
    must keep them, so rows in = ok + error.
``bytes`` -> ``pixels``
    ``fetch_bytes`` adds the encoded bytes (WebDataset rows arrive with them), optionally
    ``sha256``; ``decode_images`` replaces them with ``(n, side, side, 3)`` uint8 (zeros on
    error rows), the open_clip Resize + CenterCrop geometry through JPEG draft mode.
other manifest columns
    Scalars (lat, lon, country, city, source, ...) pass through untouched.

Public API
----------
Inputs (:mod:`georay.pipeline.inputs`)
    ``detect_kind(uri)``, ``read_input(uri, kind="auto", done_ids=None, block_rows=256)``;
    lower level: ``input_table`` (driver-side listing of a manifest or folder),
    ``filter_done``, ``dataset_from_table``, ``read_webdataset_rows``, ``scalar_columns``.
Stages (:mod:`georay.pipeline.stages`)
    ``fetch_bytes``, ``decode_images``, ``decode_square`` (one image), ``ok_mask``,
    ``set_error``, ``clean_status`` (call it last in your own stages), ``actor_pool_options(num_actors, num_gpus=None, num_cpus=None)`` (a GPU per
    actor when the cluster has GPUs; on CPU, fractional CPUs that leave one CPU for reads).
Output (:mod:`georay.pipeline.output`)
    ``PartWriter`` (``done_ids()``, ``write_part()``, ``read()``, ``files()``, ``uri()``),
    ``stream_to_parts``, ``conform`` (one schema for all parts), ``status_counts``. Why part
    files and not Ray Data's ``CheckpointConfig``: see that module.
"""

from georay.pipeline.inputs import (
    IMAGE_SUFFIXES,
    dataset_from_table,
    detect_kind,
    filter_done,
    input_table,
    read_input,
    read_webdataset_rows,
    scalar_columns,
)
from georay.pipeline.output import PartWriter, conform, status_counts, stream_to_parts
from georay.pipeline.stages import (
    ERROR,
    OK,
    actor_pool_options,
    clean_status,
    decode_images,
    decode_square,
    fetch_bytes,
    ok_mask,
    set_error,
)

__all__ = [
    "ERROR",
    "IMAGE_SUFFIXES",
    "OK",
    "PartWriter",
    "actor_pool_options",
    "clean_status",
    "conform",
    "dataset_from_table",
    "decode_images",
    "decode_square",
    "detect_kind",
    "fetch_bytes",
    "filter_done",
    "input_table",
    "ok_mask",
    "read_input",
    "read_webdataset_rows",
    "scalar_columns",
    "set_error",
    "status_counts",
    "stream_to_parts",
]
