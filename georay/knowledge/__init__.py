"""Human reasoning knowledge -> stage-1/stage-2 SFT conversations (GeoReasoner's data step).

``build(cfg)`` reads human clues and a curated manifest and writes ``reasoning.jsonl`` and
``location.jsonl`` in the Qwen-VL conversation format (:mod:`georay.data.sft`), plus what was
dropped and why. No Ray here: a few thousand clues and a manifest filter are a single-process job.
"""

from georay.lazy import lazy_exports

_EXPORTS = {
    "KnowledgeConfig": "georay.knowledge.builder",
    "build": "georay.knowledge.builder",
    "SftExample": "georay.data.sft",
    "read_sft": "georay.data.sft",
    "to_chat_messages": "georay.data.sft",
    "write_sft": "georay.data.sft",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
