"""Calibration of confidences: fit per-method, per-level maps on labelled predictions and store
them next to the model (``georay calibrate``). The maps themselves, their file and how they
are applied live in :mod:`georay.protocol.calibration`, which producers import; this stage only
reads tables, scores them against truth (as ``georay evaluate`` does) and fits. No Ray.
"""

from georay.lazy import lazy_exports

_EXPORTS = {
    "CalibrateConfig": "georay.calibrate.config",
    "calibrate": "georay.calibrate.fit",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
