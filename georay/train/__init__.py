"""Stage 3: two-stage GeoReasoner fine-tuning on Ray Train (reasoning, then location)."""

from georay.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "georay.train.config",
    "train": "georay.train.run",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
