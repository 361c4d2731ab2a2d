"""Lazy package exports, so ``georay --help`` does not import torch, Ray and transformers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) importing ``name`` from ``exports[name]`` on first use.

    >>> __getattr__ = lazy_exports(__name__, {"fit": "georay.curate.fit"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        # Importing georay.curate.fit binds the *submodule* as the package attribute "fit";
        # set the function over it so later lookups get what we export.
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
