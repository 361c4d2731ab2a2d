"""Settings of ``georay predict`` (and the model settings ``georay serve`` shares)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from georay.config import Batched, Confident, Config, at_least, option
from georay.pipeline.settings import BulkSettings

ENGINES = ("hf", "vllm")


@dataclass(kw_only=True)
class ModelSettings(Batched, Confident):
    """How to load and ask the model; shared by ``georay predict`` and ``georay serve``."""

    model: str = option(
        help="training artifact (artifact.json: base model + adapters), or a base model folder, "
        "s3:// prefix or hub id",
        path="model",
    )
    max_new_tokens: int = option(128, help="generation length limit")
    h3_resolution: int = option(5, help="H3 resolution of the h3 column")
    question: str = option(
        "",
        help="prompt asked per image (default: the question the artifact's last stage was "
        "trained on, else the paper's inference question)",
    )
    device: str | None = option(None, help="torch device (default: cuda when present, else cpu)")
    dtype: str | None = option(None, help="torch dtype (default: bfloat16 on GPU, float32 on CPU)")
    max_pixels: int = option(
        0,
        help="downscale images to at most this many pixels before the processor; 0: the "
        "processor's own max_pixels",
    )
    engine: str = option(
        "hf",
        help="hf (transformers generate: exact, simple) or vllm (continuous batching, paged KV "
        "cache: the production engine on GPUs; needs the vllm package)",
    )
    lora_adapter: bool = option(
        False,
        help="vllm: serve the artifact's last adapter as a LoRA over the merged earlier stages "
        "(several adapters share one base) instead of one merged checkpoint",
    )
    max_model_len: int | None = option(
        None, help="vllm: longest prompt + answer in tokens (default: the model's own limit)"
    )
    max_num_seqs: int | None = option(
        None, help="vllm: sequences batched at once per engine (default: vLLM's)"
    )
    gpu_memory_utilization: float = option(
        0.9, help="vllm: share of each GPU's memory the engine may take (weights + KV cache)"
    )
    tensor_parallel_size: int = option(1, help="vllm: GPUs one engine spans (tensor parallel)")
    max_images: int = option(
        1, help="vllm: images one request may carry (chat completions with several images)"
    )
    confidence: bool = option(
        True,
        help="score each answer with the model's own token probabilities: country_confidence, "
        "city_confidence and the top-k candidates (alternatives the model completes itself)",
    )

    def load_calibration(self):
        """The calibration the answers' confidences go through: ``--calibration``, else the
        one `georay calibrate` stored next to the model (None: raw, or ``--no-confidence``)."""
        from georay.protocol.calibration import job_calibration

        return job_calibration(self.calibration, self.model)[0] if self.confidence else None

    @classmethod
    def of(cls, values: dict, **overrides) -> ModelSettings:
        """The model settings among ``values`` (a stage config as a dict), with overrides."""
        names = {f.name for f in fields(cls) if f.init}
        return cls(**{k: v for k, v in {**values, **overrides}.items() if k in names})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise ValueError("model must name a training artifact or a base model")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError(f"h3_resolution must be in 0..15, got {self.h3_resolution}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.lora_adapter and self.engine != "vllm":
            raise ValueError("lora_adapter needs engine 'vllm'")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if self.tensor_parallel_size < 1 or self.max_images < 1:
            raise ValueError("tensor_parallel_size and max_images must be >= 1")
        if self.min_confidence and not self.confidence:
            raise ValueError("min_confidence needs confidence (drop --no-confidence)")
        if self.max_pixels and self.max_pixels < 28 * 28:
            raise ValueError(
                f"max_pixels must be 0 (the processor's own) or >= 784, got {self.max_pixels}"
            )


@dataclass(kw_only=True)
class GallerySearch(Config):
    """How a photo's nearest gallery images are found and weighted: one declaration for
    ``georay predict --gallery`` (the fused method) and ``georay baseline knn``."""

    gallery_labels: str = option(
        "",
        help="where the gallery images were taken, any table layout georay reads (default: "
        "GALLERY/scores, which carries the scored input's lat, lon, country, city)",
        path="in",
    )
    gallery_split: str = option(
        "", help="use only gallery rows of this split (labels' 'split' column); '' = all"
    )
    # neighbours and temperature: chosen by a sweep on the demo world (georay/baseline/index.py)
    neighbours: int = option(5, help="gallery neighbours per photo", aliases=("--k",))
    temperature: float = option(
        0.05, help="softmax temperature of the neighbours' similarity weights; 0 = uniform"
    )
    # The vote: 5 sharp neighbours make coarse, tied probabilities (most rows 1.0); 20 with
    # t = 0.01 ranked the demo world's test views better (area under the risk-coverage curve
    # 0.024 vs 0.056) and held the truth in the top-5 countries more often (0.99 vs 0.96),
    # with the answer unchanged (BENCHMARKS.md, "confidence").
    vote_neighbours: int = option(
        20,
        help="neighbours whose similarity weights, grouped by place, give the confidences and "
        "candidates (knn) or the neighbours' country distribution (fused); the place stays the "
        "medoid of the first --neighbours",
    )
    vote_temperature: float = option(
        0.01, help="softmax temperature of the vote's weights; 0 = uniform"
    )
    index: str = option(
        "auto", help="faiss index: flat (exact), ivf, or auto (flat up to 50K gallery images)"
    )
    nprobe: int = option(32, help="inverted lists an ivf index searches per query")
    exclude_self: bool = option(
        True, help="skip a gallery image with the photo's own image_id (no answer by lookup)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "neighbours", "vote_neighbours", "nprobe")
        at_least(self, 0, "temperature", "vote_temperature")
        if self.index not in ("auto", "flat", "ivf"):
            raise ValueError(f"index must be auto, flat or ivf, not {self.index!r}")


@dataclass(kw_only=True)
class GallerySettings(GallerySearch):
    """A geotagged gallery beside the VLM (issue 21, the fused method): each photo's nearest
    gallery images, found with the encoder of the curate head that embedded the gallery."""

    gallery: str = option(
        "",
        help="fuse the VLM with retrieval over this `georay curate score --embeddings` output "
        "(its embeddings/ and where they were taken); '' = the VLM alone",
        path="in",
    )
    gallery_from_exif: bool = option(
        False,
        help="the gallery is the input's own photos with EXIF GPS (their rows: method exif, "
        "at the EXIF point); the rest are predicted with it",
    )
    head: str = option(
        "",
        help="with a gallery: the curate head whose encoder embedded it; photos are embedded "
        "with it",
        path="in",
    )
    same_scene_similarity: float = option(
        0.95,
        help="with a gallery: cosine at or above which a neighbour is the same scene and gives "
        "the answer its own point (as curate dedup's --similarity: ~0.995 for random-init "
        "encoders)",
    )
    fusion_vlm_weight: float = option(
        1.0, help="exponent of the VLM's country distribution in the log-linear fusion"
    )
    fusion_knn_weight: float = option(
        1.0, help="exponent of the neighbours' country distribution in the log-linear fusion"
    )

    @property
    def fused(self) -> bool:
        """True when photos are placed by the fused method."""
        return bool(self.gallery) or self.gallery_from_exif

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gallery and self.gallery_from_exif:
            raise ValueError("give --gallery or --gallery-from-exif, not both")
        if self.fused and not self.head:
            raise ValueError("a gallery needs --head: the curate head whose encoder embedded it")
        if not 0 < self.same_scene_similarity <= 1:
            raise ValueError(
                f"same_scene_similarity must be in (0, 1], got {self.same_scene_similarity}"
            )
        if min(self.fusion_vlm_weight, self.fusion_knn_weight) < 0 or not (
            self.fusion_vlm_weight + self.fusion_knn_weight
        ):
            raise ValueError("fusion weights must be >= 0 and not both 0")


@dataclass(kw_only=True)
class PredictConfig(BulkSettings, ModelSettings, GallerySettings):
    """``georay predict``: geotag every image of the input; resumable."""

    skip_exif_gps: bool = option(
        False, help="do not run the model on images whose EXIF already has GPS"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fused and self.engine != "hf":
            raise ValueError("--gallery and --gallery-from-exif run on --engine hf for now")


@dataclass(kw_only=True)
class ExportConfig(Config):
    """``georay export``: a training artifact as a merged Hugging Face checkpoint."""

    model: str = option(help="georay training artifact (local or s3://)", path="model")
    output: str = option(
        help="folder to write (local, new or empty; or an s3:// prefix)", path="out"
    )
    lora_adapter: bool = option(
        False,
        help="also write base/ (every stage but the last, merged) and adapter/ (the last stage's "
        "LoRA), to serve the last stage as a LoRA over a shared base (vLLM LoRARequest)",
    )


@dataclass(kw_only=True)
class ExportGeoConfig(Config):
    """``georay export-geo``: predictions as GeoJSON, for web maps and QGIS."""

    predictions: str = option(
        help="a predictions table: a job's predictions/ folder (or its output folder), or a "
        "Parquet/CSV/JSONL file with lat and lon",
        path="in",
    )
    output: str = option(help="GeoJSON file to write (local or s3://)", path="out")
