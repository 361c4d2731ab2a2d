"""``georay train``: flags map one-to-one to :class:`TrainConfig`."""

from georay.command import Command, show_json
from georay.train.config import TrainConfig


def _show(summary: dict) -> str:
    return show_json({k: v for k, v in summary.items() if k != "losses"})


COMMANDS = [
    Command(
        "train",
        TrainConfig,
        "georay.train.run:train",
        help="fine-tune a VLM for one stage (reasoning, then location) on Ray Train",
        description="Train one GeoReasoner stage and write an artifact (base model + adapters + "
        "processor) that `georay predict --model` loads. Stage 2: --stage location --model "
        "STAGE1_ARTIFACT. Rerun with the same --storage-path and --name to resume.",
        show=_show,
        presets="georay.train",
    )
]
