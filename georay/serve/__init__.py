"""Stage 4b, serve: the online geolocation API on Ray Serve (FastAPI ingress, dynamic batching)."""

from georay.lazy import lazy_exports

_EXPORTS = {
    "ServeConfig": "georay.serve.config",
    "build_app": "georay.serve.app",
    "run": "georay.serve.app",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
