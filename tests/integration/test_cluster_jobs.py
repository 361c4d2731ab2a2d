"""`ray job submit` against a `ray start --head` cluster with token authentication, exactly as
cluster/README.md tells users to run it, for curate and predict, on local paths and on S3.

One cluster serves the whole module (starting one costs ~10 s on 2 cores). It is not the test
session's Ray (``ray_session``, started with ``address="local"``): it has its own temp dir,
ports and token (``HOME`` points at a temp dir, so ``~/.ray/auth_token`` is private to it), and
it is torn down by killing exactly the processes it started. ``ray stop`` would do the same for
a user, but it stops every Ray process on the machine, including the session's and those of
other test runs sharing the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_process_tree(pgid: int, timeout: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, every process of group ``pgid`` and all their descendants.

    ``ray start`` runs in a session of its own (``start_new_session``), so its daemons (GCS,
    raylet, dashboard, ...) share its process group; workers set their own group but are
    children of the raylet. Everything is collected before anything is killed, because orphans
    are re-parented and could not be found afterwards.
    """
    import psutil

    procs: set[psutil.Process] = set()
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                procs.add(proc)
                procs.update(proc.children(recursive=True))
        except (psutil.Error, ProcessLookupError):
            continue
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


@dataclass
class TokenCluster:
    """A running `ray start --head` cluster and the environment its clients need."""

    address: str  # the dashboard / job API, for `ray job submit --address`
    env: dict[str, str]  # RAY_AUTH_MODE=token, HOME holding ~/.ray/auth_token, PATH with venv
    temp_dir: Path  # Ray's --temp-dir: session logs live here
    secret: str  # the AWS secret key every Ray process of this cluster holds
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return (Path(self.env["HOME"]) / ".ray" / "auth_token").read_text().strip()

    def submit(self, script: str, *args: str, timeout: float = 600) -> float:
        """`ray job submit ... -- python jobs/<script> ARGS` (the README command); seconds."""
        cmd = [RAY, "job", "submit", "--address", self.address, "--working-dir", "."]
        cmd += ["--runtime-env", "jobs/runtime_env.yaml", "--", "python", script, *args]
        start = time.monotonic()
        done = subprocess.run(
            cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        seconds = time.monotonic() - start
        assert done.returncode == 0 and "succeeded" in done.stdout, done.stdout + done.stderr
        return seconds

    def jobs(self) -> list[dict]:
        """The job API's view of every submitted job (needs the token, as any client)."""
        request = urllib.request.Request(
            f"{self.address}/api/jobs/", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def token_cluster(s3_endpoint):
    """`RAY_AUTH_MODE=token ray start --head ...` (cluster/README.md), stopped at module end."""
    home = Path(tempfile.mkdtemp(prefix="georay-home-"))
    # Unix socket paths (temp_dir/session_<date>_<pid>/sockets/plasma_store) must stay under 107
    # characters: pytest's tmp_path is too deep for that, so Ray's temp dir is short and private.
    temp_dir = Path(tempfile.mkdtemp(prefix="gr-", dir="/tmp"))
    secret = f"georay-secret-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",  # `source .venv/bin/activate`
        "RAY_AUTH_MODE": "token",
        "RAY_USAGE_STATS_ENABLED": "0",
        # S3 through the standard AWS chain, inherited by every Ray process of the cluster.
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "georay-test-key",
        "AWS_SECRET_ACCESS_KEY": secret,
    }
    env.pop("RAY_ADDRESS", None)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    dashboard = free_port()
    cmd = [RAY, "start", "--head", "--num-cpus", "2", "--port", str(free_port())]
    cmd += ["--dashboard-port", str(dashboard), "--include-dashboard=true"]
    cmd += ["--temp-dir", str(temp_dir), "--disable-usage-stats"]
    # Fixed default ports that a second Ray instance on this machine would collide on.
    cmd += ["--ray-client-server-port", str(free_port())]
    cmd += ["--dashboard-agent-listen-port", str(free_port())]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out.decode(errors="replace")
        cluster = TokenCluster(f"http://127.0.0.1:{dashboard}", env, temp_dir, secret)
        cluster.timings["ray_start_s"] = time.monotonic() - start
        yield cluster
    finally:
        proc.kill() if proc.poll() is None else None
        kill_process_tree(proc.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def test_cluster_refuses_clients_without_the_token(token_cluster, tmp_path):
    env = {**token_cluster.env, "HOME": str(tmp_path)}
    env.pop("RAY_AUTH_MODE")
    done = subprocess.run(
        [RAY, "job", "list", "--address", token_cluster.address],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "authentication" in (done.stdout + done.stderr).lower()
