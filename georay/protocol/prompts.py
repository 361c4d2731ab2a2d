"""The questions georay asks a vision-language model and the answers it trains it to give.

Defined once here and shared by knowledge (building conversations), train (the targets),
predict (the inference question) and the answer parser, so the format a model learns is the
format prediction parses. The wording follows the GeoReasoner paper; answers are Python-dict
literals with single quotes, as in the authors' SFT data: ``{'country': 'India', 'reasons': ...}``.
"""

from __future__ import annotations

# The tiny world's stand-in for pretraining: describe what is seen, never where (see georay.synth).
DESCRIBE_QUESTION = "Describe the street scene."
REASONING_QUESTION = "Which country is the image located? Explain the reason."
LOCATION_QUESTION = "Which country and city is the image located?"
INFERENCE_QUESTION = (
    "Which country and city is the image located? Explain the reason. "
    "Answer as {'country': ..., 'city': ..., 'reasons': ...}."
)

# Keys of the answer dicts, in the order they are written.
REASONING_KEYS = ("country", "reasons")
LOCATION_KEYS = ("country", "city")
INFERENCE_KEYS = ("country", "city", "reasons")

# Qwen-VL (the authors' fine-tuning format) inlines the image as a tagged path in the user turn.
QWEN_VL_IMAGE_TEMPLATE = "Picture 1: <img>{image}</img>\n{question}"


def format_answer(**fields: str | None) -> str:
    """Render an answer dict the way the model is trained to write it.

    >>> format_answer(country="Switzerland", city="Zurich")
    "{'country': 'Switzerland', 'city': 'Zurich'}"
    """
    return repr({key: ("" if value is None else str(value)) for key, value in fields.items()})


def reasoning_answer(country: str, reasons: str) -> str:
    """Stage-1 target: ``{'country': ..., 'reasons': ...}``."""
    return format_answer(country=country, reasons=reasons)


def location_answer(country: str, city: str) -> str:
    """Stage-2 target: ``{'country': ..., 'city': ...}``."""
    return format_answer(country=country, city=city)


def build_messages(question: str, answer: str | None = None) -> list[dict]:
    """Chat messages for one image and one question, plus the answer when training.

    The image is a ``{"type": "image"}`` placeholder: the processor receives the pixels
    separately, in placeholder order.

    >>> build_messages("Which country?", "{'country': 'Chile'}")[1]["role"]
    'assistant'
    """
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages
