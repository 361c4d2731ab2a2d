"""``georay export``: a training artifact as a merged Hugging Face checkpoint, local or on S3.

What transformers, vLLM and ``ray.serve.llm`` load with no georay code; see
:func:`georay.models.export.export_merged` for the layout.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from georay.data.storage import is_s3, join_uri, upload_folder
from georay.errors import UserError
from georay.models.export import export_merged
from georay.predict.config import ExportConfig


def export(cfg: ExportConfig) -> dict:
    """Write ``cfg.model`` merged into ``cfg.output`` (via a local folder when it is ``s3://``)."""
    if not is_s3(cfg.output):
        try:
            return export_merged(cfg.model, cfg.output, lora_stage2=cfg.lora_adapter)
        except FileExistsError as err:
            raise UserError(f"--output {cfg.output} is not empty: {err}") from None
    with tempfile.TemporaryDirectory(prefix="georay-export-") as tmp:
        result = export_merged(cfg.model, str(Path(tmp) / "out"), lora_stage2=cfg.lora_adapter)
        upload_folder(Path(tmp) / "out", cfg.output)
    local = str(Path(tmp) / "out")
    for key in ("merged", "base", "adapter"):
        if result.get(key):
            rel = result[key][len(local) :].strip("/")  # "" for the merged folder itself
            result[key] = join_uri(cfg.output, rel) if rel else cfg.output.rstrip("/")
    return result
