"""Settings of ``curate fit | score | dedup | balance`` (one CLI flag per field)."""

from __future__ import annotations

from dataclasses import dataclass

from georay.config import Config, RayConfig, at_least, option
from georay.data.ade20k import LOCATABILITY_THRESHOLD
from georay.data.phash import DEFAULT_MAX_DISTANCE
from georay.pipeline.settings import BulkSettings, PoolSettings, TorchThreads


@dataclass(kw_only=True)
class FitConfig(PoolSettings, TorchThreads):
    """``georay curate fit``: label a sample with the teacher, embed it, fit the head."""

    DEFAULTS = {"batch_size": 64}

    input: str = option(
        help="manifest (Parquet/CSV/JSONL, local or s3://)", path="in", aliases=("--manifest",)
    )
    output: str = option(help="folder or s3:// prefix for the fitted head", path="out")
    encoder: str = option("tiny", help="open_clip model name, or 'tiny' / 'small' (built in code)")
    pretrained: str | None = option(
        None, help="open_clip pretrained tag or checkpoint; empty = random init"
    )
    seed: int = option(0, help="sampling and random-init seed")
    teacher: str = option(
        "auto", help="'manifest' (ade20k_fractions column), 'segmenter', or 'auto'"
    )
    segmenter: str | None = option(
        None, help="ADE20K segmenter: local dir, s3:// prefix or hub id", path="model"
    )
    teacher_side: int = option(512, help="image side the segmenter sees (centre crop)")
    sample: int = option(1000, help="teacher-labelled images to fit on")
    holdout: float = option(0.2, help="fraction held out (by image_id hash) for fit metrics")
    threshold: float = option(LOCATABILITY_THRESHOLD, help="default keep threshold saved with head")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher not in ("auto", "manifest", "segmenter"):
            raise ValueError(f"teacher must be auto, manifest or segmenter, not {self.teacher!r}")
        if self.teacher == "segmenter" and not self.segmenter:
            raise ValueError("teacher='segmenter' needs --segmenter PATH_OR_ID")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        at_least(self, 20, "sample")


@dataclass(kw_only=True)
class ScoreConfig(BulkSettings, TorchThreads):
    """``georay curate score``: score every image with a fitted head; resumable."""

    DEFAULTS = {"batch_size": 64, "block_rows": 128}
    # One --input since the kind is detected.
    ALIASES = {"input": ("--manifest", "--images", "--webdataset")}

    head: str = option(help="fitted head folder or s3:// prefix (curate fit)", path="in")
    threshold: float | None = option(
        None, help="keep threshold; empty = the head's (0.4 by default)"
    )
    embeddings: bool = option(False, help="also write OUT/embeddings/ (image_id, embedding)")
    sha256: bool = option(False, help="add a sha256 column of image bytes")
    phash: bool = option(
        False,
        help="add a phash column: 64-bit perceptual hash of the pixels (16 hex digits), for "
        "`curate dedup` to find edited re-uploads",
    )
    decode: str = option(
        "tasks",
        help="where images are fetched and decoded: 'tasks' (CPU tasks beside the encoder "
        "actors, in parallel) or 'actor' (in each encoder actor between model calls: no decode "
        "processes competing with the encoder; shortened ViT-B/32 start-up 2x on a loaded "
        "2-CPU node, 11%% slower on a quiet one)",
    )
    bins: int = option(10, help="histogram bins over [0, 1] in summary.json")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        at_least(self, 1, "bins")
        if self.decode not in ("tasks", "actor"):
            raise ValueError(f"decode must be tasks or actor, not {self.decode!r}")


@dataclass(kw_only=True)
class DedupConfig(RayConfig):
    """``georay curate dedup``: drop exact and near-duplicate views of a scored set; resumable."""

    input: str = option(
        help="output folder of `curate score` (scores/ with --sha256 and --phash, embeddings/ "
        "with --embeddings)",
        path="in",
    )
    output: str = option(
        help="output folder or s3:// prefix; rerun the same command to resume", path="out"
    )
    similarity: float = option(
        0.95,
        help="cosine of two views' embeddings at or above which they are near duplicates "
        "(for a pretrained CLIP; random-init encoders need ~0.995)",
    )
    near: bool = option(
        True, help="also remove near duplicates by embedding (--no-near: exact and perceptual only)"
    )
    perceptual: bool = option(
        True, help="remove perceptual copies where the scores have a phash column (score --phash)"
    )
    hamming: int = option(
        DEFAULT_MAX_DISTANCE,
        help="pHash bits (of 64) at or below which two views of a block are perceptual copies",
    )
    h3_resolution: int = option(
        3,
        help="H3 resolution of the candidate blocks: only views in the same cell (else the same "
        "country, else all unlocated views) are compared",
    )
    neighbours: int = option(16, help="nearest neighbours searched per view within its block")
    exact_rows: int = option(
        20_000, help="blocks up to this many views are searched exactly; larger ones by IVF"
    )
    nprobe: int = option(16, help="IVF lists visited per query in large blocks")
    max_block_rows: int = option(
        500_000, help="larger blocks are split by spherical k-means into blocks about half this"
    )
    rows_per_part: int = option(50_000, help="rows per committed output part (whole blocks)")
    seed: int = option(0, help="seed of the IVF and k-means training samples")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.similarity <= 1:
            raise ValueError(f"similarity must be in (0, 1], got {self.similarity}")
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError(f"h3_resolution must be in 0..15, got {self.h3_resolution}")
        if not 0 <= self.hamming <= 32:
            raise ValueError(f"hamming must be in 0..32, got {self.hamming}")
        at_least(self, 1, "neighbours", "exact_rows", "nprobe", "rows_per_part")
        at_least(self, 2, "max_block_rows")


@dataclass(kw_only=True)
class BalanceConfig(Config):
    """``georay curate balance``: cap the curated views per H3 cell (and country)."""

    input: str = option(help="output folder of `curate score` (its curated/ views)", path="in")
    dedup: str | None = option(
        None, help="output folder of `curate dedup`: its dropped views are left out", path="in"
    )
    output: str = option(help="output folder or s3:// prefix", path="out")
    max_per_cell: int = option(help="most views kept per H3 cell (the most locatable)")
    h3_resolution: int = option(5, help="H3 resolution of the cells capped and reported")
    max_per_country: int = option(0, help="most views kept per country; 0 = no country cap")

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "max_per_cell")
        at_least(self, 0, "max_per_country")
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError(f"h3_resolution must be in 0..15, got {self.h3_resolution}")
