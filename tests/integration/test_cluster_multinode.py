"""Multi-node: curate and a training stage on a 3-node local Ray cluster with everything on S3,
and a worker node lost in the middle of the scoring job.

The cluster (`ray.cluster_utils.Cluster`) lives in a subprocess: tests share one session Ray
(``ray_session``), and a second ``ray.init`` in this process would break it. The stages run as
job drivers do: ``python jobs/<stage>.py ...`` with ``RAY_ADDRESS`` naming the cluster, so the
stage's own ``ray.init()`` joins it. ``RAY_TMPDIR`` keeps the cluster's sessions and address file
out of /tmp/ray (no other Ray user on the machine attaches to it by accident), ``HOME`` keeps its
token private, and every process it started is killed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
from test_cluster_jobs import RAY, VENV_BIN, _upload, free_port, kill_process_tree

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
N_IMAGES = 64

# The cluster driver: a head with no CPUs (like the KubeRay and launcher heads), two 1-CPU
# workers. While `curate score` runs, the driver removes the worker that hosts the scoring actor
# once the first output part is committed, then adds a fresh node (what a spot fleet does).
SCRIPT = r"""
import json, os, subprocess, sys, time

import boto3
import ray
from ray.cluster_utils import Cluster

spec = json.loads(sys.argv[1])
report = {"events": []}


def event(text):
    report["events"].append(text)
    print("EVENT", text, flush=True)


cluster = Cluster(initialize_head=True, head_node_args=spec["head"])
workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
cluster.wait_for_nodes()
cluster.connect()  # this process only watches; the stages are separate drivers
env = {**os.environ, "RAY_ADDRESS": cluster.address}  # what `ray job submit` sets


def job(name, argv):
    t0 = time.monotonic()
    subprocess.run([sys.executable, *argv], env=env, check=True, timeout=600)
    report[name + "_s"] = round(time.monotonic() - t0, 1)
    event(f"{name} done in {report[name + '_s']} s")


def committed_parts():
    listing = boto3.client("s3").list_objects_v2(Bucket=spec["bucket"], Prefix="curate/scores/")
    return sum(o["Key"].rsplit("/", 1)[-1].startswith("part-") for o in listing.get("Contents", []))


def scoring_actor_nodes():
    # The GCS actor table: nodes of live Ray Data map workers (the scoring actor pool).
    return {
        a["Address"]["NodeID"]
        for a in ray._private.state.actors().values()
        if a["State"] == "ALIVE" and "MapWorker" in a["ActorClassName"]
    }


def score_and_lose_a_worker(argv):
    # Main thread only: Node() installs signal handlers, so add_node fails in other threads.
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, *argv], env=env)
    while proc.poll() is None:
        if "removed_after_parts" not in report:
            busy = scoring_actor_nodes()
            victim = next((w for w in workers if w.node_id in busy), None)
            parts = committed_parts() if victim else 0
            if victim and parts >= 1:
                cluster.remove_node(victim, allow_graceful=False)
                report["removed_after_parts"] = parts
                event(f"removed node {victim.node_id[:8]} (scoring actor) after {parts} parts")
                cluster.add_node(num_cpus=1)  # the replacement a spot fleet launches
                event("replacement node added")
        if time.monotonic() - t0 > 600:
            proc.kill()
        time.sleep(0.05)
    assert proc.returncode == 0, f"score job failed: {proc.returncode}"
    report["score_s"] = round(time.monotonic() - t0, 1)
    event(f"score done in {report['score_s']} s")


try:
    job("fit", spec["fit"])
    score_and_lose_a_worker(spec["score"])
    report["parts_total"] = committed_parts()
    cluster.wait_for_nodes(timeout=120)
    report["cpus_before_train"] = ray.cluster_resources().get("CPU", 0)
    job("train", spec["train"])
    report["nodes_alive"] = sum(n["Alive"] for n in ray.nodes())
finally:
    print("REPORT " + json.dumps(report), flush=True)
    ray.shutdown()
    cluster.shutdown()
