"""``georay evaluate --predictions P --truth T --output DIR [--h3-res 3,5]``."""

from __future__ import annotations

import argparse
import json

from georay.config import add_dataclass_args, from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    from georay.evaluate.evaluator import EvaluateConfig

    parser = subparsers.add_parser(
        "evaluate",
        help="score predictions against ground truth: P/R/F1, km accuracy, GeoScore, H3 maps",
        description="Join predictions to truth on image_id and write metrics.json, per-country "
        "and per-H3-cell Parquet tables, figures and report.md into --output.",
    )
    add_dataclass_args(parser, EvaluateConfig)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from georay.evaluate.evaluator import EvaluateConfig, evaluate

    cfg = from_args(EvaluateConfig, args)
    metrics = evaluate(cfg)
    keep = ("n", "country", "city", "acc_km", "geoscore", "median_km", "mean_km")
    print(json.dumps({k: metrics[k] for k in keep}, indent=2))
    print(f"report: {cfg.output.rstrip('/')}/report.md")
    return 0
