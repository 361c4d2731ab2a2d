"""What both baselines' actors do with a batch once they have answers for its ``ok`` rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from georay.pipeline.output import PartWriter
from georay.pipeline.settings import BulkSettings
from georay.protocol.predictions import PREDICTIONS_SCHEMA, add_cells, error_row


def predictions_table(
    batch: dict[str, np.ndarray], answers: dict[int, dict], model: str, h3_resolution: int
) -> pa.Table:
    """Predictions rows of a batch: ``answers`` (row index -> :func:`answer_row` fields) for the
    rows answered, an error row with the batch's reason for every other one."""
    rows = []
    for i in range(len(batch["image_id"])):
        row = answers.get(i) or error_row(str(batch["error"][i]), model)
        row.update(image_id=str(batch["image_id"][i]), uri=str(batch["uri"][i]))
        rows.append(row)
    return pa.Table.from_pylist(add_cells(rows, h3_resolution), schema=PREDICTIONS_SCHEMA)


def summarize(writer: PartWriter) -> dict:
    """``answered``: committed rows that placed the image."""
    answered = writer.read(["answered"])["answered"].to_pylist()
    return {"answered": sum(bool(a) for a in answered)}


def run_predictions_job(
    name: str, cfg: BulkSettings, identity: dict, stages, extra: dict | None = None
) -> dict:
    """A baseline as a bulk job writing ``OUT/predictions/`` (the predictions schema) and
    ``OUT/summary.json`` (the skeleton's counts, ``answered`` and ``extra``)."""
    from georay import pipeline as pl

    return pl.run_bulk_job(
        pl.BulkJob(
            name=name,
            settings=cfg,
            identity=identity,
            tables=("predictions",),
            outputs=lambda _: {"predictions": PREDICTIONS_SCHEMA},
            stages=stages,
            summarize=lambda writer: {**summarize(writer), **(extra or {})},
        )
    )


def set_threads(threads: int, per_node: int) -> None:
    """torch and faiss CPU threads of one actor: ``threads``, else its node's CPUs (as Ray
    reports them) shared by the pool's actors on that node (:func:`pipeline.actor_threads`)."""
    import torch

    from georay.pipeline.stages import actor_threads

    n = actor_threads(threads, per_node)
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:  # zero-shot needs no faiss
        pass
