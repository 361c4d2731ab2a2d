"""Settings of ``curate fit`` and ``curate score`` (one CLI flag per field)."""

from __future__ import annotations

from dataclasses import dataclass, field

from georay.data.ade20k import LOCATABILITY_THRESHOLD
from georay.data.images import DEFAULT_MAX_PIXELS


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(kw_only=True)
class PoolSettings:
    """How the encoder stage runs on the cluster (shared by fit and score)."""

    batch_size: int = field(default=64, metadata=_help("images per encoder forward pass"))
    num_actors: int = field(default=1, metadata=_help("encoder actors (one model copy each)"))
    actor_cpus: float | None = field(
        default=None,
        metadata=_help("CPUs reserved per actor; empty = auto (leaves a CPU for reads/decode)"),
    )
    gpus_per_actor: float | None = field(
        default=None, metadata=_help("GPUs per actor; empty = 1 when the cluster has GPUs")
    )
    decode_cpus: float = field(
        default=1.0,
        metadata=_help("CPUs per fetch/decode task; < 1 packs more decode tasks per core"),
    )
    torch_threads: int = field(
        default=0, metadata=_help("torch CPU threads per actor; 0 = node CPUs / actors")
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS, metadata=_help("larger images become error rows")
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_actors < 1:
            raise ValueError("batch_size and num_actors must be >= 1")
        if self.actor_cpus is not None and self.actor_cpus <= 0:
            raise ValueError(f"actor_cpus must be > 0, got {self.actor_cpus}")
        if self.decode_cpus <= 0:
            raise ValueError(f"decode_cpus must be > 0, got {self.decode_cpus}")
        if self.max_pixels < 1:
            raise ValueError("max_pixels must be >= 1")


@dataclass(kw_only=True)
class FitConfig(PoolSettings):
    """``georay curate fit``: label a sample with the teacher, embed it, fit the head."""

    manifest: str = field(metadata=_help("manifest (Parquet/CSV/JSONL, local or s3://)"))
    output: str = field(metadata=_help("folder or s3:// prefix for the fitted head"))
    encoder: str = field(default="tiny", metadata=_help("open_clip model name, or 'tiny'"))
    pretrained: str | None = field(
        default=None, metadata=_help("open_clip pretrained tag or checkpoint; empty = random")
    )
    seed: int = field(default=0, metadata=_help("sampling and random-init seed"))
    teacher: str = field(
        default="auto",
        metadata=_help("'manifest' (ade20k_fractions column), 'segmenter', or 'auto'"),
    )
    segmenter: str | None = field(
        default=None, metadata=_help("ADE20K segmenter: local dir, s3:// prefix or hub id")
    )
    teacher_side: int = field(
        default=512, metadata=_help("image side the segmenter sees (centre crop)")
    )
    sample: int = field(default=1000, metadata=_help("teacher-labelled images to fit on"))
    holdout: float = field(
        default=0.2, metadata=_help("fraction held out (by image_id hash) for fit metrics")
    )
    threshold: float = field(
        default=LOCATABILITY_THRESHOLD, metadata=_help("default keep threshold saved with head")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher not in ("auto", "manifest", "segmenter"):
            raise ValueError(f"teacher must be auto, manifest or segmenter, not {self.teacher!r}")
        if self.teacher == "segmenter" and not self.segmenter:
            raise ValueError("teacher='segmenter' needs --segmenter PATH_OR_ID")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        if self.sample < 20:
            raise ValueError(f"sample must be >= 20, got {self.sample}")


@dataclass(kw_only=True)
class ScoreConfig(PoolSettings):
    """``georay curate score``: score every image with a fitted head; resumable."""

    head: str = field(metadata=_help("fitted head folder or s3:// prefix (curate fit)"))
    output: str = field(metadata=_help("output folder or s3:// prefix"))
    manifest: str | None = field(default=None, metadata=_help("manifest to score"))
    images: str | None = field(default=None, metadata=_help("folder or s3:// prefix of images"))
    webdataset: str | None = field(
        default=None, metadata=_help("WebDataset .tar shard, or folder / prefix of shards")
    )
    threshold: float | None = field(
        default=None, metadata=_help("keep threshold; empty = the head's (0.4 by default)")
    )
    embeddings: bool = field(
        default=False, metadata=_help("also write OUT/embeddings/ (image_id, embedding)")
    )
    sha256: bool = field(default=False, metadata=_help("add a sha256 column of image bytes"))
    rows_per_part: int = field(default=1024, metadata=_help("rows per committed output part"))
    block_rows: int = field(default=128, metadata=_help("input rows per Ray Data block"))
    bins: int = field(default=10, metadata=_help("histogram bins over [0, 1] in summary.json"))

    def __post_init__(self) -> None:
        super().__post_init__()
        given = [k for k in ("manifest", "images", "webdataset") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one input: --manifest, --images or --webdataset")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.rows_per_part < 1 or self.block_rows < 1 or self.bins < 1:
            raise ValueError("rows_per_part, block_rows and bins must be >= 1")

    @property
    def source(self) -> tuple[str, str]:
        """(uri, kind) of the one input given."""
        for kind in ("manifest", "images", "webdataset"):
            if getattr(self, kind):
                return getattr(self, kind), kind
        raise AssertionError("unreachable: validated in __post_init__")
