"""Shared test fixtures: one local Ray instance per test session, reference data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests never reach a hub: everything is built in code or read from disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray starts workers at nice 15; beside any other load that starved training steps ~8x here.
os.environ.setdefault("RAY_worker_niceness", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: reference data for tests only (never read by the package)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """The one local Ray instance of a test session (2 CPUs, like our machines).

    ``address="local"`` starts a fresh instance even when a ``ray start`` cluster runs on this
    machine (the cluster tests start one). Tests that start Serve apps or long-lived actors must
    shut them down: a Serve app keeps its CPUs and a later 2-worker trainer cannot be placed.
    """
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# S3 in tests is a moto server on loopback, behind a fault proxy (benchmarks/faultproxy.py) that
# passes everything through unless a test asks for latency, 503s, resets or an outage
# (``s3_faults``). The proxy's address and fake credentials go into the environment at import
# time, before any Ray instance starts, so Ray workers inherit them through the standard AWS
# chain (boto3 and pyarrow both read AWS_ENDPOINT_URL). It also guarantees that nothing in the
# suite can reach a real S3 endpoint.
S3_PORT = _free_port()
MOTO_PORT = _free_port()
os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{S3_PORT}"
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def _s3_servers():
    """moto_server on loopback and the fault proxy in front of it; yields the proxy."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    from benchmarks.faultproxy import FaultProxy

    # The venv's moto_server first: `python -m pytest` does not put the venv on PATH, and an
    # older system moto (5.2.1) fails pyarrow's multipart upload (DESIGN, toolchain facts).
    venv_exe = Path(sys.executable).parent / "moto_server"
    exe = str(venv_exe) if venv_exe.exists() else shutil.which("moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(MOTO_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = FaultProxy(f"http://127.0.0.1:{MOTO_PORT}", port=S3_PORT).start()
    url = os.environ["AWS_ENDPOINT_URL"]
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proxy.stop()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)
    yield proxy
    proxy.stop()
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_endpoint(_s3_servers):
    """A real S3 endpoint (``moto_server`` behind the fault proxy) on loopback; yields its URL
    (``AWS_ENDPOINT_URL``)."""
    return _s3_servers.url


@pytest.fixture
def s3_faults(_s3_servers):
    """The S3 endpoint's :class:`benchmarks.faultproxy.FaultProxy`: set ``delay_s``,
    ``fail_rate``, ``reset_rate`` or call ``outage`` / ``outage_after``; reset after the test."""
    _s3_servers.reset_faults()
    yield _s3_servers
    _s3_servers.reset_faults()


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh, empty bucket on the test S3 endpoint; yields its name."""
    import uuid

    import boto3

    name = f"georay-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name
