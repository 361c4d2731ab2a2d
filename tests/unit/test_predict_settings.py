"""Settings of `georay predict` and `georay serve`: validation and the flag <-> field mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from georay.cli import build_parser
from georay.config import from_args
from georay.errors import UserError
from georay.predict.config import ModelSettings, PredictConfig
from georay.serve.config import ServeConfig


def test_predict_flags_map_to_fields(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("batch_size: 4\nh3_resolution: 3\n")
    args = build_parser().parse_args(
        ["predict", "--input", "in/", "--model", "m", "--output", "out", "--preset", str(preset),
         "--skip-exif-gps", "--h3-resolution", "7", "--num-actors", "2"]
    )  # fmt: skip
    cfg = from_args(PredictConfig, args)
    # Local paths are made absolute where the command runs ("m" names no local path: a hub id).
    assert (cfg.input, cfg.model, cfg.output) == (str(Path("in").resolve()), "m",
                                                   str(Path("out").resolve()))  # fmt: skip
    assert cfg.skip_exif_gps is True and cfg.num_actors == 2
    assert cfg.batch_size == 4 and cfg.h3_resolution == 7  # preset < flags
    # The VLM alone, or fused when a gallery is given (georay.archive.job dispatches).
    assert args.command.run == "georay.archive.job:predict" and not cfg.fused


def test_serve_flags_map_to_fields():
    args = build_parser().parse_args(
        ["serve", "--model", "m", "--port", "9000", "--batch-size", "4",
         "--api-key-env", "KEY_VAR", "--allow-url-fetch"]
    )  # fmt: skip
    cfg = from_args(ServeConfig, args)
    assert (cfg.port, cfg.batch_size, cfg.api_key_env) == (9000, 4, "KEY_VAR")
    assert cfg.max_ongoing_requests == 8  # default: 2 * batch_size
    assert cfg.allow_url_fetch is True


def test_missing_required_flags_exit():
    with pytest.raises(UserError, match="--input"):
        from_args(PredictConfig, build_parser().parse_args(["predict", "--model", "m"]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_actors=0), "num_actors"),
        (dict(rows_per_part=0), "rows_per_part"),
        (dict(block_rows=0), "block_rows"),
        (dict(decode_cpus=0), "decode_cpus"),
        (dict(batch_size=0), "batch_size"),
        (dict(max_pixels=10), "max_pixels"),
    ],
)
def test_predict_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PredictConfig(model="m", input="i", output="o", **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=16, max_ongoing_requests=8), "max_ongoing_requests"),
        (dict(batch_size=0), "batch_size"),
        (dict(num_replicas=0), "num_replicas"),
        (dict(max_request_bytes=10), "max_request_bytes"),
        (dict(route_prefix="api"), "route_prefix"),
    ],
)
def test_serve_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServeConfig(model="m", **kwargs)


def test_model_settings_of_picks_and_overrides():
    cfg = PredictConfig(model="m", input="i", output="o", batch_size=3, max_new_tokens=9)
    settings = ModelSettings.of(vars(cfg), batch_size=5)
    assert type(settings) is ModelSettings
    assert (settings.model, settings.batch_size, settings.max_new_tokens) == ("m", 5, 9)


def test_api_key_env_must_be_set_when_named(monkeypatch):
    from georay.serve.app import _env_key_digest, _key_digest

    monkeypatch.delenv("GEORAY_UNSET_KEY", raising=False)
    assert _env_key_digest(None) is None
    with pytest.raises(ValueError, match="GEORAY_UNSET_KEY"):
        _env_key_digest("GEORAY_UNSET_KEY")  # auth asked for but no key: refuse to start open
    monkeypatch.setenv("GEORAY_SET_KEY", "abc")
    assert _env_key_digest("GEORAY_SET_KEY") == _key_digest("abc") != "abc"
