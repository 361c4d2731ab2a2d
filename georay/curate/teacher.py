"""The locatability teacher: ADE20K class-area fractions x the published per-class weights.

Fractions come from the manifest (column ``ade20k_fractions``: 150 floats per image, as the
synthetic world writes exact ones) or from a segmenter run inside the fit job
(:class:`georay.curate.embedder.Embedder` with ``segmenter=...``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from georay.data.ade20k import NUM_CLASSES, locatability

FRACTIONS = "ade20k_fractions"
TEACHER = "teacher_locatability"


def fractions_matrix(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 150)`` float64 fractions and a mask of rows that have a valid (150-long) list."""
    values = column.to_pylist()
    out = np.zeros((len(values), NUM_CLASSES))
    valid = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v is not None and len(v) == NUM_CLASSES:
            out[i], valid[i] = v, True
    return out, valid


def with_teacher(table: pa.Table) -> pa.Table:
    """Add ``teacher_locatability`` (float32, null where unknown) from ``ade20k_fractions``.

    A table without the fractions column gets an all-null teacher column; an existing
    ``teacher_locatability`` column is kept as it is.
    """
    if TEACHER in table.column_names:
        return table
    if FRACTIONS not in table.column_names:
        return table.append_column(TEACHER, pa.nulls(table.num_rows, pa.float32()))
    fractions, valid = fractions_matrix(table[FRACTIONS])
    scores = np.asarray(locatability(fractions), dtype=np.float32).reshape(-1)
    return table.append_column(TEACHER, pa.array(scores, pa.float32(), mask=~valid))
