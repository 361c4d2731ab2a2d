"""Human reasoning knowledge -> stage-1/stage-2 SFT conversations (GeoReasoner's data step).

``build(cfg)`` reads human clues and a curated manifest and writes ``reasoning.jsonl`` and
``location.jsonl`` in the Qwen-VL conversation format (:mod:`georay.protocol.sft`), plus what was
dropped and why. No Ray here: a few thousand clues and a manifest filter are a single-process job.
"""

from georay.lazy import lazy_exports

_EXPORTS = {
    "KnowledgeConfig": "georay.knowledge.config",
    "build": "georay.knowledge.builder",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
