"""Image decoding: bytes -> RGB uint8 array, fast and safe.

Fast: when the caller asks for a smaller size, a JPEG is decoded with DCT scaling
(``Image.draft``), which skips most of the decode work, then resized. Safe: the pixel count is
checked on the header *before* any decoding (a decompression bomb never allocates), and every
failure (zero bytes, truncated stream, not an image, too many pixels) raises
:class:`ImageDecodeError` with a short ``reason`` that pipeline stages copy into an error row.

Two limits, two names, everywhere in georay: ``max_image_pixels`` *rejects* larger images (a
decompression-bomb guard); ``max_pixels`` *downscales* to at most that many pixels (the size a
model sees). The two decode geometries the stages use are :func:`decode_square` (CLIP: short
side to ``side``, centre crop) and :func:`decode_fit` (VLMs: aspect kept, at most
``max_pixels``).

Formats: whatever Pillow reads (JPEG, PNG, WebP, AVIF, TIFF, ...), HEIC/HEIF through
``pillow-heif`` (registered in :mod:`georay.data.pixels`, which every decode in georay goes
through), and camera RAW files through :mod:`georay.data.raw`, all under the same pixel limit.
"""

from __future__ import annotations

import io
import math
import posixpath
from collections import Counter
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from georay.data.pixels import (  # noqa: F401  (re-exported: the decode API is here)
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageDecodeError,
    ImageHeader,
    check_pixels,
    open_image,
    resize_rgb,
    to_rgb,
)

RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".raf", ".orf", ".rw2", ".pef",
                ".srw", ".x3f")  # fmt: skip
# What the stages list in a folder of images. A RAW kind LibRaw cannot read (X3F) is listed
# anyway, so it becomes an error row that says so instead of vanishing.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic",
                  ".heif", ".hif", ".avif") + RAW_SUFFIXES  # fmt: skip
# Files every copied photo archive carries that are not photos, whatever their extension:
# macOS AppleDouble resource forks ("._IMG_0001.JPG") and folder metadata, Windows thumbnails.
_SYSTEM_FILES = {".ds_store": "macOS folder metadata (.DS_Store)",
                 "thumbs.db": "Windows thumbnail cache (Thumbs.db)",
                 "desktop.ini": "Windows folder settings (desktop.ini)"}  # fmt: skip
# EXIF orientations 5-8 rotate by 90 degrees: the displayed image has width and height swapped.
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
# Formats whose EXIF Pillow reads from the header. A PNG's eXIf chunk may follow the pixels,
# so reading it would decode the image: PNGs count as upright until decoded.
_HEADER_EXIF_FORMATS = ("JPEG", "MPO", "WEBP", "AVIF", "HEIF", "TIFF")


def _raw_kind(data: bytes) -> str | None:
    from georay.data.raw import raw_kind  # imports rawpy only when a RAW file turns up

    return raw_kind(data)


def read_header(data: bytes, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageHeader:
    """The :class:`ImageHeader` of encoded bytes, decoding no pixels.

    Raises
    ------
    ImageDecodeError
        Not an image, an unreadable header, or more than ``max_image_pixels``.
    """
    kind = _raw_kind(data)
    if kind:
        from georay.data.raw import raw_header

        return raw_header(data, kind, max_image_pixels)
    img = open_image(data, max_image_pixels=max_image_pixels)
    try:
        exif = img.getexif()
    except Exception:  # a malformed EXIF block is "no EXIF", not an unreadable image
        exif = Image.Exif()
    return ImageHeader(img.format, *display_size(img), exif)


def orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored; unreadable EXIF, or a PNG, counts as 1)."""
    if img.format not in _HEADER_EXIF_FORMATS:
        return 1
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # a malformed EXIF block means "as stored", not a failure
        return 1


def display_size(img: Image.Image) -> tuple[int, int]:
    """``(width, height)`` as displayed, after the EXIF rotation the decoder applies."""
    width, height = img.size
    return (height, width) if orientation(img) in _SWAPPING_ORIENTATIONS else (width, height)


def decode_image(
    data: bytes,
    size: tuple[int, int] | None = None,
    *,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Decode encoded image bytes (any format of the module notes) to ``(H, W, 3)`` uint8 RGB,
    EXIF orientation applied, resized to ``size`` = ``(width, height)`` when given.

    Raises
    ------
    ImageDecodeError
        Zero-byte, truncated, non-image or oversized input.
    """
    return _decode(data, lambda w, h: size, max_image_pixels)


