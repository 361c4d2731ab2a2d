"""Stage settings as dataclasses, exposed one-to-one as CLI flags, with optional YAML presets.

Every stage has a ``@dataclass(kw_only=True)`` config deriving from :class:`Config`. Its fields
are declared with :func:`option` (help text, and for paths whether they are read or written)
and validated in ``__post_init__``. This module is the only place that turns such a class into
``argparse`` flags and back, so a field added to a config shows up on the command line (and in
``--help``) with no other change:

* ``snake_case`` field -> ``--kebab-case`` flag; ``bool`` fields -> ``--flag/--no-flag``;
  ``list[...]`` fields take one or more values, each of them comma-separated too
  (``--h3-resolution 3,5`` or ``--h3-resolution 3 5``);
* flags default to "not given", so values layer as dataclass defaults < ``--preset`` < flags;
* path fields given as local paths are made absolute where the command runs, before any Ray
  worker (which runs in another working directory) sees them, and
  :func:`georay.cli.check_inputs` checks that inputs exist there, so a typo fails in a second
  rather than minutes later in a worker.

Config modules import nothing heavy (no Ray, no torch): ``georay <command> --help`` builds its
parser from them alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml

from georay.errors import UserError

T = TypeVar("T")
PathKind = Literal["in", "out", "model"]


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    factory: Any = dataclasses.MISSING,
    path: PathKind | None = None,
    aliases: tuple[str, ...] = (),
    positional: bool = False,
    named: bool = False,
) -> Any:
    """A config field with its CLI help.

    Parameters
    ----------
    default, factory
        The field's default value or default factory; neither makes the flag required.
    help
        The ``--help`` text.
    path
        ``"in"``: a file or folder the stage reads (made absolute, checked to exist);
        ``"out"``: one it writes (made absolute); ``"model"``: a local folder, ``s3://`` prefix
        or hub id (made absolute when it names an existing local path).
    aliases
        Old flag spellings still accepted (hidden from ``--help``, with a note on stderr);
        ``"--old=VALUE"`` is an old switch that now sets the field to ``VALUE``.
    positional
        A positional argument instead of a flag.
    named
        With ``path``: a value may be ``NAME=PATH`` (``--predictions knn=runs/knn``); only the
        part after the name is a path.
    """
    meta = {"help": help, "path": path, "aliases": aliases, "positional": positional,
            "named": named}  # fmt: skip
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _is_uri(value: str) -> bool:
    return "://" in value


_NAME = re.compile(r"^([\w.-]+)=(.+)$")


def split_name(value: str) -> tuple[str, str]:
    """``"knn=runs/knn"`` -> ``("knn", "runs/knn")``; a value without a simple name before a
    ``=`` is all path: ``("", value)``."""
    match = _NAME.match(value) if not _is_uri(value.split("=", 1)[0]) else None
    return (match.group(1), match.group(2)) if match else ("", value)


def _resolve(value: Any, kind: PathKind, named: bool = False) -> Any:
    if isinstance(value, list):
        return [_resolve(v, kind, named) for v in value]
    if named and isinstance(value, str):
        name, path = split_name(value)
        if name:
            return f"{name}={_resolve(path, kind)}"
    if not isinstance(value, str) or not value or _is_uri(value):
        return value
    local = os.path.abspath(os.path.expanduser(value))
    looks_local = value.startswith((".", "/", "~"))
    if kind == "model" and not looks_local and not os.path.exists(local):
        return value  # a hub id such as Qwen/Qwen2-VL-2B-Instruct, or "tiny"
    return local


def _inherited_field(cls: type, name: str) -> dataclasses.Field:
    for base in cls.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            found = {f.name: f for f in dataclasses.fields(base)}.get(name)
            if found is not None:
                return found
    raise TypeError(f"{cls.__name__}: DEFAULTS/ALIASES name {name!r}, which no base class declares")


@dataclasses.dataclass(kw_only=True)
class Config:
    """Base of every stage config: makes the local paths it was given absolute.

    A setting shared by several commands is declared once, on the class that introduces it; a
    command changes its default or adds old spellings without declaring it again:

    * ``DEFAULTS = {"batch_size": 64}`` on a subclass: the field's default for that command
      (``--help`` shows it);
    * ``ALIASES = {"input": ("--manifest",)}``: old flag spellings that command still accepts.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {}
    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Runs before @dataclass sees the class: each override becomes a redeclaration of the
        # inherited field (same type, help and place in the order) that @dataclass then picks up.
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        names = set(own.get("DEFAULTS", {})) | set(own.get("ALIASES", {}))
        annotations = dict(own.get("__annotations__", {}))
        for name in sorted(names):
            inherited = _inherited_field(cls, name)
            meta = dict(inherited.metadata)
            meta["aliases"] = (*meta.get("aliases", ()), *own.get("ALIASES", {}).get(name, ()))
            default = own.get("DEFAULTS", {}).get(name, inherited.default)
            if (
                default is dataclasses.MISSING
                and inherited.default_factory is not dataclasses.MISSING
            ):
                field = dataclasses.field(default_factory=inherited.default_factory, metadata=meta)
            else:
                field = dataclasses.field(default=default, metadata=meta)
            annotations[name] = inherited.type
            setattr(cls, name, field)
        if names:
            cls.__annotations__ = annotations

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            kind = f.metadata.get("path")
            if kind:
                value = _resolve(getattr(self, f.name), kind, f.metadata.get("named", False))
                setattr(self, f.name, value)


