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

import boto3
import pyarrow.parquet as pq
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

    outputs: list[str] = field(default_factory=list)  # what `ray job submit` printed

    def submit(self, script: str, *args: str, timeout: float = 600) -> float:
        """`ray job submit ... -- python jobs/<script> ARGS` (the README command); seconds."""
        cmd = [RAY, "job", "submit", "--address", self.address, "--working-dir", "."]
        cmd += ["--runtime-env", "jobs/runtime_env.yaml", "--", "python", script, *args]
        start = time.monotonic()
        done = subprocess.run(
            cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        seconds = time.monotonic() - start
        self.outputs.append(done.stdout + done.stderr)
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


# ---------------------------------------------------------------- the README's jobs


def georay_checked(*args: str) -> None:
    """`georay ARGS` from the venv (as the README runs it), outside any Ray cluster."""
    subprocess.run([str(VENV_BIN / "georay"), *args], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """`$W` of the README: a synthetic world and a tiny base model to predict with."""
    w = tmp_path_factory.mktemp("w")
    georay_checked("synth", "--output", str(w / "world"), "--n", "32", "--countries", "4", "--seed", "0",
           "--width", "320", "--height", "240")  # fmt: skip
    from georay.models.vlm import tiny_qwen2vl

    # Stands in for the training artifact the README's $W/model is: same loading code path.
    tiny_qwen2vl(save_dir=w / "model")
    return w


@pytest.fixture(scope="module")
def head(token_cluster, work) -> Path:
    """The README's `jobs/curate.py fit` job: the fitted locatability head."""
    manifest = work / "world" / "manifest.parquet"
    seconds = token_cluster.submit(
        "jobs/curate.py", "fit", "--input", str(manifest), "--output", str(work / "head"),
        "--sample", "24",
    )  # fmt: skip
    token_cluster.timings["curate_fit_submit_s"] = seconds
    return work / "head"


def _ids(uri_or_path, filesystem=None) -> list[str]:
    return pq.read_table(uri_or_path, columns=["image_id"], filesystem=filesystem)[
        "image_id"
    ].to_pylist()


def check_scores_and_predictions(manifest_ids: list[str], curate, predict, fs=None) -> None:
    """Every input row exactly once in scores and in predictions; summaries add up."""
    n = len(manifest_ids)
    scores = pq.read_table(f"{curate}/scores", filesystem=fs)
    assert sorted(scores["image_id"].to_pylist()) == sorted(manifest_ids)
    ok = [s == "ok" for s in scores["status"].to_pylist()]
    assert all(ok), scores.filter(scores["status"] != "ok").to_pylist()[:3]
    loc = scores["locatability"].to_pylist()
    assert all(0.0 <= x <= 1.0 for x in loc)
    summary = json.loads(_read(f"{curate}/summary.json", fs))
    assert summary["rows_in"] == summary["rows_out"] == n == summary["ok"] + summary["error"]
    curated = pq.read_table(f"{curate}/curated", filesystem=fs)
    kept = sum(x >= summary["threshold"] for x in loc)
    assert curated.num_rows == summary["kept"] == kept

    preds = pq.read_table(f"{predict}/predictions", filesystem=fs)
    assert sorted(preds["image_id"].to_pylist()) == sorted(manifest_ids)
    assert set(preds["status"].to_pylist()) == {"ok"}
    summary = json.loads(_read(f"{predict}/summary.json", fs))
    assert summary["rows_out"] == n == summary["ok"] + summary["error"]


def _read(path: str, fs=None) -> bytes:
    if fs is None:
        return Path(path).read_bytes()
    with fs.open_input_stream(path) as f:
        return f.read()


def test_curate_and_predict_jobs_on_a_token_cluster(token_cluster, work, head):
    """The README's local walk-through: fit, score and predict as `ray job submit` jobs."""
    manifest = str(work / "world" / "manifest.parquet")
    timings = token_cluster.timings
    timings["curate_score_submit_s"] = token_cluster.submit(
        "jobs/curate.py", "score", "--input", manifest, "--head", str(head),
        "--output", str(work / "curate"),
    )  # fmt: skip
    timings["predict_submit_s"] = token_cluster.submit(
        "jobs/predict.py", "--input", manifest, "--model", str(work / "model"),
        "--output", str(work / "predict"),
    )  # fmt: skip
    check_scores_and_predictions(_ids(manifest), work / "curate", work / "predict")

    jobs = token_cluster.jobs()
    assert len(jobs) >= 3 and {j["status"] for j in jobs} == {"SUCCEEDED"}
    for job in jobs:
        # The driver registered with THIS cluster: the stage's ray.init() joined it through
        # RAY_ADDRESS rather than starting a private local instance.
        assert job["driver_info"] is not None, job["entrypoint"]
        run_s = (job["end_time"] - job["start_time"]) / 1000
        timings.setdefault("job_runtime_s", {})[job["entrypoint"][:40]] = round(run_s, 1)
    print("cluster job timings:", json.dumps(timings, indent=1))


def test_knowledge_baseline_and_evaluate_jobs_on_a_token_cluster(token_cluster, work):
    """The rest of the README's jobs: knowledge, a baseline, and evaluate scoring the
    baseline's predictions (made in this test, so it depends on no other test)."""
    manifest = str(work / "world" / "manifest.parquet")
    countries = sorted({c for c in pq.read_table(manifest)["country"].to_pylist() if c})
    token_cluster.submit(
        "jobs/knowledge.py", "--clues", str(work / "world" / "clues.jsonl"),
        "--output", str(work / "sft"),
    )  # fmt: skip
    token_cluster.submit(
        "jobs/baseline.py", "zeroshot", "--input", manifest, "--output", str(work / "zeroshot"),
        "--countries", *countries, "--cities-per-country", "2",
    )  # fmt: skip
    token_cluster.submit(
        "jobs/evaluate.py", "--predictions", str(work / "zeroshot" / "predictions"),
        "--truth", manifest, "--output", str(work / "report"), "--no-plots",
    )  # fmt: skip
    reasoning = (work / "sft" / "reasoning.jsonl").read_text().splitlines()
    assert reasoning and all(json.loads(line)["conversations"] for line in reasoning)
    n = len(_ids(manifest))
    summary = json.loads((work / "zeroshot" / "summary.json").read_text())
    assert summary["rows_in"] == summary["rows_out"] == n == summary["ok"] + summary["error"]
    metrics = json.loads((work / "report" / "metrics.json").read_text())
    assert metrics["n"] == n and metrics["country"]["answered"] == summary["answered"]


def _upload(local: Path, bucket: str, prefix: str) -> None:
    s3 = boto3.client("s3")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")


def test_curate_and_predict_jobs_on_s3_leak_no_credentials(token_cluster, work, head, s3_bucket):
    """Images, head and model read from S3, outputs written to S3, by jobs whose credentials
    come from the environment `ray start` ran in; the secret key is in no output and no log."""
    from georay.data.storage import filesystem_for

    _upload(work / "world", s3_bucket, "world")
    _upload(head, s3_bucket, "head")
    _upload(work / "model", s3_bucket, "model")
    b = f"s3://{s3_bucket}"
    timings = token_cluster.timings
    timings["s3_curate_score_submit_s"] = token_cluster.submit(
        "jobs/curate.py", "score", "--input", f"{b}/world/manifest.parquet",
        "--head", f"{b}/head", "--output", f"{b}/curate",
    )  # fmt: skip
    timings["s3_predict_submit_s"] = token_cluster.submit(
        "jobs/predict.py", "--input", f"{b}/world/manifest.parquet", "--model", f"{b}/model",
        "--output", f"{b}/predict",
    )  # fmt: skip
    fs, root = filesystem_for(b)
    manifest_ids = _ids(str(work / "world" / "manifest.parquet"))
    check_scores_and_predictions(manifest_ids, f"{root}/curate", f"{root}/predict", fs)
    scores = pq.read_table(f"{root}/curate/scores", filesystem=fs)
    assert all(u.startswith(f"{b}/world/") for u in scores["uri"].to_pylist())

    secret = token_cluster.secret.encode()
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert any(k.startswith("predict/predictions/") for k in keys)
    for key in keys:
        assert secret not in s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read(), key
    logs = [p for p in token_cluster.temp_dir.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any("job-driver" in p.name for p in logs)  # the jobs' own logs are among them
    for path in logs:
        assert secret not in path.read_bytes(), path
    for output in token_cluster.outputs:
        assert token_cluster.secret not in output
    assert token_cluster.secret not in json.dumps(token_cluster.jobs())
    print("cluster job timings:", json.dumps(timings, indent=1))
