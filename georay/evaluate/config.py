"""Settings of ``georay evaluate`` (one CLI flag per field)."""

from __future__ import annotations

from dataclasses import dataclass

from georay.config import Config, option


@dataclass(kw_only=True)
class EvaluateConfig(Config):
    """Score predictions against ground truth."""

    predictions: str = option(
        help="predictions: Parquet/CSV/JSONL file or folder of Parquet parts", path="in"
    )
    truth: str = option(
        help="ground truth (manifest-like: image_id, lat/lon and/or country/city)", path="in"
    )
    output: str = option(help="report folder (local or s3://)", path="out")
    h3_resolution: list[int] = option(
        factory=lambda: [3, 5], help="H3 resolutions of the cell tables", aliases=("--h3-res",)
    )
    split: str = option(
        "", help="score only truth rows of this split (truth 'split' column); '' = all"
    )
    plots: bool = option(True, help="draw the PNG figures")
    map_resolution: int | None = option(
        None, help="H3 resolution drawn on the map (default: the coarsest)", aliases=("--map-res",)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.h3_resolution, (int, str)):
            self.h3_resolution = [int(r) for r in str(self.h3_resolution).split(",")]
        if not self.h3_resolution or any(not 0 <= int(r) <= 15 for r in self.h3_resolution):
            raise ValueError(
                f"h3_resolution must be H3 resolutions in 0..15, got {self.h3_resolution}"
            )
        self.h3_resolution = sorted({int(r) for r in self.h3_resolution})
        if self.map_resolution is not None and self.map_resolution not in self.h3_resolution:
            raise ValueError(
                f"map_resolution {self.map_resolution} must be one of h3_resolution "
                f"{self.h3_resolution}"
            )
