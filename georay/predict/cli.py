"""``georay predict``: bulk geotagging of an image folder, S3 prefix or manifest."""

from __future__ import annotations

import argparse
import json

from georay.config import add_dataclass_args, from_args


def _run(args: argparse.Namespace) -> int:
    from georay.predict.bulk import PredictConfig, predict

    summary = predict(from_args(PredictConfig, args))
    print(json.dumps(summary, indent=2))
    return 0


def register(subparsers) -> None:
    """Add ``predict`` to the ``georay`` command."""
    from georay.predict.bulk import PredictConfig

    parser = subparsers.add_parser(
        "predict",
        help="geotag images in bulk with a trained model (Ray Data, resumable)",
        description="Geotag every image of --input with --model; writes OUT/predictions/*.parquet "
        "(one row per image, ok or error) and OUT/summary.json. Rerun to resume.",
    )
    add_dataclass_args(parser, PredictConfig)
    parser.set_defaults(func=_run)
