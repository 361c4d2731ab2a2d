"""The predictor: images in, DESIGN "predictions" rows out. Shared by the bulk job and the API.

It loads a base model plus the ordered adapters of a training artifact (or a base model alone)
through :func:`georay.models.vlm.load_vlm`, asks every image the shared inference question in
batches (left padding, so a batch decodes exactly like single images; greedy, so results are
reproducible), parses the answers, places them through the gazetteer and adds the H3
cell. No Ray here: Ray Data actors and Serve replicas each hold one ``Predictor``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields

import numpy as np

from georay.data.answers import parse_answer
from georay.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, open_image
from georay.data.prompts import INFERENCE_QUESTION
from georay.predict.resolve import resolve_answer

log = logging.getLogger(__name__)

# The DESIGN "predictions" contract, plus country_code (ISO alpha-2 of the predicted country),
# resolution (which name placed the point: city | country | coords) and answer_error (why an ok
# row is not answered), all useful to evaluation.
PREDICTION_FIELDS = (
    "country",
    "country_code",
    "city",
    "lat",
    "lon",
    "h3",
    "reasons",
    "raw_text",
    "answered",
    "resolution",
    "answer_error",
    "status",
    "error",
    "model",
)


@dataclass(kw_only=True)
class ModelSettings:
    """How to load and ask the model; shared by ``georay predict`` and ``georay serve``."""

    model: str = field(
        metadata={
            "help": "training artifact dir (artifact.json: base model + adapters), or a base "
            "model dir / s3:// prefix / hub id"
        }
    )
    max_new_tokens: int = field(default=128, metadata={"help": "generation length limit"})
    batch_size: int = field(default=8, metadata={"help": "images per generate() call"})
    h3_resolution: int = field(default=5, metadata={"help": "H3 resolution of the h3 column"})
    question: str = field(
        default="",
        metadata={
            "help": "prompt asked per image (default: the question the artifact's last stage "
            "was trained on, else the paper's inference question)"
        },
    )
    device: str | None = field(
        default=None, metadata={"help": "torch device (default: cuda when present, else cpu)"}
    )
    dtype: str | None = field(
        default=None, metadata={"help": "torch dtype (default: bfloat16 on GPU, float32 on CPU)"}
    )
    max_pixels: int | None = field(
        default=None,
        metadata={
            "help": "downscale images to at most this many pixels before the processor "
            "(default: the processor's own max_pixels)"
        },
    )

    @classmethod
    def of(cls, values: dict, **overrides) -> ModelSettings:
        """The model settings among ``values`` (a stage config as a dict), with overrides."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**values, **overrides}.items() if k in names})

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must name a training artifact or a base model")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError(f"h3_resolution must be in 0..15, got {self.h3_resolution}")
        if self.max_pixels is not None and self.max_pixels < 28 * 28:
            raise ValueError(f"max_pixels must be >= 784, got {self.max_pixels}")


def error_row(error: str, model: str) -> dict:
    """A predictions row for an image that could not be predicted."""
    row = dict.fromkeys(PREDICTION_FIELDS)
    row.update(answered=False, status="error", error=error, model=model)
    return row