"""


def georay_checked(*args: str, env=None) -> None:
    subprocess.run(
        [str(VENV_BIN / "georay"), *args], check=True, capture_output=True, timeout=300, env=env
    )


def test_multinode_curate_and_train_survive_a_lost_worker(s3_bucket, tmp_path):
    world = tmp_path / "world"
    georay_checked("synth", "--output", str(world), "--n", str(N_IMAGES), "--countries", "4", "--seed", "1",
            "--width", "320", "--height", "240")  # fmt: skip
    _upload(world, s3_bucket, "world")
    # Stage-1 SFT data (driver-only, no Ray): what the train job reads.
    georay_checked(
        "knowledge", "--clues", str(world / "clues.jsonl"), "--output", str(tmp_path / "sft")
    )
    b = f"s3://{s3_bucket}"
    manifest = f"{b}/world/manifest.parquet"
    spec = {
        "bucket": s3_bucket,
        # No CPUs on the head (like the KubeRay and launcher heads); private dashboard ports.
        "head": {"num_cpus": 0, "dashboard_port": free_port(),
                 "dashboard_agent_listen_port": free_port()},
        "fit": ["jobs/curate.py", "fit", "--input", manifest, "--output", f"{b}/head",
                "--sample", "24"],
        # Small parts and blocks: the output commits progressively, so the node is lost with
        # work both done and pending.
        "score": ["jobs/curate.py", "score", "--input", manifest, "--head", f"{b}/head",
                  "--output", f"{b}/curate", "--rows-per-part", "8", "--block-rows", "4",
                  "--batch-size", "4"],
        # Two 1-CPU workers on a cluster of 1-CPU nodes: data parallel across two nodes, with
        # the checkpoints and the artifact on S3, the storage every node shares.
        "train": ["jobs/train.py", "--stage", "reasoning", "--input",
                  str(tmp_path / "sft" / "reasoning.jsonl"), "--model", "tiny",
                  "--output", f"{b}/artifact", "--storage-path", f"{b}/checkpoints",
                  "--name", "multinode", "--num-workers", "2", "--max-steps", "4",
                  "--batch-size", "2", "--checkpoint-every", "2", "--lr", "3e-3"],
    }  # fmt: skip
    home = tmp_path / "home"
    ray_tmp = Path(tempfile.mkdtemp(prefix="grm-", dir="/tmp"))  # short: unix socket paths
    env = {
        **os.environ,
        "HOME": str(home),
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_AUTH_MODE": "token",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        # Starting two torch workers can outlast Ray Train's 60 s default on a busy 2-core box.
        "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",
    }
    env.pop("RAY_ADDRESS", None)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, json.dumps(spec)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=900)
    finally:
        kill_process_tree(proc.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert "REPORT " in out, out[-6000:]
    report = json.loads(out.split("REPORT ", 1)[1].splitlines()[0])
    print("multinode:", json.dumps(report))
    assert proc.returncode == 0, out[-6000:]

    # The node was lost mid-job: after the first committed part, before the last one.
    assert report.get("removed_after_parts", 0) >= 1, report
    assert report["removed_after_parts"] < report["parts_total"], report
    assert report["cpus_before_train"] == 2  # survivor + replacement
    assert report["nodes_alive"] == 3  # head + survivor + replacement

    from georay.data.storage import filesystem_for

    fs, root = filesystem_for(b)
    ids = pq.read_table(world / "manifest.parquet", columns=["image_id"])["image_id"].to_pylist()
    scores = pq.read_table(f"{root}/curate/scores", filesystem=fs)
    assert len(ids) == N_IMAGES
    assert sorted(scores["image_id"].to_pylist()) == sorted(ids)  # every row exactly once
    assert set(scores["status"].to_pylist()) == {"ok"}
    summary = json.loads(fs.open_input_stream(f"{root}/curate/summary.json").read())
    assert summary["rows_in"] == summary["rows_out"] == N_IMAGES
    # The fetch counts live on the driver's node, so losing a worker does not lose them.
    assert "counts_lost" not in summary["fetch"] and summary["fetch"]["objects"] >= N_IMAGES

    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert "artifact/artifact.json" in keys, keys
    assert any(k.startswith("checkpoints/multinode/") for k in keys), keys
