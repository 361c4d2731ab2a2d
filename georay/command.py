"""What a ``georay`` subcommand is: a config dataclass, a function, and how to show the result.

Stage packages list theirs in ``georay/<stage>/cli.py`` as ``COMMANDS``; :mod:`georay.cli`
builds the parsers and runs them. Kept apart from :mod:`georay.cli` so that stage modules can
import it while ``python -m georay.cli`` runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def show_json(result: Any) -> str:
    """The default way to show a command's result: indented JSON."""
    return json.dumps(result, indent=2, default=str)


@dataclass(frozen=True)
class Command:
    """One ``georay`` subcommand.

    Attributes
    ----------
    name
        The subcommand (``"predict"``; ``"score"`` inside the ``curate`` group).
    config
        The config dataclass: one flag per field.
    run
        ``"module:function"`` that takes the config and does the work; an ``int`` it returns is
        the exit status, anything else is shown with ``show``.
    help, description
        One line for ``georay --help``; a paragraph for ``georay <command> --help``.
    show
        Renders the result for the terminal (default: JSON).
    presets
        Package whose ``presets/`` folder ``--preset NAME`` looks in.
    """

    name: str
    config: type
    run: str
    help: str
    description: str = ""
    show: Callable[[Any], str] = show_json
    presets: str = ""


@dataclass(frozen=True)
class Group:
    """Subcommands under one word (``georay curate fit|score``)."""

    name: str
    help: str
    commands: list[Command] = field(default_factory=list)
