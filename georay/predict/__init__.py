"""Stage 4a, predict: geotag archives in bulk with a trained model (Ray Data, resumable).

``predict(cfg)`` runs the bulk job; :class:`~georay.predict.predictor.Predictor` is the model +
answer parser + gazetteer placement that the bulk job's actors and the online API's replicas
each hold.
"""

from georay.lazy import lazy_exports

_EXPORTS = {
    "ModelSettings": "georay.predict.config",
    "PredictConfig": "georay.predict.config",
    "predict": "georay.predict.bulk",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
