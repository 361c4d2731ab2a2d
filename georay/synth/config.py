"""Settings of ``georay synth`` (one CLI flag per field)."""

from __future__ import annotations

from dataclasses import dataclass

from georay.config import Config, option
from georay.synth.draw import CITY_PANELS, STYLES


@dataclass(kw_only=True)
class SynthConfig(Config):
    """Draw a synthetic street-view world: JPEGs, manifest, clues (deterministic for a seed)."""

    output: str = option(help="output folder or s3:// prefix", path="out", aliases=("--out",))
    n: int = option(200, help="number of (valid) views to draw")
    countries: int = option(8, help=f"number of countries, 1..{len(STYLES)} (fixed order)")
    seed: int = option(0, help="random seed; same seed, same bytes")
    width: int = option(640, help="image width in pixels")
    height: int = option(480, help="image height in pixels")
    low_locatability: float = option(
        0.15, help="share of low-locatability views (sky, wall, vegetation)"
    )
    corrupt: int = option(0, help="extra broken files (truncated, zero-byte, text, huge header)")
    duplicates: int = option(
        0,
        help="extra copies of drawn views (byte copy, JPEG re-encode, resize, edge trim) at the "
        "same place, with a duplicate_of column naming the view copied (dedup ground truth)",
    )
    test_share: float = option(0.2, help="share of views in split 'test' (by a hash of image_id)")
    val_share: float = option(
        0.0,
        help="share of views in split 'val' (labelled, never trained on: for calibration), "
        "taken from the train views",
    )
    cities_per_country: int = option(3, help=f"cities per country, 1..{len(CITY_PANELS)}")
    jpeg_quality: int = option(90, help="JPEG quality, 50..100")
    exif_share: float = option(
        0.0,
        help="share of the drawn views whose JPEG carries EXIF GPS of where it was taken (a "
        "partly geotagged archive); the manifest's exif_gps column says which",
    )
    workers: int = option(0, help="drawing processes; 0 = one per CPU, 1 = in this process")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if not 1 <= self.countries <= len(STYLES):
            raise ValueError(f"countries must be in 1..{len(STYLES)}, got {self.countries}")
        if self.width < 64 or self.height < 48:
            raise ValueError(f"image size must be at least 64x48, got {self.width}x{self.height}")
        if not 0.0 <= self.low_locatability <= 1.0:
            raise ValueError(f"low_locatability must be in [0, 1], got {self.low_locatability}")
        if not 0.0 <= self.test_share <= 1.0:
            raise ValueError(f"test_share must be in [0, 1], got {self.test_share}")
        if not 0.0 <= self.val_share <= 1.0 - self.test_share:
            raise ValueError(f"val_share must be in [0, 1 - test_share], got {self.val_share}")
        if self.corrupt < 0:
            raise ValueError(f"corrupt must be >= 0, got {self.corrupt}")
        if self.duplicates < 0:
            raise ValueError(f"duplicates must be >= 0, got {self.duplicates}")
        if self.duplicates and not self.n:
            raise ValueError("duplicates need drawn views to copy (n >= 1)")
        if not 1 <= self.cities_per_country <= len(CITY_PANELS):
            raise ValueError(f"cities_per_country must be in 1..{len(CITY_PANELS)}")
        if not 50 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 50..100, got {self.jpeg_quality}")
        if not 0.0 <= self.exif_share <= 1.0:
            raise ValueError(f"exif_share must be in [0, 1], got {self.exif_share}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
