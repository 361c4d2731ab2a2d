"""Settings of ``georay knowledge`` (one CLI flag per field)."""

from __future__ import annotations

from dataclasses import dataclass

from georay.config import Config, at_least, option
from georay.data.ade20k import LOCATABILITY_THRESHOLD


@dataclass(kw_only=True)
class KnowledgeConfig(Config):
    """Build stage-1 (reasoning) and stage-2 (location) SFT conversations."""

    output: str = option(help="output folder or s3:// prefix", path="out")
    clues: str | None = option(
        None, help="human clues: .jsonl/.json/.csv/.parquet or the authors' SFT JSON", path="in"
    )
    manifest: str | None = option(
        None,
        help="curated views for stage 2: a manifest file (Parquet/CSV/JSONL) or a folder of "
        "Parquet parts (curate's curated/ or scores/ output)",
        path="in",
    )
    splits: str | None = option(
        None,
        help="table with image_id/uri + split (e.g. the full world manifest); clues on images "
        "outside --split are dropped. Default: --manifest (a curated subset may lack the "
        "held-out views it filtered out, so pass the full manifest)",
        path="in",
    )
    split: str = option(
        "train", help="keep manifest rows (and clues on their images) of this split; '' = all"
    )
    min_locatability: float | None = option(
        LOCATABILITY_THRESHOLD, help="stage-2 rows need locatability >= this when the column exists"
    )
    min_city_population: int = option(
        100_000, help="smallest city whose name in a clue counts as a place mention"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.output:
            raise ValueError("output is required")
        if not self.clues and not self.manifest:
            raise ValueError("give --clues, --manifest or both: there is nothing to build")
        at_least(self, 0, "min_city_population")
        if self.min_locatability is not None and not 0.0 <= self.min_locatability <= 1.0:
            raise ValueError(f"min_locatability must be in [0, 1], got {self.min_locatability}")
