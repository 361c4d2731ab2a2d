"""Joining Ray: the one place that decides which cluster a georay command runs on."""

from __future__ import annotations

import os


def init_ray(address: str | None = None, **kwargs) -> None:
    """Connect to Ray once per process.

    Joins ``address``, else the cluster in ``RAY_ADDRESS`` (``ray job submit`` sets it; ``auto``
    finds a ``ray start`` cluster on this machine), else starts a private local instance. A
    plain ``ray.init()`` would silently join any ``ray start`` cluster on the machine instead,
    which is not what a laptop user running ``georay demo`` expects.
    """
    import ray

    if ray.is_initialized():
        return
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", **kwargs)
