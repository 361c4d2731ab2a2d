"""Camera RAW files (DNG, CR2, NEF, ARW, ...): recognised by their bytes, rendered through LibRaw.

A RAW file is recognised by content, never by name: its magic bytes (CR2, CR3, RAF, ORF, RW2,
X3F) or, for the TIFF-based kinds, its first directory (a ``DNGVersion`` tag, or a camera maker's
name with the raw data in a sub-directory). Pillow must never see one first: it would open a DNG
or NEF as a TIFF and answer with the 160-pixel thumbnail stored in front.

Rendering takes the **embedded JPEG preview** when it is at least as large as the size asked
for, else demosaics the sensor data with LibRaw (``rawpy``), at half size when that is still
large enough. The preview is what the camera itself rendered (its white balance, tone curve and
lens corrections: the picture the photographer saw, and the one a camera's JPEG would be), and
a 12-megapixel DNG took 21 ms to 224x224 through it, against 106 ms for LibRaw's half-size
render and 630 ms for its full AHD demosaic (a 12-megapixel JPEG: 15 ms; benchmarks.data, in
BENCHMARKS.md). Phones' DNGs carry only a small thumbnail, so a large decode there falls back
to LibRaw. Orientation comes from the RAW's own metadata (LibRaw's ``flip``) in both paths:
previews usually carry none of their own.

EXIF (GPS) of the TIFF-based kinds is read from the file's own TIFF directories; other kinds
(CR3, RAF) carry it in their preview JPEG.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
from PIL import Image

from georay.data.pixels import (
    ImageDecodeError,
    ImageHeader,
    check_pixels,
    open_image,
    resize_rgb,
    to_rgb,
)

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
# Magic bytes of the RAW kinds that are not plain TIFF: (offset, bytes, kind).
_MAGIC = (
    (8, b"CR", "CR2"),  # a TIFF header, then "CR"
    (4, b"ftypcrx ", "CR3"),
    (0, b"FUJIFILMCCD-RAW", "RAF"),
    (0, b"IIRO", "ORF"),
    (0, b"IIRS", "ORF"),
    (0, b"MMOR", "ORF"),
    (0, b"IIU\x00", "RW2"),
    (0, b"FOVb", "X3F"),
)
# TIFF-based RAW kinds by camera maker (the Make tag, upper case, first word).
_MAKERS = {"NIKON": "NEF", "SONY": "ARW", "PENTAX": "PEF", "RICOH": "PEF", "SAMSUNG": "SRW"}
_DNG_VERSION, _MAKE, _SUBIFDS, _NEW_SUBFILE_TYPE = 50706, 271, 330, 254
# LibRaw's flip codes as EXIF orientations (LibRaw uses 0, 3, 5 and 6 only).
_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
# A "full-size" preview may be a few pixels smaller than the sensor's image (margins), or
# rounded: within 10% of the size wanted it serves.
_PREVIEW_SLACK = 0.9
_TRANSPOSE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270,
              8: Image.Transpose.ROTATE_90}  # fmt: skip


def _tiff_directory(data: bytes) -> Image.Exif | None:
    """The first TIFF directory of ``data`` (its sub-directories readable through get_ifd)."""
    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception:  # a broken TIFF header: not a RAW we can name
        return None
    return exif


def raw_kind(data: bytes) -> str | None:
    """The RAW kind of encoded bytes (``"DNG"``, ``"CR2"``, ``"NEF"``, ...), or None.

    A plain TIFF (a scan, a TIFF a camera wrote) is not a RAW: a TIFF-based RAW has a
    ``DNGVersion`` tag, or a camera maker's name and its raw data in a sub-directory with a
    reduced-size image (the thumbnail) in front.
    """
    head = bytes(data[:16])
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic and (
            kind != "CR2" or head[:4] in _TIFF_MAGIC
        ):
            return kind
    if head[:4] not in _TIFF_MAGIC:
        return None
    ifd0 = _tiff_directory(data)
    if ifd0 is None:
        return None
    if _DNG_VERSION in ifd0:
        return "DNG"
    make = str(ifd0.get(_MAKE, "")).strip().strip("\x00").upper().split(" ")[:1]
    kind = _MAKERS.get(make[0]) if make else None
    if kind and (_SUBIFDS in ifd0 or ifd0.get(_NEW_SUBFILE_TYPE) == 1):
        return kind
    return None


@contextmanager
def _opened(data: bytes, kind: str):
    """The file opened by LibRaw (metadata only; the sensor data is unpacked on demand)."""
    import rawpy

    try:
        raw = rawpy.imread(io.BytesIO(data))
    except rawpy.LibRawFileUnsupportedError:
        version = ".".join(map(str, rawpy.libraw_version))
        raise ImageDecodeError(f"RAW format {kind} not supported (LibRaw {version})") from None
    except rawpy.LibRawError as err:
        raise ImageDecodeError(f"corrupt {kind} RAW file: {type(err).__name__}: {err}") from None
    try:
        yield raw
    except rawpy.LibRawError as err:
        raise ImageDecodeError(f"corrupt {kind} RAW file: {type(err).__name__}: {err}") from None
    finally:
        raw.close()


def _geometry(raw, kind: str, max_image_pixels: int) -> tuple[int, int, int]:
    """``(width, height, orientation)`` as displayed; the pixel limit checked on the sensor."""
    sizes = raw.sizes
    check_pixels(sizes.raw_width, sizes.raw_height, max_image_pixels)
    orientation = _FLIP_TO_ORIENTATION.get(int(sizes.flip), 1)
    w, h = sizes.width, sizes.height
    return (h, w, orientation) if orientation in (6, 8) else (w, h, orientation)


def _preview(raw) -> bytes | None:
    """The largest embedded JPEG preview LibRaw finds, or None."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    return bytes(thumb.data) if thumb.format == rawpy.ThumbFormat.JPEG else None