def fit_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int] | None:
    """The ``(width, height)`` to decode at so the image has at most ``max_pixels`` pixels.

    None when the image is already small enough (decode at full size). Keeping the aspect ratio
    lets the processor's own resize do no more work, and lets JPEG draft mode skip most of the
    decode for large photos.
    """
    if not max_pixels or width * height <= max_pixels:
        return None
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def decode_for_model(
    data: bytes, max_pixels: int | None, *, max_image_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode image bytes to RGB uint8, downscaled to at most ``max_pixels`` pixels.

    Raises
    ------
    ImageDecodeError
        Not an image, truncated, or over ``max_image_pixels`` (checked on the header).
    """
    img = open_image(data, max_pixels=max_image_pixels)
    width, height = img.size
    if img.format in ("JPEG", "MPO") and img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
        width, height = height, width  # decode_image's size is after EXIF rotation
    return decode_image(data, fit_size(width, height, max_pixels), max_pixels=max_image_pixels)


def _processor_max_pixels(processor) -> int | None:
    """The image processor's pixel cap (Qwen2-VL: ``size["longest_edge"]`` in transformers 5)."""
    image_processor = getattr(processor, "image_processor", None)
    for name in ("max_pixels",):
        value = getattr(image_processor, name, None)
        if value:
            return int(value)
    size = getattr(image_processor, "size", None)
    get = size.get if hasattr(size, "get") else (lambda key: getattr(size, key, None))
    value = get("max_pixels") or get("longest_edge")
    return int(value) if value else None


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
        self.max_pixels = settings.max_pixels or _processor_max_pixels(self.processor)
        self.gazetteer = get_gazetteer()
        self.model_id = settings.model

    def load_image(self, data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """Decode image bytes at the size the model will see; raises ImageDecodeError."""
        return decode_for_model(data, self.max_pixels, max_image_pixels=max_pixels)

    def encode(self, images: list[np.ndarray]) -> dict:
        """A left-padded generation batch from one processor call.

        The same tensors as :func:`georay.models.vlm.encode_prompts` (the builder training
        uses, which calls the processor once per image; a unit test holds the two equal), in
        one call: on CPU the per-image calls took a third of a 16-image batch's time.
        """
        from georay.models.vlm import as_rgb, prompt_text

        self.processor.tokenizer.padding_side = "left"
        prompt = prompt_text(self.processor, self.question)
        return self.processor(
            text=[prompt] * len(images),
            images=[as_rgb(image) for image in images],
            padding=True,
            return_tensors="pt",
        )

    def generate(self, images: list[np.ndarray]) -> list[str]:
        """Greedy answers to the question, one ``generate`` call per ``batch_size`` images.

        Left padding makes an image get the same answer alone or in a batch.
        """
        import torch

        texts: list[str] = []
        for start in range(0, len(images), self.settings.batch_size):
            batch = self.encode(images[start : start + self.settings.batch_size])
            batch = {k: v.to(self.model.device) for k, v in batch.items()}
            batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
            with torch.inference_mode():
                out = self.model.generate(
                    **batch, max_new_tokens=self.settings.max_new_tokens, do_sample=False
                )
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            texts.extend(self.processor.batch_decode(new_tokens, skip_special_tokens=True))
        return texts

    def predict(self, images: list[np.ndarray]) -> list[dict]:
        """Predictions rows (all of :data:`PREDICTION_FIELDS`) for decoded RGB images.

        A batch that fails in ``generate`` is retried image by image, so one bad input becomes
        one error row instead of failing its neighbours.
        """
        try:
            texts: list[str | Exception] = list(self.generate(images))
        except Exception as err:
            log.warning("batch of %d failed (%s); retrying one by one", len(images), err)
            texts = []
            for image in images:
                try:
                    texts.extend(self.generate([image]))
                except Exception as one_err:
                    texts.append(one_err)
        return self.rows_from_texts(texts)

    def rows_from_texts(self, texts: list[str | Exception]) -> list[dict]:
        """Parse, resolve and cell-index generated texts (an Exception gives an error row)."""
        from georay.geo.cells import latlng_to_cells

        rows = []
        for text in texts:
            if isinstance(text, Exception):
                rows.append(
                    error_row(f"generate failed: {type(text).__name__}: {text}", self.model_id)
                )
                continue
            answer = parse_answer(text)
            place = resolve_answer(answer, self.gazetteer)
            rows.append(
                {
                    "country": place.country,
                    "country_code": place.country_code,
                    "city": place.city,
                    "lat": place.lat,
                    "lon": place.lon,
                    "h3": None,
                    "reasons": answer.reasons,
                    "raw_text": text,
                    "answered": answer.answered and place.usable,
                    "resolution": place.level,
                    # Why an ok row is not answered (refusal, unknown place): kept apart from
                    # `error`, which is null on every ok row as in the other contracts.
                    "answer_error": answer.error or (None if place.usable else "place not found"),
                    "status": "ok",
                    "error": None,
                    "model": self.model_id,
                }
            )
        lat = np.array([np.nan if r["lat"] is None else r["lat"] for r in rows], dtype=float)
        lon = np.array([np.nan if r["lon"] is None else r["lon"] for r in rows], dtype=float)
        if len(rows):
            for row, cell in zip(
                rows, latlng_to_cells(lat, lon, self.settings.h3_resolution), strict=True
            ):
                row["h3"] = cell
        return rows

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
