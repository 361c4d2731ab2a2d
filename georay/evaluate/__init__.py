"""Evaluation: the paper's per-level P/R/F1 plus the field's km accuracy, GeoScore and per-H3-cell
tables, with a Markdown report and figures; where predictions carry confidences, calibration
(ECE, Brier), selective prediction and top-k figures (:mod:`georay.evaluate.confidence`). No Ray
here (see :mod:`georay.evaluate.score` for why one process with pyarrow/numpy is the right tool
for this job).
"""

from georay.lazy import lazy_exports

_EXPORTS = {
    "EvaluateConfig": "georay.evaluate.config",
    "evaluate": "georay.evaluate.evaluator",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
