"""Stage settings as dataclasses, exposed one-to-one as CLI flags, with optional YAML presets.

Every stage has a ``@dataclass`` config whose fields carry their help text in
``field(metadata={"help": ...})`` and validate themselves in ``__post_init__``. This module is the
only place that turns such a class into ``argparse`` flags and back, so a field added to a config
shows up on the command line (and in ``--help``) with no other change.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Strip ``Optional[...]`` / ``X | None``; return (inner type, is_optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _converter(tp: Any):
    tp, _ = _base_type(tp)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (str,)
        conv = _converter(inner)
        return lambda text: [conv(part) for part in text.split(",") if part.strip()]
    if tp is bool:
        return _parse_bool
    if tp in (int, float, str):
        return tp
    return str


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--flag`` per field of the dataclass ``cls`` (plus ``--preset YAML``).

    Flags default to ``None`` so that :func:`from_args` can tell "not given" from a value and
    layer defaults < preset < flags.
    """
    hints = typing.get_type_hints(cls)
    parser.add_argument(
        "--preset", default=None, help="YAML file of field values; flags given override it"
    )
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        )
        help_text = f.metadata.get("help", "")
        if default is not None and default != "":
            help_text = f"{help_text} (default: {default})"
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        parser.add_argument(
            _flag(f.name),
            dest=f.name,
            type=_converter(tp),
            default=None,
            help=help_text + (" [required]" if required else ""),
        )


def load_preset(path: str | Path) -> dict[str, Any]:
    """Read a YAML preset: a mapping of config field names (``-`` or ``_``) to values."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"preset {path} must be a mapping of field names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Build ``cls`` from parsed flags: dataclass defaults < ``--preset`` file < explicit flags."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    preset = getattr(args, "preset", None)
    if preset:
        values.update(load_preset(preset))
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"preset {preset} has unknown fields: {sorted(unknown)}")
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in values
    ]
    if missing:
        raise SystemExit("missing required flags: " + ", ".join(_flag(m) for m in missing))
    return cls(**values)
