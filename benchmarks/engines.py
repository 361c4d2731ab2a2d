"""The two generation engines side by side: transformers' generate() vs vLLM, same model, images
and run. Runs in .venv-vllm (it has both engines):

    .venv-vllm/bin/python -m benchmarks.engines                 # CPU, the tiny model
    .venv-vllm/bin/python -m benchmarks.engines --model Qwen/Qwen2-VL-2B-Instruct --gpu \\
        --images 500 --requests 512 --max-new-tokens 128       # the GPU recipe (see README)

* bulk: ``georay predict --engine hf`` vs ``--engine vllm`` on the same N and 4N images, end to
  end (engine start-up included), and the rate once started (the extra 3N images / extra seconds);
* online: the same Serve app with either engine, 16 concurrent clients, requests/s and latency.

No target on CPU: vLLM's CPU backend exists for development, and a ~200K-parameter model leaves
nothing for continuous batching and a paged KV cache to win. The figures say what each engine
costs here; the GPU recipe measures what they are for. Writes the ``engines`` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import Conditions, write_section
from benchmarks.predict import _free_port, _load


def bulk(model: str, images: Path, engine: str, args) -> dict:
    """End-to-end seconds of ``georay predict`` on the first N and on all 4N images (median of
    ``--repeat`` runs each); the difference gives the rate once the engine is up."""
    from georay.predict import PredictConfig, predict

    def run(folder: Path) -> float:
        with tempfile.TemporaryDirectory() as out:
            cfg = PredictConfig(model=model, input=str(folder), output=out, engine=engine,
                                max_new_tokens=args.max_new_tokens, batch_size=args.batch,
                                max_num_seqs=args.batch)  # fmt: skip
            t = time.perf_counter()
            summary = predict(cfg)
            assert summary["rows_out"] == len(list(folder.glob("*.jpg")))
            return time.perf_counter() - t

    files = sorted(images.glob("*.jpg"))
    small, every = images.parent / "first", images.parent / "all"
    for folder, chosen in ((small, files[: args.images]), (every, files[: 4 * args.images])):
        folder.mkdir(exist_ok=True)
        for f in chosen:
            shutil.copy(f, folder / f.name)
    n_small, n_all = args.images, min(len(files), 4 * args.images)
    t_small = statistics.median(run(small) for _ in range(args.repeat))
    t_all = statistics.median(run(every) for _ in range(args.repeat))
    return {"images": n_all, "seconds": t_all, "ips": n_all / t_all, "images_small": n_small,
            "seconds_small": t_small, "steady_ips": (n_all - n_small) / (t_all - t_small)}  # fmt: skip


def online(model: str, requests: list[bytes], engine: str, args) -> dict:
    from ray import serve

    from georay.serve.app import build_app
    from georay.serve.config import ServeConfig

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    cfg = ServeConfig(model=model, engine=engine, max_new_tokens=args.max_new_tokens,
                      batch_size=args.concurrency, max_ongoing_requests=64,
                      max_queued_requests=512, max_num_seqs=args.concurrency,
                      cpus_per_replica=1.0, gpus_per_replica=1.0 if args.gpu else 0.0)  # fmt: skip
    try:
        t = time.perf_counter()
        serve.run(build_app(cfg), name=f"bench-{engine}", route_prefix="/")
        startup = time.perf_counter() - t
        url = f"http://127.0.0.1:{port}/v1/geolocate"
        asyncio.run(_load(url, requests[: args.concurrency * 2], args.concurrency))  # warm up
        runs = [asyncio.run(_load(url, requests, args.concurrency)) for _ in range(args.repeat)]
    finally:
        serve.shutdown()
    latencies = sorted(x for _, lat in runs for x in lat)
    return {
        "rps": statistics.median(len(requests) / wall for wall, _ in runs),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p95_ms": 1000 * latencies[int(len(latencies) * 0.95)],
        "startup_s": startup,
    }


def report(args, conditions: Conditions, res: dict) -> str:
    hf, vl = res["hf"], res["vllm"]
    return f"""## engines