def _decode(data: bytes, size_of: Callable, max_image_pixels: int) -> np.ndarray:
    """Decode to ``size_of(displayed width, height)`` (None: as displayed), any format."""
    try:
        kind = _raw_kind(data)
        if kind:
            from georay.data.raw import decode_raw

            return decode_raw(data, kind, size_of, max_image_pixels)
        img = open_image(data, max_image_pixels=max_image_pixels)
        size = size_of(*display_size(img))
        if size is not None:
            # Draft against the stored (unrotated) layout: orientations 5-8 swap the axes.
            swap = orientation(img) in _SWAPPING_ORIENTATIONS
            draft_size = (size[1], size[0]) if swap else size
            if img.format in ("JPEG", "MPO") and (
                draft_size[0] < img.size[0] and draft_size[1] < img.size[1]
            ):
                img.draft("RGB", draft_size)
        img.load()  # force the full decode here, so truncation is caught here
        stored_format, img = img.format, ImageOps.exif_transpose(img)
        if stored_format not in _HEADER_EXIF_FORMATS:  # a PNG's orientation is known only now
            size = size_of(*img.size)
        return resize_rgb(to_rgb(img), size)
    except ImageDecodeError:
        raise
    except OSError as err:
        raise ImageDecodeError(f"truncated or corrupt image data: {err}") from None
    except Exception as err:
        raise ImageDecodeError(f"decode failed: {type(err).__name__}: {err}") from None


def cover_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(w, h) with the short side = ``side`` and the aspect ratio kept (open_clip's Resize)."""
    scale = side / min(width, height)
    return max(side, round(width * scale)), max(side, round(height * scale))


def fit_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int] | None:
    """The ``(width, height)`` with at most ``max_pixels`` pixels, aspect kept; None if it fits.

    Keeping the aspect ratio lets a VLM processor's own resize do no more work, and lets JPEG
    draft mode skip most of the decode for large photos.
    """
    if not max_pixels or width * height <= max_pixels:
        return None
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def decode_cover(
    data: bytes, side: int, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Decode with the short side resized to ``side`` and the aspect kept (the whole view)."""
    return _decode(data, lambda w, h: cover_size(w, h, side), max_image_pixels)


def centre_crop(pixels: np.ndarray, side: int) -> np.ndarray:
    """The centre ``side`` x ``side`` square of an image at least that large."""
    h, w = pixels.shape[:2]
    top, left = (h - side) // 2, (w - side) // 2
    return pixels[top : top + side, left : left + side]


def decode_square(
    data: bytes, side: int, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Decode to ``(side, side, 3)`` uint8 with open_clip's ``Resize(side) + CenterCrop(side)``
    geometry; no float conversion: normalisation happens batched on the model's device."""
    return centre_crop(decode_cover(data, side, max_image_pixels=max_image_pixels), side)


def decode_fit(
    data: bytes, max_pixels: int | None, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Decode to RGB uint8 with at most ``max_pixels`` pixels (aspect kept; None: full size)."""
    return _decode(data, lambda w, h: fit_size(w, h, max_pixels), max_image_pixels)


def skip_reason(path: str) -> str | None:
    """Why a file in a photo folder is not listed as an image (None: it is one), by its name:
    listing an archive on S3 must not read every object (a misnamed file becomes an error row)."""
    name = posixpath.basename(str(path).replace("\\", "/"))
    if name.startswith("._"):
        return "macOS AppleDouble file (._*)"
    if name.lower() in _SYSTEM_FILES:
        return _SYSTEM_FILES[name.lower()]
    suffix = posixpath.splitext(name)[1].lower()
    if suffix not in IMAGE_SUFFIXES:
        return f"not an image extension ({suffix or 'none'})"
    return None


def list_images(uri: str) -> tuple[list[str], Counter]:
    """The image files under a folder or S3 prefix (sorted), and the files skipped, counted
    by :func:`skip_reason`."""
    from georay.data.storage import list_files

    images, skipped = [], Counter()
    for path in list_files(uri):
        reason = skip_reason(path)
        if reason is None:
            images.append(path)
        else:
            skipped[reason] += 1
    return images, skipped


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 array as a baseline JPEG (deterministic bytes, no EXIF)."""
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()
