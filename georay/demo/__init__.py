"""``georay demo``: every stage in order on the built-in default (see :mod:`georay.demo.run`)."""

from georay.lazy import lazy_exports

_EXPORTS = {"DemoConfig": "georay.demo.config", "run_demo": "georay.demo.run"}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
