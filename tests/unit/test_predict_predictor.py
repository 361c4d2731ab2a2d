"""The Predictor on the tiny Qwen2-VL: batching, error rows, parsing -> places -> H3 cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from georay.data.images import encode_jpeg, fit_size
from georay.geo.cells import latlng_to_cells
from georay.models.vlm import processor_max_pixels
from georay.predict.config import ModelSettings
from georay.predict.predictor import Predictor
from georay.protocol.predictions import ANSWER_FIELDS
from georay.protocol.prompts import format_answer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from georay.models.vlm import tiny_qwen2vl

    path = tmp_path_factory.mktemp("tiny")
    tiny_qwen2vl(save_dir=path, seed=0)
    return str(path)


@pytest.fixture(scope="module")
def predictor(tiny_dir):
    return Predictor(ModelSettings(model=tiny_dir, max_new_tokens=12, batch_size=4))


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(64, 96), (200, 120), (480, 640), (90, 90), (33, 300)]
    return [rng.integers(0, 255, (*sizes[i % 5], 3), dtype=np.uint8) for i in range(n)]


def test_settings_validate():
    with pytest.raises(ValueError, match="max_new_tokens"):
        ModelSettings(model="x", max_new_tokens=0)
    with pytest.raises(ValueError, match="h3_resolution"):
        ModelSettings(model="x", h3_resolution=16)
    with pytest.raises(ValueError, match="model"):
        ModelSettings(model="")


def test_fit_size_keeps_aspect_and_cap():
    assert fit_size(60, 60, 84 * 84) is None
    w, h = fit_size(640, 480, 84 * 84)
    assert w * h <= 84 * 84 and abs(w / h - 640 / 480) < 0.05
    assert fit_size(640, 480, None) is None


def test_processor_max_pixels_read_from_tiny_processor(predictor):
    from georay.models.vlm import TINY_MAX_PIXELS

    assert processor_max_pixels(predictor.processor) == TINY_MAX_PIXELS
    assert predictor.max_pixels == TINY_MAX_PIXELS


def test_batched_generation_equals_one_by_one(predictor):
    # Left padding: mixed aspect ratios give different prompt lengths in one batch.
    images = [predictor.load_image(encode_jpeg(im)) for im in _images(5)]
    batched = predictor.generate(images)
    single = [predictor.generate([im])[0] for im in images]
    assert batched == single
    assert all(isinstance(t, str) and t for t in batched)


def test_one_call_encoding_equals_the_shared_builder(predictor):
    # encode_prompts batches the processor call; training's builder encodes image by image.
    # Same tensors means same prompt, padding and image tokens: the two cannot drift apart.
    from georay.models.vlm import collate, encode_example, encode_prompts, generate_answers

    images = [predictor.load_image(encode_jpeg(im)) for im in _images(5, seed=3)]
    ours = encode_prompts(predictor.processor, images, [predictor.question] * 5)
    pad = predictor.processor.tokenizer.pad_token_id
    examples = [encode_example(predictor.processor, im, predictor.question) for im in images]
    shared = collate(examples, pad, padding_side="left")
    assert set(ours) == set(shared)
    for key in shared:
        assert torch.equal(ours[key], shared[key]), key
    texts = generate_answers(predictor.model, predictor.processor, images,
                             predictor.question, max_new_tokens=12)  # fmt: skip
    assert predictor.generate(images) == texts


def test_rows_follow_the_contract_and_bad_bytes_are_error_rows(predictor):
    blobs = [encode_jpeg(im) for im in _images(3)] + [b"", b"not an image", b"\xff\xd8\xff"]
    rows = predictor.predict_bytes(blobs)
    assert len(rows) == 6
    assert all(set(row) == set(ANSWER_FIELDS) for row in rows)
    assert [r["status"] for r in rows] == ["ok"] * 3 + ["error"] * 3
    for row in rows[:3]:
        assert row["error"] is None and isinstance(row["raw_text"], str)
        assert row["model"] == predictor.model_id
        assert row["answered"] == (row["lat"] is not None)
    assert rows[3]["error"].startswith("empty file")
    assert "not an image" in rows[4]["error"]
    assert all(r["answered"] is False for r in rows[3:])


def test_texts_become_placed_rows_with_cells(predictor):
    texts = [
        format_answer(country="Switzerland", city="Zurich", reasons="Swiss flag."),
        '```json\n{"country": "Japan", "reasons": ["left-hand traffic", "kanji"]}\n```',
        "I cannot determine where this is.",
        "{'country': 'Atlantis', 'city': 'Poseidonia'}",
        RuntimeError("CUDA out of memory"),
    ]
    zurich, japan, refusal, atlantis, failed = predictor.rows_from_texts(texts)
    assert (zurich["country_code"], zurich["city"], zurich["resolution"]) == (
        "CH",
        "Zurich",
        "city",
    )
    assert zurich["answered"] and zurich["reasons"] == "Swiss flag."
    cell = latlng_to_cells(np.array([zurich["lat"]]), np.array([zurich["lon"]]), 5)[0]
    assert zurich["h3"] == cell
    assert japan["country"] == "Japan" and japan["resolution"] == "country"
    assert japan["reasons"] == "left-hand traffic; kanji" and japan["h3"]
    assert not refusal["answered"] and refusal["answer_error"] == "refusal"
    assert refusal["status"] == "ok" and refusal["h3"] is None
    assert not atlantis["answered"] and atlantis["answer_error"] == "place not found"
    assert failed["status"] == "error" and "CUDA out of memory" in failed["error"]


def test_h3_resolution_is_configurable(tiny_dir, predictor):
    coarse = Predictor(ModelSettings(model=tiny_dir, h3_resolution=3, max_new_tokens=4))
    text = [format_answer(country="France", city="Paris", reasons="")]
    fine_cell = predictor.rows_from_texts(text)[0]["h3"]
    coarse_cell = coarse.rows_from_texts(text)[0]["h3"]
    import h3

    assert h3.get_resolution(coarse_cell) == 3 and h3.get_resolution(fine_cell) == 5
    assert h3.cell_to_parent(fine_cell, 3) == coarse_cell