@dataclasses.dataclass(kw_only=True)
class RayConfig(Config):
    """A stage that runs on a Ray cluster."""

    address: str = option(
        "",
        help="Ray cluster to join (default: $RAY_ADDRESS, which `ray job submit` sets, else a "
        "private local Ray)",
    )


@dataclasses.dataclass(kw_only=True)
class Batched(Config):
    """A command that runs a model on batches: the one declaration of ``--batch-size``
    (each command sets its own default with ``DEFAULTS``)."""

    batch_size: int = option(
        8,
        help="items per model call: images per forward pass or generate() call; in training, "
        "examples per worker per micro-step; in serving, the largest dynamic batch",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "batch_size")


def at_least(config: Any, minimum: float, *names: str) -> None:
    """Raise ``ValueError`` naming the first of the fields ``names`` below ``minimum``."""
    for name in names:
        if getattr(config, name) < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {getattr(config, name)}")


NO_CALIBRATION = "none"


@dataclasses.dataclass(kw_only=True)
class Confident(Config):
    """A command that writes predictions rows with confidences (issue 20): the one declaration
    of ``--top-k`` and ``--min-confidence`` (the baselines; predict and serve)."""

    # 5 = georay.protocol.predictions.DEFAULT_TOP_K (this module sits below protocol; a unit
    # test holds the two equal).
    top_k: int = option(5, help="places kept in each row's candidates, the answer first")
    min_confidence: float = option(
        0.0,
        help="rows whose (calibrated) country confidence is under this are marked abstained; "
        "they keep their answer and candidates (0 = never abstain)",
    )
    calibration: str = option(
        "",
        help="calibration.json (or the folder or s3:// prefix holding one) applied to the "
        "confidences; default: the one `georay calibrate` stored next to the model (the VLM "
        "artifact, the kNN --gallery, a zero-shot --encoder folder), raw probabilities where "
        f"there is none; '{NO_CALIBRATION}' = raw probabilities",
        path="model",  # "none" stays a word; a local path is made absolute
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0.0 <= self.min_confidence <= 1.0:  # NaN fails too
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")


def flag(name: str) -> str:
    """The command-line flag of a config field name: ``h3_resolution`` -> ``--h3-resolution``."""
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> Any:
    """Strip ``Optional[...]`` / ``X | None``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _converter(tp: Any):
    tp = _base_type(tp)
    if typing.get_origin(tp) in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (str,)
        conv = _converter(inner)
        return lambda text: [conv(part.strip()) for part in text.split(",") if part.strip()]
    return tp if tp in (int, float, str) else str


class _Renamed(argparse.Action):
    """An old flag spelling: stores into the new field and says so on stderr."""

    def __init__(self, *args, new: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is now {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, presets: str = "") -> None:
    """Add one flag per field of the dataclass ``cls``, plus ``--preset``.

    Flags default to ``None`` so that :func:`from_args` can tell "not given" from a value.
    ``presets`` names the package whose ``presets/`` folder ``--preset NAME`` looks in.
    """
    hints = typing.get_type_hints(cls)
    shipped = preset_names(presets)
    parser.add_argument(
        "--preset",
        default=None,
        help="YAML file of field values (flags given override it)"
        + (f"; shipped presets: {', '.join(shipped)}" if shipped else ""),
    )
    # Required fields first: they are what a newcomer has to give.
    for f in sorted((f for f in dataclasses.fields(cls) if f.init), key=lambda f: not _required(f)):
        tp = _base_type(hints[f.name])
        default = _default(f)
        text = f.metadata.get("help", "")
        if default not in (None, "", []) and tp is not bool:
            text += f" (default: {','.join(map(str, default)) if isinstance(default, list) else default})"
        if _required(f):
            text += " [required]"
        if f.metadata.get("positional"):  # a list of values, e.g. `georay inspect IMG...`
            parser.add_argument(f.name, nargs="+", metavar=f.name.upper(), help=text)
            continue
        if tp is bool:
            kwargs: dict = {"action": argparse.BooleanOptionalAction}
            text += f" (default: {'on' if default else 'off'})"
        else:
            kwargs = {"type": _converter(tp), "metavar": f.name.upper()}
            if typing.get_origin(tp) in (list, tuple):
                kwargs["nargs"] = "+"  # `--predictions a=P b=Q` as well as `a=P,b=Q`
        parser.add_argument(flag(f.name), dest=f.name, default=None, help=text, **kwargs)
        for alias in f.metadata.get("aliases", ()):
            # "--use-gpu=1": an old switch that now means one value of the field.
            name, is_switch, value = alias.partition("=")
            convert = kwargs.get("type") or str
            switch = {"nargs": 0, "const": convert(value)} if is_switch else {"type": convert}
            parser.add_argument(
                name,
                dest=f.name,
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
                action=_Renamed,
                new=f"{flag(f.name)} {value}" if is_switch else flag(f.name),
                **switch,
            )


def preset_names(package: str) -> list[str]:
    """Names of the YAML presets shipped in ``<package>/presets/`` (empty if none)."""
    if not package:
        return []
    folder = resources.files(package).joinpath("presets")
    if not folder.is_dir():
        return []
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def find_preset(name: str, package: str = "") -> Path:
    """A preset file: ``name`` itself when it is a file, else ``<package>/presets/NAME[.yaml]``."""
    if Path(name).is_file():
        return Path(name)
    if package:
        stem = name.removesuffix(".yaml")
        candidate = resources.files(package).joinpath("presets", stem + ".yaml")
        if candidate.is_file():
            return Path(str(candidate))
    known = ", ".join(preset_names(package)) or "none shipped"
    raise UserError(f"--preset {name}: no such file or shipped preset (shipped: {known})")


def load_preset(path: str | Path, package: str = "") -> dict[str, Any]:
    """Read a YAML preset (a file, or a name shipped in ``package``): field names -> values."""
    path = find_preset(str(path), package)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"preset {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"preset {path} must be a mapping of field names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def from_args(cls: type[T], args: argparse.Namespace, presets: str = "") -> T:
    """Build ``cls`` from parsed flags: dataclass defaults < ``--preset`` file < explicit flags.

    Raises
    ------
    UserError
        A missing required flag, or a preset naming fields ``cls`` does not have.
    ValueError
        From the config's own validation.
    """
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = {f.name for f in fields}
    values: dict[str, Any] = {}
    preset = getattr(args, "preset", None)
    if preset:
        values.update(load_preset(preset, presets))
        unknown = set(values) - names
        if unknown:
            raise UserError(f"preset {preset} has unknown fields: {sorted(unknown)}")
    for name in names:
        value = getattr(args, name, None)
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            value = [item for part in value for item in part]  # nargs="+" of comma lists
        if value is not None:
            values[name] = value
    missing = [flag(f.name) for f in fields if _required(f) and f.name not in values]
    if missing:
        raise UserError("missing required flag(s): " + ", ".join(missing))
    return cls(**values)
