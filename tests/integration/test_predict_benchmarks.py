"""`georay predict` on images laid out like OSV-5M and Im2GPS3k, joined to their truth tables as
published through `georay evaluate`; figures recomputed here from the two tables by hand. Both
image folders are predicted as folders; the Im2GPS3k CSV is also predicted as the input table."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import IM2GPS3K_COLUMNS, OSV5M_COLUMNS, im2gps3k_row, osv5m_row

from georay.data.images import encode_jpeg
from georay.evaluate import EvaluateConfig, evaluate
from georay.predict.bulk import PredictConfig, predict

pytestmark = pytest.mark.slow

PLACES = [(48.8566, 2.3522, "FR", "Paris"), (-22.5609, 17.0658, "NA", "Windhoek"),
          (35.6762, 139.6503, "JP", "Tokyo"), (-33.8688, 151.2093, "AU", "Sydney")]  # fmt: skip


def _jpeg(seed: int) -> bytes:
    return encode_jpeg(np.random.default_rng(seed).integers(0, 255, (60, 80, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    from georay.models.vlm import tiny_qwen2vl

    path = tmp_path_factory.mktemp("tiny")
    tiny_qwen2vl(save_dir=path)
    return str(path)


def _predict(tiny_model: str, **kw) -> dict:
    from georay.models.vlm import TINY_MAX_PIXELS

    return predict(PredictConfig(model=tiny_model, max_new_tokens=8, batch_size=4,
                                 max_pixels=TINY_MAX_PIXELS, **kw))  # fmt: skip


def _by_hand(truth: dict[str, str], predictions: str) -> dict:
    """Country answered/correct counted from the predictions table and the truth codes."""
    from georay.geo.gazetteer import get_gazetteer

    gaz = get_gazetteer()
    rows = {r["image_id"]: r for r in pq.read_table(predictions).to_pylist()}
    answered = correct = 0
    for image_id, code in truth.items():
        row = rows.get(image_id)
        if row and row["status"] == "ok" and row["answered"] and row["country"]:
            answered += 1
            correct += gaz.country_code(row["country"]) == code
    return {"answered": answered, "correct": correct, "rows": len(rows)}


def test_osv5m_image_folder_joins_test_csv(ray_session, tmp_path, tiny_model):
    images = tmp_path / "osv5m" / "images" / "test"
    images.mkdir(parents=True)
    ids = [f"38571982736451{i}" for i in range(len(PLACES))]
    for i, image_id in enumerate(ids):
        (images / f"{image_id}.jpg").write_bytes(_jpeg(i))
    (images / "999.jpg").write_bytes(b"broken")  # an image without a truth row
    truth = tmp_path / "osv5m" / "test.csv"
    rows = [osv5m_row(i, *p) for i, p in zip(ids, PLACES, strict=True)]
    truth.write_text(OSV5M_COLUMNS + "\n" + "\n".join(rows) + "\n")
    out = tmp_path / "pred"
    summary = _predict(tiny_model, input=str(images), output=str(out))
    assert summary["input_layout"] == {"layout": "images"}
    assert (summary["rows_out"], summary["error"]) == (len(ids) + 1, 1)
    m = evaluate(EvaluateConfig(predictions=str(out / "predictions"), truth=str(truth),
                                output=str(tmp_path / "report"), plots=False))  # fmt: skip
    assert m["inputs"]["truth_layout"]["layout"] == "osv5m"
    assert m["n"] == len(ids) and m["inputs"]["truth_without_prediction"] == 0
    assert m["inputs"]["unmatched_predictions"] == 1  # 999.jpg
    hand = _by_hand({i: p[2] for i, p in zip(ids, PLACES, strict=True)}, str(out / "predictions"))
    assert m["country"]["answered"] == hand["answered"]
    assert m["country"]["correct"] == hand["correct"]


def test_im2gps3k_csv_as_input_with_its_image_folder(ray_session, tmp_path, tiny_model):
    photos = tmp_path / "im2gps3ktest"
    photos.mkdir()
    ids = [f"{100 + i}_3a0ee0b8e8_48_42134048@N00" for i in range(len(PLACES))]
    for i, image_id in enumerate(ids[:-1]):
        (photos / f"{image_id}.jpg").write_bytes(_jpeg(10 + i))
    # ids[-1] has no file: a "missing file" error row, still joined to its truth row
    truth = tmp_path / "im2gps3k_places365.csv"
    rows = [im2gps3k_row(f"{i}.jpg", p[0], p[1]) for i, p in zip(ids, PLACES, strict=True)]
    truth.write_text(IM2GPS3K_COLUMNS + "\n" + "\n".join(rows) + "\n")
    out = tmp_path / "pred"
    summary = _predict(tiny_model, input=str(truth), image_root=str(photos), output=str(out))
    layout = summary["input_layout"]
    assert layout["layout"] == "im2gps" and layout["image_root"] == str(photos)
    assert (summary["rows_out"], summary["ok"], summary["error"]) == (len(ids), len(ids) - 1, 1)
    table = {r["image_id"]: r for r in pq.read_table(out / "predictions").to_pylist()}
    assert table[ids[-1]]["error"].startswith("missing file")
    assert table[ids[0]]["uri"] == f"{photos}/{ids[0]}.jpg"
    assert json.loads((out / "summary.json").read_text())["input_layout"]["layout"] == "im2gps"
    m = evaluate(EvaluateConfig(predictions=str(out / "predictions"), truth=str(truth),
                                output=str(tmp_path / "report"), plots=False))  # fmt: skip
    assert m["n"] == len(ids) and m["inputs"]["truth_without_prediction"] == 0
    assert m["inputs"]["truth_country_from_coordinates"] == len(ids)
    hand = _by_hand({i: p[2] for i, p in zip(ids, PLACES, strict=True)}, str(out / "predictions"))
    assert m["country"]["answered"] == hand["answered"]
    assert m["country"]["correct"] == hand["correct"]
    # The image folder itself, predicted like any folder, joins the same truth rows.
    folder = tmp_path / "pred-folder"
    _predict(tiny_model, input=str(photos), output=str(folder))
    by_folder = evaluate(EvaluateConfig(predictions=str(folder / "predictions"), truth=str(truth),
                                        output=str(tmp_path / "report2"), plots=False))  # fmt: skip
    assert by_folder["inputs"]["truth_without_prediction"] == 1  # the missing file
    assert by_folder["inputs"]["unmatched_predictions"] == 0
    assert by_folder["country"] == m["country"]  # same images, same greedy answers
