"""The ``georay`` command: one subcommand per stage, plus ``demo``.

Each stage package owns its subcommands in ``georay/<stage>/cli.py`` through a
``register(subparsers)`` function that adds parsers and sets ``func`` on them. This file only
lists the stages, so the CLI stays a thin layer: flags -> stage config -> stage function.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Order is the order of the pipeline, and of `georay --help`.
_COMMAND_MODULES = [
    "georay.data.cli",  # synth, inspect
    "georay.curate.cli",  # curate fit | score
    "georay.knowledge.cli",  # knowledge
    "georay.train.cli",  # train
    "georay.predict.cli",  # predict
    "georay.serve.cli",  # serve
    "georay.evaluate.cli",  # evaluate
    "georay.demo",  # demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="georay",
        description="GeoReasoner on Ray: curate, learn geo-reasoning, train, geotag, evaluate.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            # A stage that has not landed yet; anything else missing is a real error.
            if err.name and name.startswith(err.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
