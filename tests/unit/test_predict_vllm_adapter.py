"""Which peft adapters the vLLM engine accepts as LoRA (checked in the driver, before any engine)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import two_stage_artifact_at

from georay.errors import UserError
from georay.predict.vllm_engine import check_adapter

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_an_adapter_on_the_projections_is_accepted():
    check_adapter({"r": 16, "target_modules": PROJECTIONS, "modules_to_save": None}, "art")


@pytest.mark.parametrize(
    "config",
    [
        {"target_modules": [*PROJECTIONS, "lm_head"]},
        {"target_modules": ["q_proj", "language_model.lm_head"]},
        {"target_modules": r".*\.(q_proj|lm_head)"},
        {"target_modules": PROJECTIONS, "modules_to_save": ["embed_tokens"]},
    ],
)
def test_an_adapter_on_the_output_or_embedding_layer_is_refused(config):
    with pytest.raises(
        UserError, match=r"of /a/art trains (lm_head|embed_tokens), .*--lora-adapter"
    ):
        check_adapter({"r": 16, **config}, "/a/art")


def test_predict_and_serve_refuse_such_an_adapter_in_the_driver(tmp_path):
    """One error line, exit 2, before Ray starts and before any output is written (the engine
    would otherwise die at load and Ray Data restart its actor forever)."""
    art = two_stage_artifact_at(tmp_path / "art", "Where?", targets=[*PROJECTIONS, "lm_head"])
    env = {**os.environ, "GEORAY_CACHE": str(tmp_path / "cache")}
    for argv in (
        ["predict", "--input", str(tmp_path), "--output", str(tmp_path / "out")],
        ["serve", "--port", "1"],
    ):
        run = subprocess.run(
            [sys.executable, "-m", "georay.cli", *argv, "--engine", "vllm", "--lora-adapter",
             "--model", str(art)],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert run.returncode == 2, run.stderr
        assert f"georay {argv[0]}: error: the last adapter of {art} trains lm_head" in run.stderr
        assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()
