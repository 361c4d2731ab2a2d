"""Stable held-out subsets: which rows to hold out, decided by a hash of the row's id.

A hash, not a position or a random draw, so an id lands on the same side however the rows are
ordered, however many there are and on whichever worker reads them (curate fit's held-out
labels, training's validation examples).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def holdout_mask(ids: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """True for the ids held out: a stable hash of ``seed:id`` below ``fraction``."""
    h = [int(hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()[:8], 16) for i in ids]
    return np.asarray(h, dtype=np.float64) / 2**32 < fraction
