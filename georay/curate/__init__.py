"""Stage 1, curate: keep the views that carry enough visual clues to be located.

The teacher (ADE20K class areas x published weights, :mod:`georay.curate.teacher`) labels a
sample; the student (frozen open_clip encoder + ridge head, :mod:`georay.curate.head`) is fitted
on it by :func:`fit` and scores every image with :func:`score`, a streaming, resumable Ray Data
job built on :mod:`georay.pipeline`. :func:`dedup` then drops exact copies and near duplicates
(from the embeddings the scorer wrote) and :func:`balance` caps the curated set per H3 cell.
"""

from georay.lazy import lazy_exports

_EXPORTS = {
    "BalanceConfig": "georay.curate.config",
    "DedupConfig": "georay.curate.config",
    "FitConfig": "georay.curate.config",
    "ScoreConfig": "georay.curate.config",
    "balance": "georay.curate.balance",
    "dedup": "georay.curate.dedup",
    "fit": "georay.curate.fit",
    "score": "georay.curate.score",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
