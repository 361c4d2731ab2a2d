"""``georay knowledge --clues CLUES --manifest CURATED --output DIR``."""

from __future__ import annotations

import argparse
import json

from georay.config import add_dataclass_args, from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``knowledge`` subcommand."""
    parser = subparsers.add_parser(
        "knowledge",
        help="build stage-1 (reasoning) and stage-2 (location) SFT conversations",
        description="Human clues -> reasoning.jsonl; curated manifest -> location.jsonl; "
        "plus dropped.jsonl (what was dropped and why) and summary.json.",
    )
    from georay.knowledge.builder import KnowledgeConfig

    add_dataclass_args(parser, KnowledgeConfig)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from georay.knowledge.builder import KnowledgeConfig, build

    summary = build(from_args(KnowledgeConfig, args))
    print(
        json.dumps({k: v for k, v in summary.items() if k in ("reasoning", "location")}, indent=2)
    )
    return 0
