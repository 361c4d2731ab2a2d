"""``georay train``: one fine-tuning stage on Ray Train."""

from __future__ import annotations

import argparse
import json

from georay.config import add_dataclass_args, from_args
from georay.train.config import TrainConfig


def _run(args: argparse.Namespace) -> int:
    from georay.runtime import init_ray
    from georay.train.run import train

    cfg = from_args(TrainConfig, args)
    init_ray(args.address or None, log_to_driver=False)
    summary = train(cfg)
    summary.pop("losses", None)
    print(json.dumps(summary, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a VLM for one stage (reasoning, then location) on Ray Train",
        description=(
            "Train one GeoReasoner stage and write an artifact (base model + adapters + "
            "processor) that `georay predict --model` loads. Stage 2: --stage location --model "
            "STAGE1_ARTIFACT. Rerun with the same --storage-path and --name to resume. "
            "Tiny presets: --preset georay/train/presets/tiny_reasoning.yaml."
        ),
    )
    add_dataclass_args(parser, TrainConfig)
    parser.add_argument(
        "--address", default="", help="Ray cluster address (default: start or join a local one)"
    )
    parser.set_defaults(func=_run)