def _exif(raw, data: bytes) -> Image.Exif:
    if bytes(data[:4]) in _TIFF_MAGIC:
        return _tiff_directory(data) or Image.Exif()
    preview = _preview(raw)
    try:
        return Image.open(io.BytesIO(preview)).getexif() if preview else Image.Exif()
    except Exception:  # a preview Pillow cannot read has no EXIF for us
        return Image.Exif()


def raw_header(data: bytes, kind: str, max_image_pixels: int) -> ImageHeader:
    """Format, displayed size and EXIF of a RAW file, without rendering it."""
    with _opened(data, kind) as raw:
        w, h, _ = _geometry(raw, kind, max_image_pixels)
        return ImageHeader(kind, w, h, _exif(raw, data))


def _upright(img: Image.Image, orientation: int) -> Image.Image:
    return img.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else img


def _from_preview(
    jpeg: bytes, orientation: int, target: tuple[int, int], size_of: Callable,
    max_image_pixels: int,
) -> np.ndarray | None:  # fmt: skip
    """The preview rendered at ``size_of(its displayed size)``; None if it is smaller than
    ``target`` (the size wanted from the sensor's)."""
    img = open_image(jpeg, max_image_pixels=max_image_pixels)
    w, h = img.size if orientation not in (6, 8) else img.size[::-1]
    if w < _PREVIEW_SLACK * target[0] or h < _PREVIEW_SLACK * target[1]:
        return None
    size = size_of(w, h) or (w, h)
    draft = size if orientation not in (6, 8) else size[::-1]
    img.draft("RGB", draft)  # DCT scaling, as for any JPEG
    img = _upright(to_rgb(img), orientation)
    return resize_rgb(img, size)


def decode_raw(data: bytes, kind: str, size_of: Callable, max_image_pixels: int) -> np.ndarray:
    """Render a RAW file to ``(H, W, 3)`` uint8, upright, at ``size_of(displayed width,
    height)`` (None: that size); ``max_image_pixels`` is checked on the sensor's pixels (and the
    preview's) before anything is decoded."""
    import rawpy

    with _opened(data, kind) as raw:
        w, h, orientation = _geometry(raw, kind, max_image_pixels)
        target = size_of(w, h) or (w, h)
        preview = _preview(raw)
        if preview is not None:
            try:
                pixels = _from_preview(preview, orientation, target, size_of, max_image_pixels)
            except ImageDecodeError:
                pixels = None  # a broken preview: the sensor data may still be fine
            if pixels is not None:
                return pixels
        # Half size = one pixel per 2x2 Bayer cell, no demosaicing: 10x faster than AHD.
        half = 2 * target[0] <= w and 2 * target[1] <= h
        rgb = raw.postprocess(half_size=half, use_camera_wb=True, output_bps=8,
                              demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD)  # fmt: skip
        return resize_rgb(Image.fromarray(rgb), target)
