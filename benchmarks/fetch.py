"""Reading images from S3 with S3's latency: bulk jobs against local disk, and the fetch alone.

Run: `.venv/bin/python -m benchmarks.fetch`. A moto server on loopback behind
:mod:`benchmarks.faultproxy`, which adds ``--delay-ms`` (30) to every request: what an object
store's per-request latency looks like, with no real network. In one run, on one local Ray:

* ``georay curate score`` (small encoder, random head) and ``georay predict`` (tiny Qwen2-VL)
  over the same synthetic 640x480 views, their manifest naming local files and then ``s3://``
  objects. Target: the S3 runs reach >= 0.8 of the local runs' rows/s.
* the fetch stage alone, in one process: :func:`georay.data.fetch.fetch_all` at the default
  ``--fetch-concurrency`` against a sequential loop (the same reader one object at a time, and
  ``storage.read_bytes`` one at a time, which is what main's fetch did). Target: >= 10x.

Writes the ``fetch`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import Conditions, write_section

BUCKET = "bench-fetch"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_endpoint(delay_ms: float) -> tuple[list[subprocess.Popen], str, str]:
    """moto_server and the delaying proxy, each in its own process; (processes, moto URL,
    proxy URL)."""
    port = _free_port()
    exe = Path(sys.executable).parent / "moto_server"
    moto = subprocess.Popen([str(exe if exe.exists() else "moto_server"), "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    moto_url = f"http://127.0.0.1:{port}"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.faultproxy", "--upstream", moto_url,
         "--delay-ms", str(delay_ms)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    proxy_url = proxy.stdout.readline().strip()
    for _ in range(150):
        try:
            urllib.request.urlopen(moto_url, timeout=1).close()
            break
        except Exception:
            time.sleep(0.2)
    return [moto, proxy], moto_url, proxy_url


def upload(world: Path, moto_url: str) -> list[str]:
    """The world's images into the bucket (straight to moto, not through the delay)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket=BUCKET)
    uris = []
    for path in sorted((world / "images").glob("*.jpg")):
        s3.put_object(Bucket=BUCKET, Key=f"images/{path.name}", Body=path.read_bytes())
        uris.append(f"s3://{BUCKET}/images/{path.name}")
    return uris


def manifests(world: Path, work: Path) -> dict[str, Path]:
    """The same rows with local and with ``s3://`` URIs."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from georay.data.manifest import read_manifest, write_manifest

    table = read_manifest(str(world / "manifest.parquet"))
    table = table.filter(pc.match_substring(table["uri"], ".jpg"))
    names = [Path(u).name for u in table["uri"].to_pylist()]
    s3 = table.set_column(table.schema.get_field_index("uri"), "uri",
                          pa.array([f"s3://{BUCKET}/images/{n}" for n in names]))  # fmt: skip
    out = {"local": work / "local.parquet", "s3": work / "s3.parquet"}
    write_manifest(table, str(out["local"]))
    write_manifest(s3, str(out["s3"]))
    return out


def timed(run) -> tuple[float, dict]:
    t = time.perf_counter()
    summary = run()
    return summary["rows_out"] / (time.perf_counter() - t), summary


def bench_jobs(paths: dict[str, Path], work: Path, repeat: int, tokens: int) -> dict:
    """rows/s of curate score and predict over each manifest, alternating local and S3."""
    from benchmarks.curate import head_for
    from georay.curate import ScoreConfig, score
    from georay.models.vlm import TINY_MAX_PIXELS, tiny_qwen2vl
    from georay.predict import PredictConfig, predict

    head = head_for("small", work / "head")
    tiny_qwen2vl(save_dir=work / "model")
    jobs = {
        "curate score": lambda m, o: score(ScoreConfig(input=str(m), head=str(head), output=o)),
        "predict": lambda m, o: predict(
            PredictConfig(
                model=str(work / "model"),
                input=str(m),
                output=o,
                max_new_tokens=tokens,
                batch_size=16,
                max_pixels=TINY_MAX_PIXELS,
            )
        ),  # fmt: skip
    }
    results: dict = {}
    for name, job in jobs.items():
        rates: dict[str, list[float]] = {"local": [], "s3": []}
        for i in range(repeat):
            for where, manifest in paths.items():
                out = work / f"out-{name.replace(' ', '-')}-{where}-{i}"
                rate, summary = timed(lambda j=job, m=manifest, o=out: j(m, str(o)))
                assert summary["rows_in"] == summary["rows_out"], summary
                rates[where].append(rate)
                fetch = summary.get("fetch", {})
                print(f"{name} {where} run {i}: {rate:.1f} rows/s, ok {summary['ok']}, "
                      f"fetch {fetch}", flush=True)  # fmt: skip
                shutil.rmtree(out, ignore_errors=True)
        results[name] = {w: statistics.median(r) for w, r in rates.items()}
        results[name]["rows"] = summary["rows_out"]
    return results


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds used so far by these processes (the endpoint's and this one)."""
    import psutil

    return sum(sum(psutil.Process(p).cpu_times()[:2]) for p in pids)


