"""The model stage of ``curate fit`` and ``curate score``: a Ray Data actor around the encoder.

One class serves both jobs: it embeds the uint8 pixels of ``ok`` rows with the frozen encoder,
and optionally scores them with a head (``score``) and labels them with an ADE20K segmenter
(``fit`` without manifest fractions). Error rows pass through with null outputs.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np

from georay.data.ade20k import locatability
from georay.pipeline.settings import PoolSettings
from georay.pipeline.stages import actor_threads, clean_status, images_of, load_images, ok_mask


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder to build: open_clip name, pretrained tag/path, init seed, saved weights."""

    model_name: str = "tiny"
    pretrained: str | None = None
    seed: int = 0
    weights: str | None = None  # encoder.pt of a random-init encoder, saved with its head

    @property
    def id(self) -> str:
        from georay.models.clip import encoder_id

        return encoder_id(self.model_name, self.pretrained)

    def to_dict(self) -> dict:
        return asdict(self)


def load_encoder(spec: EncoderSpec, device: str = "cpu"):
    """Build the frozen encoder of ``spec`` (and load its saved weights); -> (visual, Preprocess)."""
    import torch

    from georay.data.storage import read_bytes
    from georay.models.clip import load_clip

    visual, pre = load_clip(spec.model_name, spec.pretrained, seed=spec.seed, device=device)
    if spec.weights:
        state = torch.load(io.BytesIO(read_bytes(spec.weights)), map_location=device)
        visual.load_state_dict(state)
    return visual, pre


class Embedder:
    """Ray Data callable class: decoded ``pixels`` -> ``embedding`` [+ ``locatability``, teacher].

    ``encoder`` is an :class:`EncoderSpec` as a dict; a fitted ``head`` adds ``locatability``
    (NaN on error rows), a ``segmenter`` ``teacher_locatability``. ``threads``: torch threads
    (:func:`~georay.pipeline.stages.actor_threads`). ``decode``: :func:`load_images` arguments,
    to fetch and decode in this actor between model calls (``--decode actor``).
    """

    def __init__(
        self,
        encoder: dict,
        head: str | None = None,
        segmenter: str | None = None,
        keep_embedding: bool = True,
        threads: int = 0,
        per_node: int = 1,
        model_id: str = "",
        decode: dict | None = None,
    ):
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(actor_threads(threads, per_node))
        self.visual, self.pre = load_encoder(EncoderSpec(**encoder), self.device)
        self.head = None
        if head:
            from georay.curate.head import load_head

            self.head = load_head(head)
        self.segmenter = None
        if segmenter:
            from georay.models.segmenter import load_segmenter

            self.segmenter = load_segmenter(segmenter, self.device)
        self.keep_embedding = keep_embedding
        self.model_id = model_id
        self.decode = decode

    def _encoder_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels at the encoder's side (the decode side is larger when a segmenter runs too)."""
        if pixels.shape[1] == self.pre.side:
            return pixels
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(self.pre.side,) * 2, mode="bilinear", antialias=True)
        return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from georay.models.clip import encode

        if self.decode is not None:
            batch = load_images(batch, **self.decode)
        ok = ok_mask(batch)
        rows = np.flatnonzero(ok)
        pixels = np.stack(images_of(batch, rows)) if len(rows) else None
        for key in ("pixels", "height", "width"):
            batch.pop(key)
        n = len(ok)
        emb = None
        if pixels is not None:
            emb_ok = encode(self.visual, self.pre, self._encoder_pixels(pixels))
            emb = np.zeros((n, emb_ok.shape[1]), dtype=np.float32)
            emb[ok] = emb_ok
        if self.head is not None:
            scores = np.full(n, np.nan, dtype=np.float32)
            if emb is not None:
                scores[ok] = self.head.predict(emb[ok])
            batch["locatability"] = scores
            batch["model"] = np.array([self.model_id] * n, dtype=object)
        if self.segmenter is not None:
            from georay.models.segmenter import class_fractions

            teacher = np.full(n, np.nan, dtype=np.float32)
            if pixels is not None:
                teacher[ok] = locatability(class_fractions(*self.segmenter, pixels))
            batch["teacher_locatability"] = teacher
        if self.keep_embedding and emb is not None:
            batch["embedding"] = emb
        return clean_status(batch)


def embed_dataset(
    ds,
    encoder: EncoderSpec,
    side: int,
    pool: PoolSettings,
    *,
    head: str | None = None,
    segmenter: str | None = None,
    keep_embedding: bool = True,
    sha256: bool = False,
    phash: bool = False,
    model_id: str = "",
    decode: str = "tasks",
):
    """Pipeline rows -> load images at ``side`` -> the :class:`Embedder` pool.

    ``decode``: ``"tasks"`` fetches and decodes in CPU tasks beside the actors (in parallel:
    what a GPU or a cheap encoder needs); ``"actor"`` does it in each actor between model calls
    (a CPU encoder then has the node to itself: decoding is ~3% of a ViT-B/32's work, but decode
    tasks running ahead during the actor's start-up doubled it on a loaded 2-CPU node).
    """
    from georay import pipeline as pl

    options = pl.actor_pool_options(pool)
    in_actor = decode == "actor"
    load = {"side": side, "sha256": sha256, "phash": phash,
            "max_image_pixels": pool.max_image_pixels, "max_file_bytes": pool.max_file_bytes,
            "fetch": pool.fetch_policy()}  # fmt: skip
    if not in_actor:
        ds = pl.load_stage(ds, pool, side=side, sha256=sha256, phash=phash)
    return ds.map_batches(
        Embedder,
        fn_constructor_kwargs={
            "encoder": encoder.to_dict(),
            "head": head,
            "segmenter": segmenter,
            "keep_embedding": keep_embedding,
            "threads": pool.torch_threads,
            "per_node": pl.actors_per_node(pool.num_actors),
            "model_id": model_id,
            "decode": load if in_actor else None,
        },
        batch_format="numpy",
        **options,
    )
