"""The predictor: images in, DESIGN "predictions" rows out. Shared by the bulk job and the API.

It loads a base model plus the ordered adapters of a training artifact (or a base model alone)
through :func:`georay.models.vlm.load_vlm`, asks every image the shared inference question in
batches (left padding, so a batch decodes exactly like single images; greedy, so results are
reproducible), parses the answers, places them through the gazetteer and adds the H3
cell. No Ray here: Ray Data actors and Serve replicas each hold one ``Predictor``.
"""

from __future__ import annotations

import logging

import numpy as np

from georay.data.images import DEFAULT_MAX_IMAGE_PIXELS, ImageDecodeError, decode_fit
from georay.models.vlm import processor_max_pixels
from georay.predict.config import ModelSettings
from georay.predict.place import confidence_rows, plan_confidence, rows_from_texts
from georay.protocol.predictions import ANSWER_FIELDS, error_row
from georay.protocol.prompts import INFERENCE_QUESTION

log = logging.getLogger(__name__)

__all__ = ["ANSWER_FIELDS", "ModelSettings", "Predictor", "default_question", "error_row"]


def default_question(model: str) -> str:
    """The question to ask ``model``: what its artifact's last stage was trained on, if any.

    A 7B model answers the paper's combined inference question after both stages; a tiny
    model answers only the question it was trained on, so an artifact that records one is
    asked that. Base models (no artifact) get :data:`INFERENCE_QUESTION`.
    """
    from georay.models.artifact import is_artifact, trained_questions
    from georay.models.vlm import localize

    local = localize(model)  # cached: load_vlm fetched it already
    questions = trained_questions(local) if is_artifact(local) else []
    return questions[0] if questions else INFERENCE_QUESTION


class Predictor:
    """A loaded model that turns RGB images into predictions rows.

    Parameters
    ----------
    settings : ModelSettings
        Model location and generation settings.
    """

    def __init__(self, settings: ModelSettings):
        import torch

        from georay.geo.gazetteer import get_gazetteer
        from georay.models.vlm import load_vlm

        self.settings = settings
        device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = settings.dtype or ("bfloat16" if str(device).startswith("cuda") else "float32")
        self.model, self.processor = load_vlm(settings.model, device=device, dtype=dtype)
        self.question = settings.question or default_question(settings.model)
        self.max_pixels = settings.max_pixels or processor_max_pixels(self.processor)
        self.gazetteer = get_gazetteer()
        self.model_id = settings.model
        self.calibration = settings.load_calibration()

    def load_image(
        self, data: bytes, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    ) -> np.ndarray:
        """Decode image bytes at the size the model will see; raises ImageDecodeError."""
        return decode_fit(data, self.max_pixels, max_image_pixels=max_image_pixels)

    def generate(self, images: list[np.ndarray]) -> list[str]:
        """Greedy answers to the question, one ``generate`` call per ``batch_size`` images.

        Left padding makes an image get the same answer alone or in a batch.
        """
        from georay.models.vlm import generate_answers

        texts: list[str] = []
        for start in range(0, len(images), self.settings.batch_size):
            chunk = images[start : start + self.settings.batch_size]
            texts += generate_answers(self.model, self.processor, chunk, self.question,
                                      max_new_tokens=self.settings.max_new_tokens)  # fmt: skip
        return texts

    def decode(self, tokens: list[int]) -> str:
        return self.processor.tokenizer.decode(tokens, skip_special_tokens=True)

    def generate_rows(self, images: list[np.ndarray]) -> list[dict]:
        """Rows of one ``generate`` batch; with confidence, the answers' token probabilities
        and one more ``generate`` call completing every row's alternatives (in ``batch_size``
        chunks)."""
        if not self.settings.confidence:
            return self.rows_from_texts(list(self.generate(images)))
        from georay.models.vlm import continue_scored, encode_prompts, generate_scored

        s = self.settings
        batch = encode_prompts(self.processor, images, [self.question] * len(images))
        scored = generate_scored(self.model, self.processor, batch, s.max_new_tokens, s.top_k)
        plan = plan_confidence(scored, self.decode, s.top_k)
        rest = []
        if plan.branches:  # one call: a wider batch costs little more than a narrower one
            budget = max(b.max_new_tokens for b in plan.branches)
            rest = continue_scored(self.model, self.processor, batch,
                                   [b.row for b in plan.branches],
                                   [b.prefix for b in plan.branches], budget)  # fmt: skip
        return confidence_rows(plan, rest, self.decode, top_k=s.top_k,
                               h3_resolution=s.h3_resolution, model_id=self.model_id,
                               calibration=self.calibration, min_confidence=s.min_confidence,
                               gazetteer=self.gazetteer)  # fmt: skip

    def predict(self, images: list[np.ndarray]) -> list[dict]:
        """Predictions rows (all of :data:`ANSWER_FIELDS`) for decoded RGB images.

        A batch that fails in ``generate`` is retried image by image, so one bad input becomes
        one error row instead of failing its neighbours.
        """
        rows: list[dict] = []
        for start in range(0, len(images), self.settings.batch_size):
            chunk = images[start : start + self.settings.batch_size]
            try:
                rows += self.generate_rows(chunk)
            except Exception as err:
                log.warning("batch of %d failed (%s); retrying one by one", len(chunk), err)
                for image in chunk:
                    try:
                        rows += self.generate_rows([image])
                    except Exception as one_err:
                        rows += self.rows_from_texts([one_err])
        return rows

    def rows_from_texts(self, texts: list[str | Exception]) -> list[dict]:
        """Parse, resolve and cell-index generated texts (:func:`~georay.predict.place.rows_from_texts`)."""
        return rows_from_texts(texts, h3_resolution=self.settings.h3_resolution,
                               model_id=self.model_id, gazetteer=self.gazetteer)  # fmt: skip

    def predict_bytes(self, blobs: list[bytes]) -> list[dict]:
        """Rows for encoded images; undecodable ones become ``status="error"`` rows."""
        rows: list[dict | None] = [None] * len(blobs)
        images, index = [], []
        for i, data in enumerate(blobs):
            try:
                images.append(self.load_image(data))
                index.append(i)
            except ImageDecodeError as err:
                rows[i] = error_row(err.reason, self.model_id)
        for i, row in zip(index, self.predict(images), strict=True):
            rows[i] = row
        return rows  # type: ignore[return-value]
