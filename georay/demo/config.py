"""Settings of ``georay demo`` (one CLI flag per field)."""

from __future__ import annotations

from dataclasses import dataclass

from georay.config import RayConfig, option


@dataclass(kw_only=True)
class DemoConfig(RayConfig):
    """The whole pipeline on a synthetic world with tiny models (local Ray, CPU)."""

    output: str = option("runs/demo", help="run folder for every stage", path="out")
    n: int = option(1200, help="synthetic views to draw")
    countries: int = option(8, help="countries in the synthetic world")
    seed: int = option(0, help="seed of the world and the tiny models")
    corrupt: int = option(4, help="broken files mixed into the world (they become error rows)")
    duplicates: int = option(
        48, help="planted copies of views in the world (curate dedup should drop them)"
    )
    base_preset: str = option(
        "tiny_base", help="pretraining stand-in preset (a file, or a name shipped in georay.train)"
    )
    reasoning_preset: str = option(
        "tiny_reasoning", help="stage-1 train preset (a file, or a name shipped in georay.train)"
    )
    location_preset: str = option(
        "tiny_location", help="stage-2 train preset (a file, or a name shipped in georay.train)"
    )
    fresh: bool = option(
        True, help="delete an earlier demo run in the output folder first (else resume)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 50:
            raise ValueError(f"n must be >= 50 for a meaningful demo, got {self.n}")
        if self.countries < 2:
            raise ValueError(f"countries must be >= 2, got {self.countries}")
        if self.corrupt < 0 or self.duplicates < 0:
            raise ValueError("corrupt and duplicates must be >= 0")
