"""The generation engines behind ``georay predict`` and ``georay serve``, chosen here, once.

An engine is asked three things (:class:`Engine`): to refuse in the driver, in seconds, what it
cannot load; the bulk job's model stages (decoded rows in, predictions rows out, on Ray Data);
and the model a Serve replica holds (:class:`Online`). :data:`ENGINES` maps ``--engine`` to one:

``hf``
    transformers' ``generate`` (:class:`~georay.predict.predictor.Predictor`): a Ray Data actor
    pool in bulk; online, ``@serve.batch`` gathers callers into one ``generate`` call.
``vllm``
    vLLM (:mod:`georay.predict.vllm_engine`): Ray's batch-LLM stack in bulk
    (:mod:`georay.predict.vllm_bulk`); online, its async engine batches across callers itself.

Either way the model's words become rows through :mod:`georay.predict.place` and
:mod:`georay.predict.rows`, so both engines write the same rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from georay import pipeline as pl
from georay.pipeline.stages import images_of
from georay.predict.config import ModelSettings, PredictConfig
from georay.predict.rows import predictions_table, rows_of


class Online(Protocol):
    """What a Serve replica holds: the model, loaded, answering one image per call.

    Attributes
    ----------
    max_pixels
        Images are decoded at most this large (the processor's cap, or the setting).
    conversations
        True: it answers a caller's own chat (system/user/assistant turns, text and images,
        streamed) through :meth:`chat_prompt` and :meth:`stream`. False: chat requests are
        its one question about the last image.
    """

    max_pixels: int | None
    conversations: bool

    async def answer(self, image: np.ndarray) -> dict:
        """The answer fields (:data:`~georay.protocol.predictions.ANSWER_FIELDS`) of one
        decoded image; raises :class:`~georay.errors.UserError` when the engine refuses the
        input (the API says why with a 400, and keeps serving)."""

    def chat_prompt(self, messages: list[dict]) -> str:
        """The chat-template text of rendered messages, ending with the assistant cue."""

    def stream(self, prompt: str, images: list, max_tokens: int) -> AsyncIterator:
        """``(text increment, finish reason or None)`` as the answer is generated."""

    def close(self) -> None:
        """Free what the engine holds beside this process (vLLM's engine core)."""


class Engine(Protocol):
    """One generation engine, as ``georay predict`` and ``georay serve`` use it."""

    def check(self, settings: ModelSettings) -> None:
        """In the driver, before Ray: raise :class:`~georay.errors.UserError` for a model this
        engine cannot load, instead of failing in a restarting actor or replica."""

    def bulk_stages(self, cfg: PredictConfig) -> Callable[[Any], Any]:
        """The bulk job's stages (pipeline rows -> predictions rows), prepared in the driver."""

    def online(
        self, settings: ModelSettings, *, max_batch_size: int, batch_wait_timeout_s: float
    ) -> Online:
        """The model of one Serve replica."""


def _decoded(ds, cfg: PredictConfig, max_pixels: int | None):
    """Rows decoded at the size the model sees (as in training and serving: the same pixels
    whichever path an image takes), with their EXIF GPS (and ``skip``)."""
    return pl.load_stage(
        ds, cfg, max_pixels=max_pixels, exif_gps=True, skip_exif_gps=cfg.skip_exif_gps
    )


class PredictActor:
    """A Ray Data actor holding one :class:`Predictor` (the HF engine); batches in, rows out."""

    def __init__(self, settings: dict):
        from georay.predict.predictor import Predictor

        self.predictor = Predictor(ModelSettings(**settings))

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["image_id"])
        skip = np.asarray(batch.get("skip", np.zeros(n, bool)), dtype=bool)
        todo = np.flatnonzero(pl.ok_mask(batch) & ~skip)
        answers = dict(zip(todo.tolist(), self.predictor.predict(images_of(batch, todo)),
                           strict=True))  # fmt: skip
        return predictions_table(rows_of(batch), answers, self.predictor.model_id, method="vlm",
                                 h3_resolution=self.predictor.settings.h3_resolution)  # fmt: skip


class HfOnline:
    """:class:`Online` on transformers: concurrent callers' images batched into one
    ``generate`` call (``@serve.batch``), run in a worker thread so the replica keeps accepting
    and decoding requests meanwhile."""

    conversations = False

    def __init__(
        self, settings: ModelSettings, *, max_batch_size: int, batch_wait_timeout_s: float
    ):
        from ray import serve

        from georay.predict.predictor import Predictor

        # One Serve batch is one generate() call.
        self.predictor = Predictor(dataclasses.replace(settings, batch_size=max_batch_size))
        self.max_pixels = self.predictor.max_pixels

        async def generate_batch(images: list) -> list[dict]:
            return await asyncio.to_thread(self.predictor.predict, images)

        self.answer = serve.batch(
            max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s
        )(generate_batch)

    def close(self) -> None:
        pass


class HfEngine:
    """:class:`Engine` on transformers' ``generate``."""

    def check(self, settings: ModelSettings) -> None:
        pass  # transformers loads whatever the artifact holds

    def bulk_stages(self, cfg: PredictConfig) -> Callable[[Any], Any]:
        from georay.models.vlm import load_processor, processor_max_pixels

        settings = dataclasses.asdict(ModelSettings.of(dataclasses.asdict(cfg)))

        def stages(ds):
            max_pixels = cfg.max_pixels or processor_max_pixels(load_processor(cfg.model))
            return _decoded(ds, cfg, max_pixels).map_batches(
                PredictActor,
                fn_constructor_kwargs={"settings": settings},
                batch_format="numpy",
                **pl.actor_pool_options(cfg),
            )

        return stages

    def online(
        self, settings: ModelSettings, *, max_batch_size: int, batch_wait_timeout_s: float
    ) -> Online:
        return HfOnline(
            settings, max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s
        )


class VllmEngine:
    """:class:`Engine` on vLLM."""

    def check(self, settings: ModelSettings) -> None:
        from georay.predict.vllm_engine import check_servable

        check_servable(settings)

    def bulk_stages(self, cfg: PredictConfig) -> Callable[[Any], Any]:
        from georay.predict.vllm_bulk import vllm_stages
        from georay.predict.vllm_engine import resolve_model

        # In the driver, before Ray and the job record: exports an artifact once, and refuses
        # what vLLM cannot load in seconds rather than in a restarting engine actor.
        model = resolve_model(cfg)
        return lambda ds: vllm_stages(_decoded(ds, cfg, model.max_pixels), cfg, model)

    def online(
        self, settings: ModelSettings, *, max_batch_size: int, batch_wait_timeout_s: float
    ) -> Online:
        from georay.predict.vllm_engine import AsyncVllm

        # vLLM batches continuously across callers by itself: no @serve.batch.
        return AsyncVllm(settings)


ENGINES: dict[str, Engine] = {"hf": HfEngine(), "vllm": VllmEngine()}
