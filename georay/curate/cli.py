"""``georay curate fit | score``: flags map one-to-one to :class:`FitConfig` / :class:`ScoreConfig`."""

from georay.command import Command, Group, show_json
from georay.curate.config import FitConfig, ScoreConfig


def _show_fit(info: dict) -> str:
    return show_json({"encoder": info["encoder"]["id"], "metrics": info["metrics"]["holdout"]})


COMMANDS = [
    Group(
        "curate",
        help="locatability teacher/student: fit the student, score images",
        commands=[
            Command(
                "fit",
                FitConfig,
                "georay.curate.fit:fit",
                help="fit the CLIP student head on teacher-labelled images",
                show=_show_fit,
                presets="georay.curate",
            ),
            Command(
                "score",
                ScoreConfig,
                "georay.curate.score:score",
                help="score images (manifest, folder, S3, WebDataset); resumable",
                description="Score every image of --input with a fitted head; writes OUT/scores/ "
                "(one row per image, ok or error), OUT/curated/ (the locatable ones) and "
                "OUT/summary.json. Rerun to resume.",
            ),
        ],
    )
]
