"""Settings of ``georay serve`` and of the serve config YAML's ``args`` (one flag per field)."""

from __future__ import annotations

from dataclasses import dataclass

from georay.config import RayConfig, option
from georay.data.images import DEFAULT_MAX_IMAGE_PIXELS
from georay.predict.config import ModelSettings


@dataclass(kw_only=True)
class ServeConfig(RayConfig, ModelSettings):
    """Serve the model over HTTP: the model settings plus the server, replicas and limits.

    ``batch_size`` is the largest dynamic batch (hf: ``@serve.batch``; one batch is one
    ``generate()`` call).
    """

    ALIASES = {"batch_size": ("--max-batch-size",)}

    host: str = option("127.0.0.1", help="HTTP bind address")
    port: int = option(8000, help="HTTP port")
    route_prefix: str = option("/", help="URL prefix of the app")
    app_name: str = option("georay", help="Serve application name")
    num_replicas: int = option(1, help="model replicas")
    cpus_per_replica: float = option(1.0, help="CPUs per replica", aliases=("--num-cpus",))
    gpus_per_replica: float | None = option(
        None, help="GPUs per replica (default: 1 if the cluster has GPUs)", aliases=("--num-gpus",)
    )
    batch_wait_timeout_s: float = option(0.02, help="hf: how long a batch waits to fill")
    max_ongoing_requests: int | None = option(
        None,
        help="requests in flight per replica (default: 2 * batch_size with hf; 64 with "
        "vllm, whose engine batches whatever is in flight)",
    )
    max_queued_requests: int = option(64, help="queued requests before the proxy answers 503")
    max_request_bytes: int = option(16 << 20, help="largest request body (413 beyond)")
    max_image_pixels: int = option(
        DEFAULT_MAX_IMAGE_PIXELS, help="images with more pixels are refused (413)"
    )
    api_key_env: str | None = option(
        None,
        help="name of an environment variable holding the API key; when set, requests need "
        "'Authorization: Bearer KEY' or 'X-API-Key: KEY' (default: no auth)",
    )
    allow_url_fetch: bool = option(False, help="accept image_url (public http(s) hosts only)")
    url_timeout_s: float = option(5.0, help="image URL fetch deadline")
    url_max_bytes: int = option(10 << 20, help="largest image URL body")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_ongoing_requests is None:
            self.max_ongoing_requests = 64 if self.engine == "vllm" else 2 * self.batch_size
        if self.max_ongoing_requests < self.batch_size:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= batch_size "
                f"({self.batch_size}): @serve.batch never exceeds max_ongoing_requests"
            )
        if self.num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {self.num_replicas}")
        if self.max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be >= 1024, got {self.max_request_bytes}")
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"route_prefix must start with '/', got {self.route_prefix!r}")
