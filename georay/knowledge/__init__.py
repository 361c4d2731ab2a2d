"""Human reasoning knowledge -> stage-1/stage-2 SFT conversations (GeoReasoner's data step).

``build(cfg)`` reads human clues and a curated manifest and writes ``reasoning.jsonl`` and
``location.jsonl`` in the Qwen-VL conversation format (:mod:`georay.data.sft`), plus what was
dropped and why. No Ray here: a few thousand clues and a manifest filter are a single-process job.
"""

from georay.data.sft import SftExample, read_sft, to_chat_messages, write_sft
from georay.knowledge.builder import KnowledgeConfig, build

__all__ = ["KnowledgeConfig", "SftExample", "build", "read_sft", "to_chat_messages", "write_sft"]
