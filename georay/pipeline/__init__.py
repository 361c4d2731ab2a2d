"""The bulk-job skeleton shared by ``curate score``, ``predict`` and the baselines.

A bulk job maps every input image to exactly one output row, ``ok`` or ``error``, and can be
killed and rerun at any point. A job describes only its own map stages and tables in a
:class:`BulkJob`; :func:`run_bulk_job` does the rest (:mod:`~georay.pipeline.job`). A job that
is not a map over images (``curate dedup``) uses the pieces: :mod:`~georay.pipeline.record`
(the ``job.json`` guard, ``summary.json``) and :func:`stream_to_parts` (committed parts)::

    def stages(ds):                                   # pipeline rows -> result rows
        ds = pl.load_stage(ds, cfg, max_pixels=cfg.max_pixels)       # CPU tasks: fetch+decode
        return ds.map_batches(MyModelActor, **pl.actor_pool_options(cfg))   # model actors

    pl.run_bulk_job(pl.BulkJob(name="predict", settings=cfg, identity={"model": cfg.model},
        tables=("predictions",), outputs=lambda schema: {"predictions": SCHEMA}, stages=stages))

Row layout (``batch_format="numpy"`` dicts between stages):

``image_id``, ``uri``
    Id (unique, stable across reruns) and location of the image. A folder gives its relative
    path without extension as the id; WebDataset gives ``<tar>#<key>``.
``status``, ``error``
    ``"ok"`` / null until a stage fails the row: then ``"error"`` and a short reason
    (``missing file: ...``, ``read failed, transient: ...``, ``not an image ...``, ...). Later
    stages skip error rows and must keep them, so rows in = ok + error.
``pixels``, ``height``, ``width``
    Added by :func:`load_images` (raw RGB bytes; :func:`images_of` gives arrays back), with
    ``sha256``, ``phash``, ``exif_lat`` / ``exif_lon`` and ``skip`` on request.
other manifest columns
    Scalars (lat, lon, country, city, source, ...) pass through untouched.

Exports are lazy, so importing the settings for ``--help`` does not import Ray.
"""

from georay.lazy import lazy_exports

# fmt: off
_MODULES = {
    "georay.pipeline.settings": ["BulkSettings"],
    "georay.pipeline.job": ["BulkJob", "load_stage", "run_bulk_job"],
    "georay.pipeline.inputs": ["dataset_from_table", "detect_kind", "read_input", "scalar_columns"],
    "georay.pipeline.output": ["PartWriter", "conform", "status_counts", "stream_to_parts"],
    "georay.pipeline.stages": ["OK", "actor_pool_options", "actor_threads", "actors_per_node",
                               "clean_status", "images_of", "load_images", "ok_mask"],
}
# fmt: on
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
