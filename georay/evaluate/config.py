"""Settings of ``georay evaluate`` (one CLI flag per field)."""

from __future__ import annotations

from dataclasses import dataclass

from georay.config import Config, option, split_name

ABSTAINED = ("unanswered", "answered")


@dataclass(kw_only=True)
class EvaluateConfig(Config):
    """Score predictions against ground truth."""

    predictions: list[str] = option(
        help="predictions: a Parquet/CSV/JSONL file or folder of Parquet parts; several as "
        "NAME=PATH ... (or NAME=PATH,NAME=PATH) are scored side by side on the same truth rows",
        path="in",
        named=True,
    )
    truth: str = option(
        help="ground truth: a georay manifest (image_id, lat/lon and/or country/city) or a "
        "benchmark table (OSV-5M, Im2GPS3k / MP-16, YFCC4k / YFCC26k: recognised by its columns)",
        path="in",
    )
    truth_columns: str = option(
        "",
        help="columns of a --truth table in no known layout, as id=COL,lat=COL,lon=COL"
        "[,country=COL,city=COL]",
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

    abstained: str = option(
        "unanswered",
        help="how the headline counts rows whose prediction abstained (under its "
        "--min-confidence): 'unanswered' or 'answered' (as the answer they keep); confidence "
        "figures always use their answer",
    )
    calibration: list[str] = option(
        factory=list,
        help="calibration to apply to the confidences read, for figures before and after: a "
        "calibration.json or the model/gallery folder holding one, as NAME=PATH per method "
        "(one unnamed PATH with one method)",
        path="in",
        named=True,
    )

    def __post_init__(self) -> None:
        if isinstance(self.predictions, str):  # one path, as Python callers give it
            self.predictions = [self.predictions]
        super().__post_init__()
        methods = self.methods()  # validates names
        if not methods:
            raise ValueError("predictions: give at least one predictions file or folder")
        if isinstance(self.h3_resolution, (int, str)):
            self.h3_resolution = [int(r) for r in str(self.h3_resolution).split(",")]
        if not self.h3_resolution or any(not 0 <= int(r) <= 15 for r in self.h3_resolution):
            raise ValueError(
                f"h3_resolution must be H3 resolutions in 0..15, got {self.h3_resolution}"
            )
        self.h3_resolution = sorted({int(r) for r in self.h3_resolution})
        if self.abstained not in ABSTAINED:
            raise ValueError(f"abstained must be one of {ABSTAINED}, got {self.abstained!r}")
        if isinstance(self.calibration, str):
            self.calibration = [self.calibration] if self.calibration else []
        self.calibrations()  # validates names
        if self.map_resolution is not None and self.map_resolution not in self.h3_resolution:
            raise ValueError(
                f"map_resolution {self.map_resolution} must be one of h3_resolution "
                f"{self.h3_resolution}"
            )

    def methods(self) -> dict[str, str]:
        """Method name -> predictions path, in the order given. An unnamed path is called
        ``predictions`` (or after its folder when there are several)."""
        out: dict[str, str] = {}
        for value in self.predictions:
            name, path = split_name(value)
            if not name:
                name = "predictions" if len(self.predictions) == 1 else _default_name(path)
            if name in out:
                raise ValueError(f"predictions: method name {name!r} given twice; name them "
                                 "NAME=PATH")  # fmt: skip
            out[name] = path
        return out

    def calibrations(self) -> dict[str, str]:
        """Method name -> calibration path (``--calibration``)."""
        methods, out = self.methods(), {}
        for value in self.calibration:
            name, path = split_name(value)
            if not name:
                if len(methods) != 1:
                    raise ValueError("calibration: name the method of each calibration as "
                                     "NAME=PATH when several predictions are scored")  # fmt: skip
                name = next(iter(methods))
            if name not in methods:
                raise ValueError(f"calibration: no predictions named {name!r} (methods: "
                                 f"{', '.join(methods)})")  # fmt: skip
            if name in out:
                raise ValueError(f"calibration: method {name!r} given twice")
            out[name] = path
        return out


def _default_name(path: str) -> str:
    """A method name from a path: ``runs/knn/predictions`` -> ``knn``."""
    parts = [p for p in path.rstrip("/").split("/") if p]
    tail = parts[-2] if len(parts) > 1 and parts[-1] == "predictions" else parts[-1]
    return tail.split(".")[0] or "predictions"
