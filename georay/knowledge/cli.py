"""``georay knowledge``: flags map one-to-one to :class:`KnowledgeConfig`."""

from georay.command import Command
from georay.knowledge.config import KnowledgeConfig


def _show(summary: dict) -> str:
    from georay.command import show_json

    return show_json({k: v for k, v in summary.items() if k in ("reasoning", "location")})


COMMANDS = [
    Command(
        "knowledge",
        KnowledgeConfig,
        "georay.knowledge.builder:build",
        help="build stage-1 (reasoning) and stage-2 (location) SFT conversations",
        description="Human clues -> reasoning.jsonl; curated manifest -> location.jsonl; plus "
        "dropped.jsonl (what was dropped and why) and summary.json.",
        show=_show,
    )
]
