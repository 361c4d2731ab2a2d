"""The ``georay`` command: one subcommand per stage, built from the stages' configs.

Each stage package lists its subcommands in ``georay/<stage>/cli.py`` as ``COMMANDS``: a
:class:`Command` names the config dataclass (its fields are the flags), the function that does
the work (imported only when the command runs, so ``--help`` imports neither Ray nor torch), and
how to show the result. This file turns those into ``argparse`` parsers and owns the one error
policy of every command:

* a user mistake (:class:`georay.errors.UserError`, or a config that fails validation) prints
  ``georay <command>: error: <what and where>`` on stderr and exits with status 2;
* ``-v`` logs at debug level and shows the traceback of such an error too;
* anything else is a bug and fails loudly, with its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from georay.command import Command, Group
from georay.config import add_dataclass_args, flag, from_args, split_name
from georay.errors import UserError

# Stage CLI modules, in pipeline order (the order of `georay --help`).
STAGE_CLIS = [
    "georay.synth.cli",  # synth
    "georay.data.cli",  # inspect
    "georay.curate.cli",  # curate fit | score
    "georay.knowledge.cli",  # knowledge
    "georay.train.cli",  # train
    "georay.predict.cli",  # predict, export
    "georay.baseline.cli",  # baseline zeroshot | knn
    "georay.serve.cli",  # serve
    "georay.evaluate.cli",  # evaluate
    "georay.calibrate.cli",  # calibrate
    "georay.demo.cli",  # demo
]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``georay predict: error: ...``), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add(subparsers, command: Command) -> None:
    parser = subparsers.add_parser(
        command.name,
        help=command.help,
        description=command.description or command.help,
    )
    add_dataclass_args(parser, command.config, command.presets)
    parser.set_defaults(command=command, prog=parser.prog)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="georay",
        description="GeoReasoner on Ray: curate, learn geo-reasoning, train, geotag, evaluate.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    subparsers = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    for name in STAGE_CLIS:
        for entry in importlib.import_module(name).COMMANDS:
            if isinstance(entry, Group):
                group = subparsers.add_parser(entry.name, help=entry.help, description=entry.help)
                sub = group.add_subparsers(
                    dest=f"{entry.name}_command",
                    metavar="{" + ",".join(c.name for c in entry.commands) + "}",
                    required=True,
                )
                for command in entry.commands:
                    _add(sub, command)
            else:
                _add(subparsers, entry)
    return parser


def _function(target: str) -> Callable[[Any], Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _fail(prog: str, err: BaseException, verbose: bool) -> int:
    if verbose:
        import traceback

        traceback.print_exception(err)
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2


def check_inputs(cfg: Any) -> None:
    """Raise :class:`UserError` naming the flag of the first input path that does not exist.

    Checks ``path="in"`` fields, and ``path="model"`` fields that are clearly paths (absolute
    after resolution, or ``s3://``); a hub id cannot be checked without the hub.
    """
    from georay.data.storage import exists  # pyarrow: not for --help

    for f in dataclasses.fields(cfg):
        kind = f.metadata.get("path")
        value = getattr(cfg, f.name)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str) or not v:
                continue
            if f.metadata.get("named"):
                v = split_name(v)[1]
            is_path = kind == "in" or (kind == "model" and (v.startswith(("/", "s3://"))))
            if is_path and not exists(v):
                name = f.name if f.metadata.get("positional") else flag(f.name)
                raise UserError(f"{name}: no such file or folder: {v}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command: Command | None = getattr(args, "command", None)
    if command is None:
        parser.print_help()
        return 2
    prog = args.prog
    try:
        # Any ValueError while building the config is the user's: validation of given values.
        cfg = from_args(command.config, args, command.presets)
        check_inputs(cfg)
    except (ValueError, TypeError) as err:
        return _fail(prog, err, args.verbose)
    try:
        result = _function(command.run)(cfg)
    except UserError as err:
        return _fail(prog, err, args.verbose)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    if result is not None:
        print(command.show(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
