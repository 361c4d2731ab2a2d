"""What the VLM's confidence costs: ``georay predict`` with ``--confidence`` (token
probabilities + top-k alternatives completed greedily) against ``--no-confidence`` (main's code
path), same model, images and run, on and off interleaved:

    .venv/bin/python -m benchmarks.confidence_cost                       # HF engine
    .venv-vllm/bin/python -m benchmarks.confidence_cost --engine vllm    # ray.data.llm

The model is the tiny Qwen2-VL fine-tuned to answer France / Paris (tests/support.py), so every
row has a country to branch on and the alternatives really are generated (a random model answers
nothing and would cost nothing extra). Target (issue 20): images/s ratio on/off >= 0.9. Writes the
``confidence-cost-<engine>`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Conditions, write_section

ANSWER = dict(country="France", city="Paris", reasons="Slate roofs and limestone walls.")


def _model(work: Path) -> str:
    # The test suite's trainer: the same model the confidence tests use.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support import france_model

    path = work / "paris"
    path.mkdir()
    france_model(path, ANSWER, min_steps=150)
    return str(path)


def run(model: str, images: str, confidence: bool, args) -> float:
    from georay.predict import PredictConfig, predict

    with tempfile.TemporaryDirectory() as out:
        extra = {"max_num_seqs": args.batch} if args.engine == "vllm" else {}
        cfg = PredictConfig(model=model, input=images, output=out, engine=args.engine,
                            confidence=confidence, top_k=args.top_k, batch_size=args.batch,
                            max_new_tokens=args.max_new_tokens, **extra)  # fmt: skip
        t = time.perf_counter()
        summary = predict(cfg)
        assert summary["rows_out"] == args.images and summary["error"] == 0
        return args.images / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="hf", choices=("hf", "vllm"))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    conditions = Conditions()
    from georay.runtime import init_ray
    from georay.synth import SynthConfig, generate_world

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate_world(SynthConfig(output=str(work / "world"), n=args.images, countries=8))
        model = _model(work)
        init_ray(None)
        rates = {True: [], False: []}
        for _ in range(args.repeat):  # interleaved: both see the same drift in load
            for confidence in (False, True):
                rates[confidence].append(run(model, str(work / "world" / "images"), confidence,
                                             args))  # fmt: skip
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    text = "\n".join([
        f"## confidence-cost-{args.engine}", "",
        f"{conditions.line()} `georay predict --engine {args.engine}` end to end on "
        f"{args.images} synthetic 640x480 views, batch {args.batch}, top-k {args.top_k}, "
        f"max {args.max_new_tokens} new tokens, the tiny model trained to answer France/Paris; "
        f"`--confidence` and `--no-confidence` interleaved, {args.repeat} runs each (median).",
        "", "| what | images/s |", "|---|---|",
        f"| --no-confidence (main's path) | {off:.2f} ({', '.join(f'{r:.2f}' for r in rates[False])}) |",
        f"| --confidence | {on:.2f} ({', '.join(f'{r:.2f}' for r in rates[True])}) |",
        f"| ratio on/off (target >= 0.9) | **{on / off:.2f}** |",
    ])  # fmt: skip
    print(text)
    write_section(f"confidence-cost-{args.engine}", text)


if __name__ == "__main__":
    main()
