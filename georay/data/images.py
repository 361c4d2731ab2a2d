"""Image decoding: bytes -> RGB uint8 array, fast and safe.

Fast: when the caller asks for a smaller size, a JPEG is decoded with DCT scaling
(``Image.draft``), which skips most of the decode work, then resized. Safe: the pixel count is
checked on the header *before* any decoding (a decompression bomb never allocates), and every
failure (zero bytes, truncated stream, not an image, too many pixels) raises
:class:`ImageDecodeError` with a short ``reason`` that pipeline stages copy into an error row.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 8K x 8K: far above any street view or archive scan we expect, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageDecodeError(Exception):
    """An image that cannot be decoded; ``reason`` is a short, stable description."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (header only) an image from bytes, enforcing the pixel limit.

    Parameters
    ----------
    data
        Encoded image bytes.
    max_pixels
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
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"too many pixels: {width}x{height} = {width * height} > max_pixels={max_pixels}"
        )
    return img


def decode_image(
    data: bytes,
    size: tuple[int, int] | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode encoded image bytes to an RGB array.

    Parameters
    ----------
    data
        Encoded bytes (JPEG, PNG, WebP, ... anything Pillow reads).
    size
        Target ``(width, height)``; ``None`` keeps the decoded size. When smaller than the image,
        JPEGs use draft mode (DCT scaling to at least ``size``) before the final resize.
    max_pixels
        Decompression-bomb limit on ``width * height`` of the stored image.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB, EXIF orientation applied.

    Raises
    ------
    ImageDecodeError
        Zero-byte, truncated, non-image or oversized input.
    """
    img = open_image(data, max_pixels=max_pixels)
    try:
        if size is not None:
            # Orientation 5-8 swap axes: draft against the stored (unrotated) layout.
            orient = img.getexif().get(0x0112, 1) if img.format in ("JPEG", "MPO") else 1
            draft_size = (size[1], size[0]) if orient in (5, 6, 7, 8) else size
            if img.format in ("JPEG", "MPO") and (
                draft_size[0] < img.size[0] and draft_size[1] < img.size[1]
            ):
                img.draft("RGB", draft_size)
        img.load()  # force the full decode here, so truncation is caught here
        img = ImageOps.exif_transpose(img)
        if img.mode != "RGB":
            img = _to_rgb(img)
        if size is not None and img.size != tuple(size):
            img = img.resize(tuple(size), Image.Resampling.BILINEAR, reducing_gap=None)
        return np.asarray(img, dtype=np.uint8)
    except ImageDecodeError:
        raise
    except OSError as err:
        raise ImageDecodeError(f"truncated or corrupt image data: {err}") from None
    except Exception as err:
        raise ImageDecodeError(f"decode failed: {type(err).__name__}: {err}") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert to RGB; transparent pixels are composited on white, not black."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 array as a baseline JPEG (deterministic bytes, no EXIF)."""
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()
