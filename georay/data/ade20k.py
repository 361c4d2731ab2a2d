"""ADE20K-150 classes and the GeoReasoner locatability weights.

The weights ship inside the package (``ade20k_locatability_weights.csv``, as published by the
GeoReasoner authors). The locatability of an image is ``sum_k area_fraction[k] * weight[k]``;
views at or above :data:`LOCATABILITY_THRESHOLD` count as "highly locatable".
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

import numpy as np

NUM_CLASSES = 150
LOCATABILITY_THRESHOLD = 0.4


@cache
def _table() -> tuple[tuple[str, ...], np.ndarray]:
    text = resources.files(__package__).joinpath("ade20k_locatability_weights.csv").read_text()
    rows = sorted(csv.DictReader(text.splitlines()), key=lambda r: int(r["class_id"]))
    if [int(r["class_id"]) for r in rows] != list(range(NUM_CLASSES)):
        raise RuntimeError("ade20k_locatability_weights.csv must list class ids 0..149 once each")
    names = tuple(r["class_name"] for r in rows)
    weights = np.array([float(r["weight"]) for r in rows], dtype=np.float64)
    weights.setflags(write=False)
    return names, weights


def class_names() -> tuple[str, ...]:
    """The 150 ADE20K class names, index = class id (MaskFormer/ADE20K-150 order)."""
    return _table()[0]


def class_id(name: str) -> int:
    """Class id of an ADE20K class name or any of its synonyms.

    The CSV names classes with synonyms (``"road, route"``, ``"signboard, sign"``), so both
    ``class_id("road")`` and ``class_id("road, route")`` give 6.
    """
    for idx, full in enumerate(class_names()):
        if name == full or name in full.split(", "):
            return idx
    raise KeyError(f"unknown ADE20K class {name!r}")


def locatability_weights() -> np.ndarray:
    """Read-only float64 array of shape (150,): the per-class locatability weights."""
    return _table()[1]


def locatability(fractions: np.ndarray | dict[int, float]) -> np.ndarray | float:
    """Locatability from class-area fractions.

    Parameters
    ----------
    fractions
        Shape ``(150,)`` or ``(n, 150)`` array of area fractions per class, or a sparse
        ``{class_id: fraction}`` mapping.

    Returns
    -------
    float or ndarray
        ``fractions @ weights``: one score per image.
    """
    weights = locatability_weights()
    if isinstance(fractions, dict):
        return float(sum(float(f) * weights[int(k)] for k, f in fractions.items()))
    arr = np.asarray(fractions, dtype=np.float64)
    if arr.shape[-1] != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} class fractions, got shape {arr.shape}")
    out = arr @ weights
    return float(out) if out.ndim == 0 else out
