"""Per-batch stages shared by the bulk jobs: load images (fetch, hash, EXIF, decode), actor pools.

Batches are ``dict[str, numpy.ndarray]`` (``batch_format="numpy"``). A stage never raises for a
bad row: it sets ``status="error"`` and a short ``error`` reason on that row and moves on, and
later stages skip rows that are already in error. That is how "rows in = ok + error" holds.

Decoded pixels travel as raw bytes with their ``height`` and ``width`` (plain Arrow binary,
whatever each image's shape); :func:`images_of` turns them back into arrays in the model actor.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import replace
from typing import Any

import numpy as np

from georay.data.exif import gps_from_bytes
from georay.data.fetch import FetchPolicy, fetch_all
from georay.data.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageDecodeError,
    centre_crop,
    decode_cover,
    decode_fit,
)
from georay.data.phash import perceptual_hash
from georay.pipeline import tally

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


def _fetch(
    batch: dict[str, np.ndarray], max_file_bytes: int, policy: FetchPolicy | None = None
) -> np.ndarray:
    """The encoded bytes of every ok row (read from ``uri`` unless the row carries them).

    The reads of a batch run concurrently with retries (:func:`georay.data.fetch.fetch_all`);
    their counts go to the job's tally (``summary.json`` ``fetch``).
    """
    n = len(batch["image_id"])
    data = np.empty(n, dtype=object)
    if "bytes" in batch:
        data[:] = list(batch["bytes"])
    policy = replace(policy or FetchPolicy(), max_bytes=max_file_bytes)
    ok = ok_mask(batch)
    todo = [i for i in range(n) if ok[i] and data[i] is None]
    results, counts = fetch_all([str(batch["uri"][i]) for i in todo], policy)
    for i, result in zip(todo, results, strict=True):
        if result.error is not None:
            set_error(batch, i, result.error)
        data[i] = result.data
    if todo:
        tally.add(counts)
    for i in range(n):
        if data[i] is not None and len(data[i]) > max_file_bytes and batch["status"][i] == OK:
            set_error(batch, i, f"file too large: {len(data[i])} bytes > {max_file_bytes}")
    return data


def _gps(data: bytes) -> tuple[float, float] | None:
    try:
        return gps_from_bytes(data)
    except Exception:  # a broken EXIF block must not fail a row the model can still see
        return None


def load_images(
    batch: dict[str, np.ndarray],
    *,
    side: int | None = None,
    max_pixels: int | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_file_bytes: int = 64 << 20,
    sha256: bool = False,
    phash: bool = False,
    exif_gps: bool = False,
    skip_exif_gps: bool = False,
    fetch: FetchPolicy | None = None,
) -> dict[str, np.ndarray]:
    """Fetch, optionally hash and read EXIF GPS, and decode every ok row of ``batch``.

    Parameters
    ----------
    side
        Decode to ``side`` x ``side`` (short side resized, centre crop: CLIP's geometry).
    max_pixels
        Otherwise decode with the aspect kept and at most this many pixels (a VLM's input).
    sha256, phash, exif_gps
        Add ``sha256`` of the encoded bytes, ``phash`` of the whole decoded view (before the
        crop), ``exif_lat`` / ``exif_lon`` (NaN without GPS).
    skip_exif_gps
        Rows whose EXIF has GPS get ``skip=True`` and are not decoded (their place is known).
    fetch
        How to read ``uri`` (:class:`FetchPolicy`); its size cap is ``max_file_bytes``.

    Returns the input columns without ``bytes``, plus ``pixels`` (raw RGB bytes, None on error
    rows), ``height``, ``width`` and the columns asked for.
    """
    n = len(batch["image_id"])
    data = _fetch(batch, max_file_bytes, fetch)
    pixels = np.empty(n, dtype=object)
    height, width = np.zeros(n, dtype=np.int32), np.zeros(n, dtype=np.int32)
    lat, lon = np.full(n, np.nan), np.full(n, np.nan)
    skip = np.zeros(n, dtype=bool)
    hashes = np.full(n, None, dtype=object)
    ok = ok_mask(batch)
    for i in np.flatnonzero(ok):
        gps = _gps(data[i]) if exif_gps or skip_exif_gps else None
        if gps is not None:
            lat[i], lon[i] = gps
            if skip_exif_gps:
                skip[i] = True
                continue
        try:
            if side is not None:
                whole = decode_cover(data[i], side, max_image_pixels=max_image_pixels)
                image = centre_crop(whole, side)
            else:
                whole = image = decode_fit(data[i], max_pixels, max_image_pixels=max_image_pixels)
        except ImageDecodeError as err:
            set_error(batch, i, err.reason)
            continue
        if phash:  # from the pixels decoded anyway: no second decode
            hashes[i] = perceptual_hash(whole)
        height[i], width[i] = image.shape[:2]
        pixels[i] = image.tobytes()
    out = {k: v for k, v in batch.items() if k != "bytes"}
    out.update(pixels=pixels, height=height, width=width)
    if sha256:
        out["sha256"] = np.array(
            [hashlib.sha256(d).hexdigest() if d is not None else None for d in data], dtype=object
        )
    if phash:
        out["phash"] = hashes
    if exif_gps or skip_exif_gps:
        out.update(exif_lat=lat, exif_lon=lon)
    if skip_exif_gps:
        out["skip"] = skip
    return clean_status(out)


def images_of(batch: dict[str, np.ndarray], rows) -> list[np.ndarray]:
    """The decoded ``(h, w, 3)`` uint8 images of ``rows`` (indices of ok rows)."""
    return [
        np.frombuffer(batch["pixels"][i], np.uint8).reshape(
            int(batch["height"][i]), int(batch["width"][i]), 3
        )
        for i in rows
    ]


def actor_pool_options(pool: Any) -> dict[str, Any]:
    """``map_batches`` keyword arguments for a model stage on the fixed actor pool of ``pool``
    (:class:`~georay.pipeline.settings.PoolSettings`: models are expensive to load, so it does
    not autoscale). Without a GPU, the pool leaves one CPU free: read and decode tasks need it,
    and a pool holding every CPU deadlocks Ray Data on small machines (DESIGN)."""
    import ray

    resources = ray.cluster_resources()
    gpus = pool.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    cpus = pool.cpus_per_actor
    if cpus is None:
        spare = max(resources.get("CPU", 1) - 1, 0.5)
        cpus = 1.0 if gpus else min(1.0, spare / pool.num_actors)
    return {
        "compute": ray.data.ActorPoolStrategy(size=pool.num_actors),
        "num_cpus": cpus,
        "num_gpus": gpus,
        "batch_size": pool.batch_size,
    }


def node_cpus() -> float:
    """CPUs Ray reports for the node this process runs on.

    Not ``os.cpu_count()``: in a container that is the host's count (64 on a pod granted 4), and
    on a node started with ``ray start --num-cpus N`` it ignores N. Outside Ray: the CPUs this
    process may run on.
    """
    import ray

    if ray.is_initialized():
        here = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node["NodeID"] == here and node["Alive"]:
                return float(node["Resources"].get("CPU", 1.0))
    return float(len(os.sched_getaffinity(0)))


def actors_per_node(num_actors: int) -> int:
    """Actors of a pool that share one node: the pool spread evenly over the CPU nodes."""
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    return max(1, math.ceil(num_actors / max(1, len(nodes))))


def actor_threads(requested: int, per_node: int) -> int:
    """torch intra-op threads of a CPU model actor: ``requested``, else its node's CPUs (as Ray
    reports them) divided by the pool's actors on that node.

    More threads than the actor's CPU reservation on purpose: the reservation leaves CPUs to the
    decode tasks for scheduling, but Ray Data only runs decode as fast as the actors consume, so
    with a model that costs far more than decoding (ViT-B/32: 30x) those CPUs would idle.
    """
    return requested or max(1, int(node_cpus() // max(1, per_node)))
