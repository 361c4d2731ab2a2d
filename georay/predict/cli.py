"""``georay predict``: flags map one-to-one to :class:`PredictConfig`."""

from georay.command import Command
from georay.predict.config import PredictConfig

COMMANDS = [
    Command(
        "predict",
        PredictConfig,
        "georay.predict.bulk:predict",
        help="geotag images in bulk with a trained model (Ray Data, resumable)",
        description="Geotag every image of --input with --model; writes OUT/predictions/*.parquet "
        "(one row per image, ok or error) and OUT/summary.json. Rerun to resume.",
    )
]
