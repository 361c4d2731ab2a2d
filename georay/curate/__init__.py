"""Stage 1, curate: keep the views that carry enough visual clues to be located.

The teacher (ADE20K class areas x published weights, :mod:`georay.curate.teacher`) labels a
sample; the student (frozen open_clip encoder + ridge head, :mod:`georay.curate.head`) is fitted
on it by :func:`fit` and scores every image with :func:`score`, a streaming, resumable Ray Data
job built on :mod:`georay.pipeline`.
"""

from georay.curate.config import FitConfig, PoolSettings, ScoreConfig
from georay.curate.fit import fit
from georay.curate.score import score

__all__ = ["FitConfig", "PoolSettings", "ScoreConfig", "fit", "score"]