{conditions.line()} Model: `{args.model}`; {args.max_new_tokens} new tokens at most per image,
greedy; synthetic 640x480 street views. {"GPU" if args.gpu else "CPU only: no GPU ran this"}.

| bulk, `georay predict --engine hf\\|vllm`, medians of {args.repeat} runs | hf | vllm | vllm / hf |
|---|---|---|---|
| {hf["bulk"]["images_small"]} images, seconds end to end (engine start included) \
| {hf["bulk"]["seconds_small"]:.1f} | {vl["bulk"]["seconds_small"]:.1f} \
| {hf["bulk"]["seconds_small"] / vl["bulk"]["seconds_small"]:.2f} (speed) |
| {hf["bulk"]["images"]} images, images/s end to end | {hf["bulk"]["ips"]:.2f} \
| {vl["bulk"]["ips"]:.2f} | {vl["bulk"]["ips"] / hf["bulk"]["ips"]:.2f} |
| images/s once started: the extra {hf["bulk"]["images"] - hf["bulk"]["images_small"]} images \
/ the extra seconds | {hf["bulk"]["steady_ips"]:.2f} | {vl["bulk"]["steady_ips"]:.2f} \
| {vl["bulk"]["steady_ips"] / hf["bulk"]["steady_ips"]:.2f} |

| online, {args.concurrency} concurrent clients, {args.requests} requests | requests/s | p50 ms \
| p95 ms | replica start s |
|---|---|---|---|---|
| `georay serve --engine hf` (`@serve.batch`, up to {args.concurrency}) | {hf["online"]["rps"]:.2f} \
| {hf["online"]["p50_ms"]:.0f} | {hf["online"]["p95_ms"]:.0f} | {hf["online"]["startup_s"]:.0f} |
| `georay serve --engine vllm` (continuous batching) | {vl["online"]["rps"]:.2f} \
| {vl["online"]["p50_ms"]:.0f} | {vl["online"]["p95_ms"]:.0f} | {vl["online"]["startup_s"]:.0f} |
| vllm / hf | {vl["online"]["rps"] / hf["online"]["rps"]:.2f} | | | |
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny' (built in code), a dir or hub id")
    parser.add_argument("--images", type=int, default=128, help="bulk runs use N and 4N images")
    parser.add_argument("--requests", type=int, default=64, help="requests per online run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--batch", type=int, default=16, help="images per model call / engine")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--gpu", action="store_true", help="one GPU per actor and replica")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    conditions = Conditions()

    import ray

    from georay.models.vlm import tiny_qwen2vl
    from georay.predict.vllm_engine import CPU_ENV, use_cpu_env
    from georay.synth import SynthConfig, generate_world

    work = Path(tempfile.mkdtemp(prefix="georay-bench-engines-"))
    model = args.model
    if model == "tiny":
        tiny_qwen2vl(save_dir=work / "model")
        model = str(work / "model")
    generate_world(SynthConfig(output=str(work / "world"), n=4 * args.images, countries=8))
    files = sorted((work / "world" / "images").glob("*.jpg"))
    requests = [files[i % len(files)].read_bytes() for i in range(args.requests)]
    env = {} if args.gpu else {"env_vars": CPU_ENV}
    if not args.gpu:
        use_cpu_env()
    ray.init(include_dashboard=False, log_to_driver=False, runtime_env=env)
    ray.data.DataContext.get_current().enable_progress_bars = False
    results: dict = {}
    try:
        for engine in ("hf", "vllm"):
            results[engine] = {"bulk": bulk(model, work / "world" / "images", engine, args)}
            results[engine]["online"] = online(model, requests, engine, args)
            print(engine, results[engine], flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    text = report(args, conditions, results)
    print(text)
    if not args.no_write:
        write_section("engines", text)


if __name__ == "__main__":
    main()
