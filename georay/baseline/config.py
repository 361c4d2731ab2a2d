"""Settings of ``georay baseline zeroshot`` and ``georay baseline knn`` (one flag per field)."""

from __future__ import annotations

from dataclasses import dataclass

from georay.config import Confident, option
from georay.pipeline.settings import BulkSettings, TorchThreads
from georay.predict.config import GallerySearch


@dataclass(kw_only=True)
class BaselineSettings(BulkSettings, TorchThreads, Confident):
    """What both baselines share besides the bulk-job flags."""

    DEFAULTS = {"batch_size": 64}

    h3_resolution: int = option(5, help="H3 resolution of the h3 column")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError(f"h3_resolution must be in 0..15, got {self.h3_resolution}")


@dataclass(kw_only=True)
class ZeroShotConfig(BaselineSettings):
    """``georay baseline zeroshot``: CLIP zero-shot geolocation, as StreetCLIP does it."""

    encoder: str = option(
        "tiny",
        help="CLIP with both towers: an open_clip name ('tiny' built in code, 'ViT-B-32', "
        "'hf-hub:...') or a transformers CLIP folder, s3:// prefix or hub id "
        "(e.g. geolocal/StreetCLIP)",
        path="model",
    )
    pretrained: str | None = option(
        None, help="open_clip pretrained tag or checkpoint; empty = random init"
    )
    seed: int = option(0, help="random-init seed of an in-code or untrained open_clip model")
    countries: list[str] = option(
        factory=list,
        help="countries to choose among, as ISO codes or names (default: every country with a "
        "GeoNames place)",
    )
    cities_per_country: int = option(
        20, help="the predicted country's most populous places to choose the city among"
    )
    country_caption: str = option(
        "A Street View photo in {country}.", help="caption of each country (StreetCLIP's)"
    )
    city_caption: str = option(
        "A Street View photo from {city}, {country}.", help="caption of each city"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cities_per_country < 1:
            raise ValueError(f"cities_per_country must be >= 1, got {self.cities_per_country}")
        if "{country}" not in self.country_caption:
            raise ValueError("country_caption must contain {country}")
        if "{city}" not in self.city_caption:
            raise ValueError("city_caption must contain {city}")


@dataclass(kw_only=True)
class KnnConfig(BaselineSettings, GallerySearch):
    """``georay baseline knn``: place each image where its nearest gallery images were taken."""

    gallery: str = option(
        help="a `georay curate score --embeddings` output: its embeddings/ are the gallery",
        path="in",
    )
    head: str = option(
        help="the curate head whose encoder embedded the gallery; queries are embedded with it",
        path="in",
    )
