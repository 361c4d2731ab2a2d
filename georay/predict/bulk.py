"""Bulk geotagging: ``georay predict --input DIR|s3://prefix|MANIFEST --model ARTIFACT --output OUT``.

A bulk job on the shared skeleton (:func:`georay.predict.rows.run_predictions_job`)::

    rows not committed yet -> fetch + EXIF GPS + decode at the size the model sees (CPU tasks)
      -> generate + parse + place (the engine's stages, a GPU per actor when present)
      -> committed parts

Pixels are decoded in CPU tasks, so the model actors only generate while the next blocks are
read and decoded beside them. The engine (``--engine``, :mod:`georay.predict.engine`) supplies
the model stages. Every input row ends in exactly one committed row of ``OUT/predictions/``
(``ok`` or ``error`` with a reason); a rerun with the same ``--output`` skips committed rows, and
an output written by another model or input is refused. ``OUT/summary.json`` has the counts.
"""

from __future__ import annotations

from georay.predict.config import PredictConfig
from georay.predict.engine import ENGINES
from georay.predict.rows import run_predictions_job


def predict(cfg: PredictConfig) -> dict:
    """Run the bulk job; returns (and writes to ``OUT/summary.json``) the counts.

    Returns
    -------
    dict
        The skeleton's counts (``rows_in``, ``rows_out``, ``ok``, ``error``, ``error_reasons``,
        ``rows_this_run``, ``elapsed_s``, ``rows_per_s``) plus ``answered`` and ``skipped_exif``.
    """
    stages = ENGINES[cfg.engine].bulk_stages(cfg)
    identity = {"model": cfg.model, "question": cfg.question, "engine": cfg.engine}
    return run_predictions_job("predict", cfg, identity, stages)


__all__ = ["PredictConfig", "predict"]
