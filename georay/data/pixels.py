"""Opening an image safely: Pillow with HEIC/HEIF registered, the pixel limit checked on the
header, and the two conversions every decoder ends with (RGB, resize).

The layer below :mod:`georay.data.images` (the decode geometries) and :mod:`georay.data.raw`
(camera RAW), which both build on it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError

# HEIC/HEIF (every iPhone photo since 2017). libheif applies the file's rotation (irot/imir)
# while decoding and pillow-heif then reports EXIF orientation 1, so nothing rotates twice.
# Thumbnails, depth and auxiliary images are never used: do not read them.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

# 8K x 8K: far above any street view or archive scan we expect, far below what exhausts memory.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000


class ImageDecodeError(Exception):
    """An image that cannot be decoded; ``reason`` is a short, stable description."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def open_image(data: bytes, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Open (header only) an image from bytes, enforcing the pixel limit.

    Parameters
    ----------
    data
        Encoded image bytes.
    max_image_pixels
        Largest width * height accepted, checked on the header before decoding.

    Returns
    -------
    PIL.Image.Image
        A lazily loaded image (pixels not decoded yet).
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    # Our limit is checked on the header below. Pillow's own (process-global) check only
    # warns up to 2x its MAX_IMAGE_PIXELS and raises beyond; we never touch that global, which
    # would race between threads, and turn its error into ours.
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"too many pixels: {err}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised format)") from None
    except Exception as err:  # corrupt headers raise many types inside Pillow
        raise ImageDecodeError(f"unreadable image header: {type(err).__name__}: {err}") from None
    check_pixels(*img.size, max_image_pixels)
    return img


def check_pixels(width: int, height: int, max_image_pixels: int) -> None:
    """Raise :class:`ImageDecodeError` for an empty or too large ``width x height``."""
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"invalid image size {width}x{height}")
    if width * height > max_image_pixels:
        raise ImageDecodeError(
            f"too many pixels: {width}x{height} = {width * height} > "
            f"max_image_pixels={max_image_pixels}"
        )


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says: ``format`` (Pillow's name, or the RAW kind such as
    ``"DNG"``), ``width`` and ``height`` as displayed, and its ``exif``."""

    format: str
    width: int
    height: int
    exif: Image.Exif


def resize_rgb(img: Image.Image, size: tuple[int, int] | None) -> np.ndarray:
    """An RGB image resized to ``size`` (None: as it is), as ``(H, W, 3)`` uint8."""
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(img, dtype=np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert to RGB; transparent pixels are composited on white, not black."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
