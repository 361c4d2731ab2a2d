"""The flags every bulk job shares, with the same names in every job (``georay curate score``,
``georay predict``, the baselines): where to read and write, and how the model stage runs."""

from __future__ import annotations

from dataclasses import dataclass

from georay.config import Batched, Config, RayConfig, at_least, option
from georay.data.fetch import FetchPolicy
from georay.data.images import DEFAULT_MAX_IMAGE_PIXELS


@dataclass(kw_only=True)
class PoolSettings(RayConfig, Batched):
    """How a job reads images and runs its model: CPU tasks decode, one actor pool infers."""

    num_actors: int = option(1, help="model actors (one model copy each)")
    cpus_per_actor: float | None = option(
        None,
        help="CPUs reserved per actor (default: 1 with a GPU, else a share that leaves one CPU "
        "for reading and decoding)",
        aliases=("--actor-cpus", "--num-cpus"),
    )
    gpus_per_actor: float | None = option(
        None, help="GPUs per actor (default: 1 when the cluster has GPUs)", aliases=("--num-gpus",)
    )
    decode_cpus: float = option(
        0.5, help="CPUs per read+decode task (< 1 packs several per core)", aliases=("--load-cpus",)
    )
    max_file_bytes: int = option(64 << 20, help="larger files become error rows")
    max_image_pixels: int = option(
        DEFAULT_MAX_IMAGE_PIXELS, help="images with more pixels become error rows"
    )
    # Object stores answer in 20-50 ms: 32 reads in flight keep a task's block of 64 moving.
    fetch_concurrency: int = option(32, help="image reads in flight per read task")
    fetch_attempts: int = option(
        4, help="tries per image on a transient read error (5xx, throttling, reset, timeout)"
    )
    fetch_backoff_s: float = option(0.2, help="wait before the first retry, doubled per retry")
    fetch_timeout_s: float = option(30.0, help="deadline of one image read (S3 or http(s))")
    url_host_concurrency: int = option(8, help="http(s) reads in flight to one host per task")
    url_allow_networks: list[str] = option(
        factory=list,
        help="CIDR networks that http(s) image URLs may reach besides public addresses "
        "(e.g. 10.0.0.0/8 for an internal mirror); loopback and private addresses are refused "
        "otherwise",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "num_actors", "max_file_bytes", "max_image_pixels")
        for name in ("cpus_per_actor", "gpus_per_actor"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.cpus_per_actor == 0 and not self.gpus_per_actor:
            raise ValueError("cpus_per_actor = 0 needs gpus_per_actor > 0")
        if self.decode_cpus <= 0:
            raise ValueError(f"decode_cpus must be > 0, got {self.decode_cpus}")
        at_least(self, 1, "fetch_concurrency", "fetch_attempts", "url_host_concurrency")
        if self.fetch_timeout_s <= 0 or self.fetch_backoff_s < 0:
            raise ValueError("fetch_timeout_s must be > 0 and fetch_backoff_s >= 0")
        try:
            self.fetch_policy()
        except ValueError as err:
            raise ValueError(f"url_allow_networks: {err}") from None

    def fetch_policy(self) -> FetchPolicy:
        """How the load stage reads images (:class:`georay.data.fetch.FetchPolicy`)."""
        return FetchPolicy(
            concurrency=self.fetch_concurrency,
            attempts=self.fetch_attempts,
            backoff_s=self.fetch_backoff_s,
            timeout_s=self.fetch_timeout_s,
            max_bytes=self.max_file_bytes,
            host_concurrency=self.url_host_concurrency,
            allow_networks=tuple(self.url_allow_networks),
        )


@dataclass(kw_only=True)
class BulkSettings(PoolSettings):
    """A bulk job: every input row to exactly one committed output row, resumable."""

    input: str = option(
        help="manifest (Parquet/CSV/JSONL), folder or s3:// prefix of images, or WebDataset "
        "tar shard(s)",
        path="in",
    )
    output: str = option(
        help="output folder or s3:// prefix; rerun the same command to resume", path="out"
    )
    input_columns: str = option(
        "",
        help="columns of an --input table in no known layout, as id=COL,lat=COL,lon=COL"
        "[,country=COL,city=COL,uri=COL] (georay manifests, OSV-5M, Im2GPS3k / MP-16 and "
        "YFCC4k / YFCC26k tables are recognised by their columns)",
    )
    image_root: str = option(
        "",
        help="folder or s3:// prefix of a benchmark --input table's images (default: "
        "images/<table name>/ next to the table, else images/)",
        path="in",
    )
    block_rows: int = option(64, help="input rows per Ray Data block (the unit of scheduling)")
    rows_per_part: int = option(1024, help="rows per committed output part")
    retry_errors: bool = option(
        False,
        help="on a rerun, read again the rows whose committed error was a read failure "
        "(missing file, read failed) and replace their rows",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 1, "block_rows", "rows_per_part")


@dataclass(kw_only=True)
class TorchThreads(Config):
    """An actor pool whose model runs in torch on the actor's own threads (curate, baselines)."""

    torch_threads: int = option(
        0,
        help="torch CPU threads per actor; 0 = the CPUs Ray reports for its node divided by the "
        "pool's actors per node",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, 0, "torch_threads")
