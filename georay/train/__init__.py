"""Stage 3: two-stage GeoReasoner fine-tuning on Ray Train (reasoning, then location)."""

from georay.train.config import TrainConfig
from georay.train.run import train

__all__ = ["TrainConfig", "train"]