def bench_fetch(uris: list[str], repeat: int, pids: list[int]) -> dict:
    """objects/s of the fetch stage alone: concurrent vs one at a time; and the CPU seconds
    per object the reader, proxy and moto spent together in the concurrent runs."""
    from georay.data.fetch import FetchPolicy, fetch_all
    from georay.data.storage import read_bytes
    from georay.pipeline.settings import BulkSettings

    concurrency = BulkSettings(input="-", output="-").fetch_concurrency
    policy = FetchPolicy(concurrency=concurrency)
    fetch_all(uris[:4], policy)  # the client, once
    runs: dict[str, list[float]] = {"concurrent": [], "sequential": [], "read_bytes": []}
    seq = uris[: max(40, len(uris) // 4)]  # the slow loops on fewer objects
    cpu = []
    for _ in range(repeat):
        t, c = time.perf_counter(), _cpu_s(pids)
        results, _ = fetch_all(uris, policy)
        runs["concurrent"].append(len(uris) / (time.perf_counter() - t))
        cpu.append((_cpu_s(pids) - c) / len(uris))
        assert all(r.data for r in results)
        t = time.perf_counter()
        fetch_all(seq, FetchPolicy(concurrency=1))
        runs["sequential"].append(len(seq) / (time.perf_counter() - t))
        t = time.perf_counter()
        for uri in seq:
            read_bytes(uri)
        runs["read_bytes"].append(len(seq) / (time.perf_counter() - t))
    out = {k: statistics.median(v) for k, v in runs.items()}
    out.update(concurrency=concurrency, objects=len(uris), sequential_objects=len(seq),
               cpu_ms_per_object=1000 * statistics.median(cpu))  # fmt: skip
    return out


def report(conditions: Conditions, args, jobs: dict, fetch: dict) -> str:
    lines = [
        "## fetch",
        "",
        f"{conditions.line()} moto_server on loopback behind `benchmarks/faultproxy.py` adding "
        f"{args.delay_ms:.0f} ms to every request (each in its own process), one local Ray "
        f"(2 CPUs); {args.images} synthetic 640x480 JPEG views "
        f"(`georay synth --countries 8 --seed 0`). Medians of {args.repeat} runs; local and S3 "
        "runs alternate. Rows/s end to end (Ray Data start, actor and model load included).",
        "",
        "| bulk job | local disk rows/s | S3 + latency rows/s | S3 / local (target >= 0.8) |",
        "|---|---|---|---|",
    ]
    for name, r in jobs.items():
        detail = (
            "small encoder"
            if name == "curate score"
            else f"tiny Qwen2-VL, {args.max_new_tokens} tokens"
        )
        lines.append(f"| `{name}` ({detail}) | {r['local']:.1f} | {r['s3']:.1f} | "
                     f"**{r['s3'] / r['local']:.2f}** |")  # fmt: skip
    c, s, rb = fetch["concurrent"], fetch["sequential"], fetch["read_bytes"]
    lines += [
        "",
        f"| fetch stage alone ({fetch['objects']} objects; loops on {fetch['sequential_objects']}) "
        "| objects/s | concurrent / this |",
        "|---|---|---|",
        f"| `fetch_all`, default `--fetch-concurrency` {fetch['concurrency']} | {c:.1f} | |",
        f"| sequential loop: `fetch_all`, concurrency 1 (one GET each) | {s:.1f} | "
        f"**{c / s:.1f}x** (target >= 10x) |",
        f"| sequential loop: `storage.read_bytes` (main's fetch: pyarrow, HEAD + GET each) "
        f"| {rb:.1f} | {c / rb:.1f}x |",
        "",
        f"CPU per object in the concurrent runs (reader + proxy + moto, all Python, one host): "
        f"{fetch['cpu_ms_per_object']:.1f} ms, so {os.cpu_count()} idle CPUs cap this loopback "
        f"stand-in at ~{os.cpu_count() * 1000 / fetch['cpu_ms_per_object']:.0f} objects/s "
        f"whatever the concurrency; the latency alone would allow "
        f"{fetch['concurrency'] * 1000 / args.delay_ms:.0f}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="views in the world")
    parser.add_argument("--delay-ms", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    parser.add_argument(
        "--fetch-only", action="store_true", help="the fetch stage alone (printed, not written)"
    )
    args = parser.parse_args()
    conditions = Conditions()
    work = Path(tempfile.mkdtemp(prefix="georay-bench-fetch-"))
    procs, moto_url, proxy_url = start_endpoint(args.delay_ms)
    # Before Ray starts: its workers inherit the endpoint through the standard AWS chain.
    os.environ.update(AWS_ENDPOINT_URL=proxy_url, AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")  # fmt: skip
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    from georay.synth.world import SynthConfig, generate_world

    try:
        generate_world(SynthConfig(output=str(work / "world"), n=args.images, countries=8, seed=0))
        uris = upload(work / "world", moto_url)
        paths = manifests(work / "world", work)
        fetch = bench_fetch(uris, args.repeat, [os.getpid(), *(p.pid for p in procs)])
        print(fetch, flush=True)
        jobs = {}
        if not args.fetch_only:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            ray.data.DataContext.get_current().enable_progress_bars = False
            jobs = bench_jobs(paths, work, args.repeat, args.max_new_tokens)
    finally:
        ray.shutdown()
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    text = report(conditions, args, jobs, fetch)
    print(text)
    if not (args.no_write or args.fetch_only):
        write_section("fetch", text)


if __name__ == "__main__":
    main()
