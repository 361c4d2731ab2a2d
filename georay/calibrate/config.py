"""Settings of ``georay calibrate`` (one CLI flag per field)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from georay.config import Config, option
from georay.protocol.calibration import MAPS


@dataclass(kw_only=True)
class CalibrateConfig(Config):
    """Fit confidence calibration on labelled predictions and store it next to the model."""

    model: str = option(
        "",
        help="the model artifact or kNN gallery folder the predictions came from (local or "
        "s3://): calibration.json is written there unless --output says where",
        path="model",
    )
    input: str = option(
        help="predictions with confidence columns (a Parquet/CSV/JSONL file or folder of "
        "Parquet parts), made on labelled rows the model did not train on",
        path="in",
    )
    truth: str = option(
        help="ground truth of those rows: a georay manifest or a benchmark table (as "
        "`georay evaluate --truth`)",
        path="in",
    )
    truth_columns: str = option(
        "",
        help="columns of a --truth table in no known layout, as id=COL,lat=COL,lon=COL"
        "[,country=COL,city=COL]",
    )
    split: str = option(
        "", help="fit only on truth rows of this split (truth 'split' column), e.g. val; '' = all"
    )
    output: str = option(
        "",
        help="a folder (calibration.json in it; other methods' entries in it are kept) or a "
        ".json file; default: --model",
        path="out",
    )
    method: str = option(
        "",
        help="name the maps are stored under (default: the predictions' `method` column when "
        "it holds one value, else 'default'); a file holding one method serves any name",
    )
    map: str = option(
        "auto",
        help="the map producers apply: temperature, isotonic, or auto (the lowest 5-fold "
        "cross-validated Brier score of the two and of the raw confidences, kept as 'none' "
        "when neither map beats them); both maps are fitted and stored",
    )
    min_rows: int = option(
        20,
        help="fewest labelled rows with a confidence to fit a level; a level with fewer is "
        "left uncalibrated (and said so)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.model or self.output):
            raise ValueError("give --model (calibration.json is written next to it) or --output")
        if not self.output and not _holds_files(self.model):
            # A built-in or hub model (zero-shot's 'tiny', geolocal/StreetCLIP) has no folder
            # of ours: writing "next to it" would make a stray relative folder.
            raise ValueError(f"--model {self.model!r} is no folder or s3:// prefix to write "
                             "calibration.json into: give --output, and that path to the "
                             "job's --calibration")  # fmt: skip
        if self.map not in MAPS:
            raise ValueError(f"map must be one of {', '.join(MAPS)}, got {self.map!r}")
        if self.min_rows < 2:
            raise ValueError(f"min_rows must be at least 2, got {self.min_rows}")

    @property
    def destination(self) -> str:
        """Where calibration.json goes: --output, else next to --model."""
        return self.output or self.model


def _holds_files(model: str) -> bool:
    """An existing local folder, an ``s3://`` prefix (a gallery, an artifact) or a .json file."""
    return model.startswith("s3://") or model.endswith(".json") or os.path.isdir(model)
