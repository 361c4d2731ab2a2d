"""Per-batch stages: fetch bytes, decode to uint8 pixels, and actor-pool sizing.

Batches are ``dict[str, numpy.ndarray]`` (``batch_format="numpy"``). A stage never raises for a
bad row: it sets ``status="error"`` and a short ``error`` reason on that row and moves on, and
later stages skip rows that are already in error. That is how "rows in = ok + error" holds.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from georay.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, open_image
from georay.data.storage import read_bytes

OK, ERROR = "ok", "error"


def ok_mask(batch: dict[str, np.ndarray]) -> np.ndarray:
    """Boolean mask of rows still ``ok``."""
    return np.asarray(batch["status"]) == OK


def _text(values) -> np.ndarray:
    """Object array of ``str`` or ``None``: an all-null column comes back from Arrow as NaNs,
    and a NaN mixed with strings would not convert back to an Arrow string column."""
    return np.array([v if isinstance(v, str) else None for v in values], dtype=object)


def set_error(batch: dict[str, np.ndarray], i: int, reason: str) -> None:
    """Mark row ``i`` of ``batch`` as failed with ``reason`` (in place)."""
    for key in ("status", "error"):
        if batch[key].dtype != object:
            batch[key] = batch[key].astype(object)
    batch["status"][i] = ERROR
    batch["error"][i] = reason


def clean_status(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``status`` / ``error`` as object arrays of ``str`` / ``None`` (what every stage returns)."""
    batch["status"], batch["error"] = _text(batch["status"]), _text(batch["error"])
    return batch


def fetch_bytes(
    batch: dict[str, np.ndarray], *, sha256: bool = False, max_bytes: int = 64 << 20
) -> dict[str, np.ndarray]:
    """Add ``bytes`` (read from ``uri`` where not already present) and optionally ``sha256``.

    Missing files, unreadable objects and files over ``max_bytes`` become error rows.
    """
    n = len(batch["image_id"])
    data = np.empty(n, dtype=object)
    if "bytes" in batch:
        data[:] = list(batch["bytes"])
    ok = ok_mask(batch)
    for i in range(n):
        if not ok[i] or data[i] is not None:
            continue
        uri = str(batch["uri"][i])
        try:
            data[i] = read_bytes(uri)
        except FileNotFoundError:
            set_error(batch, i, f"missing file: {uri}")
        except Exception as err:  # S3 and OS errors come in many types
            set_error(batch, i, f"read failed: {type(err).__name__}: {err}")
    for i in range(n):
        if data[i] is not None and len(data[i]) > max_bytes and batch["status"][i] == OK:
            set_error(batch, i, f"file too large: {len(data[i])} bytes > max_bytes={max_bytes}")
    batch["bytes"] = data
    if sha256:
        batch["sha256"] = np.array(
            [hashlib.sha256(d).hexdigest() if d is not None else None for d in data], dtype=object
        )
    return clean_status(batch)


def _cover_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(w, h) with the short side = ``side`` and the aspect ratio kept (open_clip's Resize)."""
    scale = side / min(width, height)
    return max(side, round(width * scale)), max(side, round(height * scale))


def decode_square(data: bytes, side: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode to ``(side, side, 3)`` uint8: resize the short side to ``side``, centre crop.

    The same geometry as open_clip's ``Resize(side) + CenterCrop(side)``, but through JPEG draft
    mode (DCT scaling) and with no float conversion: normalisation happens batched in the actor.
    """
    img = open_image(data, max_pixels=max_pixels)
    width, height = img.size
    if img.format in ("JPEG", "MPO") and img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
        width, height = height, width  # EXIF rotation by 90 degrees swaps the axes
    w, h = _cover_size(width, height, side)
    pixels = decode_image(data, (w, h), max_pixels=max_pixels)
    top, left = (h - side) // 2, (w - side) // 2
    return pixels[top : top + side, left : left + side]


def decode_images(
    batch: dict[str, np.ndarray], *, side: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, np.ndarray]:
    """Replace ``bytes`` with ``pixels``: ``(n, side, side, 3)`` uint8 (zeros on error rows)."""
    n = len(batch["image_id"])
    pixels = np.zeros((n, side, side, 3), dtype=np.uint8)
    ok = ok_mask(batch)
    for i in range(n):
        if not ok[i]:
            continue
        try:
            pixels[i] = decode_square(batch["bytes"][i], side, max_pixels=max_pixels)
        except ImageDecodeError as err:
            set_error(batch, i, err.reason)
    out = {k: v for k, v in batch.items() if k != "bytes"}
    out["pixels"] = pixels
    return clean_status(out)


def actor_pool_options(
    num_actors: int = 1, *, num_gpus: float | None = None, num_cpus: float | None = None
) -> dict[str, Any]:
    """``map_batches`` keyword arguments for a model stage on an actor pool.

    Parameters
    ----------
    num_actors
        Pool size (fixed: models are expensive to load, so the pool does not autoscale).
    num_gpus
        GPUs per actor; ``None`` = 1 when the cluster has GPUs, else 0.
    num_cpus
        CPUs per actor; ``None`` = 1 with a GPU, else a share of the cluster's CPUs that
        always leaves one CPU free. Read and decode tasks need that CPU: a pool holding every
        CPU deadlocks Ray Data on small machines (DESIGN, toolchain facts).
    """
    import ray

    resources = ray.cluster_resources()
    if num_gpus is None:
        num_gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    if num_cpus is None:
        spare = max(resources.get("CPU", 1) - 1, 0.5)
        num_cpus = 1.0 if num_gpus else min(1.0, spare / num_actors)
    return {
        "compute": ray.data.ActorPoolStrategy(size=num_actors),
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
    }
