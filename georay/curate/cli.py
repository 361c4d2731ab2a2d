"""``georay curate fit | score``: flags map one-to-one to :class:`FitConfig` / :class:`ScoreConfig`."""

from __future__ import annotations

import argparse
import json

from georay.config import add_dataclass_args, from_args
from georay.curate.config import FitConfig, ScoreConfig


def _fit(args: argparse.Namespace) -> int:
    from georay.curate.fit import fit

    cfg = from_args(FitConfig, args)
    info = fit(cfg)
    print(json.dumps({"output": cfg.output, "encoder": info["encoder"]["id"],
                      "metrics": info["metrics"]["holdout"]}, indent=2))  # fmt: skip
    return 0


def _score(args: argparse.Namespace) -> int:
    from georay.curate.score import score

    cfg = from_args(ScoreConfig, args)
    print(json.dumps(score(cfg), indent=2))
    return 0


def register(subparsers) -> None:
    """Add ``curate fit`` and ``curate score`` to the ``georay`` command."""
    curate = subparsers.add_parser("curate", help="locatability teacher/student: fit, score")
    sub = curate.add_subparsers(dest="curate_command", metavar="{fit,score}", required=True)
    fit = sub.add_parser("fit", help="fit the CLIP student head on teacher-labelled images")
    add_dataclass_args(fit, FitConfig)
    fit.set_defaults(func=_fit)
    score = sub.add_parser("score", help="score images (manifest, folder, S3, WebDataset)")
    add_dataclass_args(score, ScoreConfig)
    score.set_defaults(func=_score)
