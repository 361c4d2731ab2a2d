"""The shipped serve config YAML: valid for Serve, and deployable with the real `serve run` CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from georay.data.images import encode_jpeg
from georay.serve.app import DEPLOYMENT_NAME, ServeConfig

CONFIG = Path(__file__).resolve().parents[2] / "georay" / "serve" / "serve_config.yaml"


def test_config_is_a_valid_serve_config_for_our_app():
    from ray.serve.schema import ServeDeploySchema

    spec = yaml.safe_load(CONFIG.read_text())
    ServeDeploySchema.model_validate(spec)
    (app,) = spec["applications"]
    assert app["import_path"] == "georay.serve.app:build_app"
    cfg = ServeConfig(**app["args"])  # every arg is a ServeConfig field, and valid
    (deployment,) = app["deployments"]
    assert deployment["name"] == DEPLOYMENT_NAME
    assert deployment["max_ongoing_requests"] >= cfg.batch_size
    assert cfg.api_key_env is None and cfg.allow_url_fetch is False  # safe defaults


def test_serve_run_deploys_the_config(ray_session, tmp_path):
    from ray import serve

    from georay.models.vlm import tiny_qwen2vl

    tiny_qwen2vl(save_dir=tmp_path / "model")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = yaml.safe_load(CONFIG.read_text())
    spec["http_options"] = {"host": "127.0.0.1", "port": port}
    spec["applications"][0]["args"].update(model=str(tmp_path / "model"), max_new_tokens=8)
    spec["applications"][0]["deployments"][0]["ray_actor_options"]["num_cpus"] = 0.2
    config = tmp_path / "serve_config.yaml"
    config.write_text(yaml.safe_dump(spec))
    address = ray_session.get_runtime_context().gcs_address
    serve_cli = str(Path(sys.executable).parent / "serve")
    try:
        done = subprocess.run(
            [serve_cli, "run", str(config), "--address", address, "--non-blocking"],
            capture_output=True,
            text=True,
            timeout=240,
            env={**os.environ, "PYTHONPATH": str(CONFIG.parents[2])},
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "app from the config never became healthy"
            time.sleep(1)
        image = encode_jpeg(np.zeros((64, 80, 3), dtype=np.uint8))
        response = httpx.post(
            base + "/v1/geolocate", files={"image": ("x.jpg", image, "image/jpeg")}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == str(tmp_path / "model")
    finally:
        serve.shutdown()
