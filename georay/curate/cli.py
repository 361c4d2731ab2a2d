"""``georay curate fit | score | dedup | balance``: flags map one-to-one to their configs."""

from georay.command import Command, Group, show_json
from georay.curate.config import BalanceConfig, DedupConfig, FitConfig, ScoreConfig


def _show_fit(info: dict) -> str:
    return show_json({"encoder": info["encoder"]["id"], "metrics": info["metrics"]["holdout"]})


COMMANDS = [
    Group(
        "curate",
        help="locatability teacher/student: fit, score; then dedup and balance the curated set",
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
            Command(
                "dedup",
                DedupConfig,
                "georay.curate.dedup:dedup",
                help="drop exact copies, perceptual copies and near duplicates of a scored set",
                description="Read a `curate score` output (--sha256 for exact copies, --phash "
                "for edited copies, --embeddings for near duplicates) and decide every row once: "
                "OUT/dedup/ (kept, duplicate_of, similarity, reason) and OUT/summary.json. "
                "Copies are searched within H3 cells (pHash within --hamming bits, faiss kNN at "
                "cosine >= --similarity); the most locatable view of each group is kept. Rerun "
                "to resume.",
            ),
            Command(
                "balance",
                BalanceConfig,
                "georay.curate.balance:balance",
                help="cap the curated views per H3 cell (and country), keeping the most locatable",
                description="Write OUT/curated/ (the balanced set), OUT/decisions.parquet, "
                "OUT/cells.csv, OUT/balance.png and OUT/summary.json from a `curate score` "
                "output, leaving out what `curate dedup` (--dedup) dropped.",
            ),
        ],
    )
]
