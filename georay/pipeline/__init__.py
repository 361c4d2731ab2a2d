"""The bulk-job skeleton shared by ``curate score``, ``predict`` and the baselines.

A bulk job maps every input image to exactly one output row, ``ok`` or ``error``, and can be
killed and rerun at any point. A job describes only what is its own, and
:func:`run_bulk_job` does the rest (input listing, the ``job.json`` guard, resume, committed
parts, progress, ``summary.json``)::

    from georay import pipeline as pl

    def stages(ds):                                   # pipeline rows -> result rows
        ds = pl.load_stage(ds, cfg, max_pixels=cfg.max_pixels)       # CPU tasks: fetch+decode
        return ds.map_batches(MyModelActor, **pl.actor_pool_options(cfg))   # model actors

    pl.run_bulk_job(pl.BulkJob(
        name="predict", settings=cfg, identity={"model": cfg.model},
        tables=("predictions",), outputs=lambda input_schema: {"predictions": SCHEMA},
        stages=stages))

Every job takes the same flags (:class:`BulkSettings`: ``--input``, ``--output``,
``--num-actors``, ``--cpus-per-actor``, ``--gpus-per-actor``, ``--decode-cpus``,
``--batch-size``, ``--max-image-pixels``, ``--fetch-concurrency``, ``--retry-errors``, ...).

Row layout (``batch_format="numpy"`` dicts between stages):

``image_id``, ``uri``
    Id (unique, stable across reruns) and location of the image. Manifests give both; a folder
    gives its relative path without extension as the id; WebDataset gives ``<tar>#<key>``.
``status``, ``error``
    ``"ok"`` / null until a stage fails the row: then ``"error"`` and a short reason
    (``missing file: ...``, ``read failed, transient: ...`` / ``read failed, permanent:
    ...`` (:mod:`georay.data.fetch`), ``empty file (0 bytes)``, ``not an image ...``, ``too many
    pixels ...``, ``truncated or corrupt image data ...``). Later stages skip error rows and
    must keep them, so rows in = ok + error.
``pixels``, ``height``, ``width``
    Added by :func:`load_images` (raw RGB bytes; :func:`images_of` gives arrays back), with
    ``sha256``, ``exif_lat`` / ``exif_lon`` and ``skip`` on request.
other manifest columns
    Scalars (lat, lon, country, city, source, ...) pass through untouched.

Modules: :mod:`~georay.pipeline.settings` (the shared flags), :mod:`~georay.pipeline.job` (the
skeleton), :mod:`~georay.pipeline.inputs` (manifests, folders, S3, WebDataset),
:mod:`~georay.pipeline.stages` (load images, actor pools), :mod:`~georay.pipeline.output`
(committed parts; why not Ray Data's ``CheckpointConfig``: see there). Exports are lazy, so
importing the settings for ``--help`` does not import Ray.
"""

from georay.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["BulkSettings", "PoolSettings"], "georay.pipeline.settings"),
    **dict.fromkeys(["BulkJob", "check_job", "load_stage", "run_bulk_job"], "georay.pipeline.job"),
    **dict.fromkeys(
        [
            "dataset_from_table",
            "detect_kind",
            "filter_done",
            "input_table",
            "listed_input",
            "read_input",
            "read_webdataset_rows",
            "scalar_columns",
        ],
        "georay.pipeline.inputs",
    ),  # fmt: skip
    **dict.fromkeys(
        ["PartWriter", "conform", "status_counts", "stream_to_parts"], "georay.pipeline.output"
    ),
    **dict.fromkeys(
        [
            "ERROR",
            "OK",
            "actor_pool_options",
            "actor_threads",
            "actors_per_node",
            "clean_status",
            "images_of",
            "load_images",
            "node_cpus",
            "ok_mask",
            "set_error",
        ],
        "georay.pipeline.stages",
    ),  # fmt: skip
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
