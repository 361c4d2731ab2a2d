"""Prediction asks an artifact the question its last stage was trained on."""

import json

from georay.predict.predictor import default_question
from georay.protocol.prompts import INFERENCE_QUESTION, LOCATION_QUESTION, REASONING_QUESTION


def _artifact(path, stages):
    path.mkdir()
    spec = {"format": "georay-vlm-artifact", "version": 1, "base_model": "base", "stages": stages}
    (path / "artifact.json").write_text(json.dumps(spec))
    return str(path)


def test_artifact_gets_its_last_stage_question(tmp_path):
    stages = [
        {"stage": "reasoning", "questions": [REASONING_QUESTION]},
        {"stage": "location", "questions": [LOCATION_QUESTION]},
    ]
    assert default_question(_artifact(tmp_path / "a", stages)) == LOCATION_QUESTION


def test_base_model_or_unrecorded_question_gets_the_inference_question(tmp_path):
    (tmp_path / "base").mkdir()
    assert default_question(str(tmp_path / "base")) == INFERENCE_QUESTION
    assert default_question(_artifact(tmp_path / "b", [{"stage": "x"}])) == INFERENCE_QUESTION
