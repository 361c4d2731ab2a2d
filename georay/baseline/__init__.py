"""Baselines georay compares its model against, as bulk jobs writing the predictions contract:
CLIP zero-shot (StreetCLIP's method, :func:`zeroshot`) and nearest-neighbour retrieval over a
geotagged gallery (Im2GPS, PIGEON's refinement, :func:`knn`)."""

from georay.lazy import lazy_exports

_EXPORTS = {
    "KnnConfig": "georay.baseline.config",
    "ZeroShotConfig": "georay.baseline.config",
    "knn": "georay.baseline.knn",
    "zeroshot": "georay.baseline.zeroshot",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
