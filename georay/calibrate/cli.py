"""``georay calibrate``: flags map one-to-one to :class:`CalibrateConfig`."""

from georay.calibrate.config import CalibrateConfig
from georay.command import Command

COMMANDS = [
    Command(
        "calibrate",
        CalibrateConfig,
        "georay.calibrate.fit:calibrate",
        help="fit confidence calibration (temperature, isotonic) on labelled predictions",
        description="Score --input predictions against --truth (as georay evaluate does), fit "
        "per level (country, city) a temperature and an isotonic map from each row's "
        "confidence to whether it was right, and write calibration.json next to --model (or "
        "into --output), where producers load it (georay.protocol.calibration); georay "
        "evaluate --calibration shows the figures before and after.",
    )
]
