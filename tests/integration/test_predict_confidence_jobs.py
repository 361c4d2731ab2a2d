"""The VLM's confidence end to end (issue 20): a tiny model trained to answer Paris is sure of
it, its calibration is applied with no flag, abstention keeps every row once in the bulk job,
and the API answers the same fields."""

from __future__ import annotations

import shutil
import socket

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import france_model

from georay.data.images import encode_jpeg
from georay.predict.config import ModelSettings

ANSWER = dict(country="France", city="Paris", reasons="Slate roofs and limestone walls.")


@pytest.fixture(scope="module")
def paris(tmp_path_factory) -> str:
    """The tiny Qwen2-VL trained on past greedy-right until it is sure of France / Paris."""
    path = tmp_path_factory.mktemp("paris")
    france_model(path, ANSWER, min_steps=250)
    return str(path)


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(56, 56), (84, 70), (200, 300), (120, 90)]
    return [rng.integers(0, 256, (*shapes[i % 4], 3), dtype=np.uint8) for i in range(n)]


def test_a_model_trained_to_answer_paris_is_sure_of_it(paris):
    from georay.predict.predictor import Predictor

    rows = Predictor(ModelSettings(model=paris, batch_size=4)).predict(_images(4))
    for row in rows:
        assert (row["country_code"], row["city"]) == ("FR", "Paris")
        assert row["country_confidence"] > 0.9 and row["city_confidence"] > 0.9
        assert row["city_confidence"] <= row["country_confidence"]
        head = row["candidates"][0]
        assert (head["country_code"], head["city"]) == ("FR", "Paris")
        assert head["probability"] == row["city_confidence"]
        assert 1 <= len(row["candidates"]) <= 5
        assert sum(c["probability"] for c in row["candidates"]) <= 1.0
        assert row["abstained"] is False
    # --no-confidence: main's rows, the same answers.
    plain = Predictor(ModelSettings(model=paris, confidence=False)).predict(_images(4))
    for row, bare in zip(rows, plain, strict=True):
        assert bare["raw_text"] == row["raw_text"]
        assert bare["country_confidence"] is None and bare["candidates"] is None


def test_calibration_next_to_the_model_is_applied_without_a_flag(paris, tmp_path):
    from georay.predict.predictor import Predictor
    from georay.protocol.calibration import Calibration, LevelMap, save_calibration

    model = tmp_path / "calibrated"
    shutil.copytree(paris, model)
    cal = Calibration()
    cal.methods["vlm"] = {lvl: LevelMap(use="temperature", temperature=3.0)
                          for lvl in ("country", "city")}  # fmt: skip
    save_calibration(cal, str(model))
    raw = Predictor(ModelSettings(model=paris)).predict(_images(2))
    calibrated = Predictor(ModelSettings(model=str(model))).predict(_images(2))
    for before, after in zip(raw, calibrated, strict=True):
        p = before["country_confidence"]
        want = 1 / (1 + ((1 - p) / p) ** (1 / 3.0))  # sigmoid(logit(p) / T)
        assert after["country_confidence"] == pytest.approx(want, rel=1e-9)
        assert after["country_confidence"] < p
        assert after["candidates"][0]["probability"] == after["city_confidence"]


def test_bulk_job_abstains_without_dropping_a_row(ray_session, tmp_path, paris):
    from georay.predict import PredictConfig, predict

    images = tmp_path / "images"
    images.mkdir()
    ids = []
    for i, pixels in enumerate(_images(6, seed=2)):
        (images / f"p{i}.jpg").write_bytes(encode_jpeg(pixels))
        ids.append(f"p{i}")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    ids.append("broken")
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"image_id": ids, "uri": [str(images / f"{i}.jpg") for i in ids]}),
                   manifest)  # fmt: skip
    out = tmp_path / "out"
    summary = predict(PredictConfig(input=str(manifest), output=str(out), model=paris,
                                    min_confidence=0.999, top_k=3, block_rows=4))  # fmt: skip
    assert (summary["rows_in"], summary["rows_out"], summary["ok"]) == (7, 7, 6)
    rows = pq.read_table(out / "predictions").to_pylist()
    assert sorted(r["image_id"] for r in rows) == sorted(ids)  # every row, once
    for row in rows:
        if row["image_id"] == "broken":
            assert row["status"] == "error" and row["abstained"] is None
            assert row["country_confidence"] is None
            continue
        # Sure (> 0.9) but under 0.999: abstained, answer and candidates kept.
        assert row["abstained"] is True and row["country_code"] == "FR"
        assert 0.9 < row["country_confidence"] < 0.999 and row["candidates"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_api_answers_the_confidence_fields(ray_session, paris):
    from ray import serve

    from georay.serve.app import ServeConfig, build_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    cfg = ServeConfig(model=paris, cpus_per_replica=0.2, top_k=3, min_confidence=0.5)
    try:
        serve.run(build_app(cfg), name="confidence", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        body = httpx.post(url + "/v1/geolocate", content=encode_jpeg(_images(1)[0]),
                          headers={"content-type": "image/jpeg"}, timeout=120).json()  # fmt: skip
        assert body["country_code"] == "FR" and body["country_confidence"] > 0.9
        assert body["abstained"] is False
        assert body["candidates"][0]["city"] == "Paris" and len(body["candidates"]) <= 3
        config = httpx.get(url + "/v1/config", timeout=30).json()
        assert (config["top_k"], config["min_confidence"]) == (3, 0.5)
    finally:
        serve.shutdown()
