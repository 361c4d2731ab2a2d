"""``georay baseline zeroshot | knn``: flags map one-to-one to the baseline configs."""

from georay.baseline.config import KnnConfig, ZeroShotConfig
from georay.command import Command, Group

COMMANDS = [
    Group(
        "baseline",
        help="baselines that write the predictions contract: CLIP zero-shot, kNN retrieval",
        commands=[
            Command(
                "zeroshot",
                ZeroShotConfig,
                "georay.baseline.zeroshot:zeroshot",
                help="CLIP zero-shot geolocation as StreetCLIP does it (country, then city)",
                description="Place every image of --input with CLIP captions: the country whose "
                "caption matches best, then the best of its most populous cities; confidences "
                "are the captions' softmax (calibrated by a calibration.json next to --encoder "
                "or given with --calibration), candidates the top --top-k countries. Writes "
                "OUT/predictions/ (one row per image, ok or error) and OUT/summary.json; rerun "
                "to resume.",
            ),
            Command(
                "knn",
                KnnConfig,
                "georay.baseline.knn:knn",
                help="retrieval: place each image where its nearest gallery images were taken",
                description="Embed every image of --input with --head's encoder and place it at "
                "the similarity-weighted medoid of its k nearest --gallery images (a `georay "
                "curate score --embeddings` output; faiss index). Confidences: the similarity "
                "weights of its --vote-neighbours nearest images grouped by place, calibrated by "
                "the calibration.json next to --gallery. Writes OUT/predictions/ and "
                "OUT/summary.json; rerun to resume.",
            ),
        ],
    )
]
