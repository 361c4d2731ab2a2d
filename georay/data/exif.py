"""EXIF GPS extraction and a one-line summary of an image file (``georay inspect``).

GPS coordinates come in two encodings in the wild: the standard three RATIONALs
(degrees, minutes, seconds) and ASCII strings written by some cameras and tools, e.g.
``"52,00000,50,00000,34,01180"`` (decimal commas: 52 deg 50 min 34.0118 s). Both are read here;
the hemisphere comes from the N/S/E/W reference tags.
"""

from __future__ import annotations

import re
from typing import Any

from PIL import ExifTags, Image

from georay.data.images import ImageDecodeError, decode_image, read_header
from georay.data.storage import read_bytes

_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
# Reading a header or its EXIF decodes no pixels: the decompression-bomb limit does not apply.
_NO_LIMIT = 2**62
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:/\d+(?:\.\d*)?)?")


def _number(token: str) -> float:
    if "/" in token:
        num, den = token.split("/", 1)
        return float(num) / float(den)
    return float(token)


def _parse_string_dms(text: str) -> tuple[float, ...]:
    """Numbers of an ASCII GPS value: ``"52,00000,50,00000,34,01180"``, ``"52/1 50/1 34/1"``,
    ``"52.84"``, ``"52 50 34.0118"``."""
    text = text.strip().strip("\x00").strip()
    parts = [p for p in re.split(r"[,\s;]+", text) if p]
    # Six comma-separated integers = three numbers with decimal commas (the goexif sample).
    if "." not in text and "/" not in text and len(parts) == 6 and "," in text:
        return tuple(float(f"{parts[i]}.{parts[i + 1]}") for i in range(0, 6, 2))
    if len(parts) == 2 and "," in text and "." not in text and "/" not in text:
        return (float(f"{parts[0]}.{parts[1]}"),)  # one decimal-comma number
    numbers = _NUMBER.findall(text)
    if not numbers:
        raise ValueError(f"no numbers in GPS string {text!r}")
    return tuple(_number(n) for n in numbers)


def _to_degrees(value: Any) -> float:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        parts = _parse_string_dms(value)
    elif isinstance(value, (tuple, list)):
        parts = tuple(float(v) for v in value)  # IFDRational -> float
    else:
        parts = (float(value),)
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"expected 1-3 DMS numbers, got {parts}")
    deg = 0.0
    for part, scale in zip(parts, (1.0, 60.0, 3600.0), strict=False):
        deg += abs(part) / scale
    return -deg if parts[0] < 0 else deg


def _ref(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value or "").strip().strip("\x00").upper()[:1]


def gps_from_exif(gps: dict[int, Any]) -> tuple[float, float] | None:
    """(lat, lon) from a GPS IFD mapping, or None when absent or invalid."""
    if _GPS_LAT not in gps or _GPS_LON not in gps:
        return None
    try:
        lat = _to_degrees(gps[_GPS_LAT])
        lon = _to_degrees(gps[_GPS_LON])
    except (ValueError, ZeroDivisionError, TypeError):
        return None
    if _ref(gps.get(_GPS_LAT_REF)) == "S":
        lat = -abs(lat)
    if _ref(gps.get(_GPS_LON_REF)) == "W":
        lon = -abs(lon)
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    return lat, lon


def _gps_of(exif: Image.Exif) -> tuple[float, float] | None:
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # a malformed EXIF block is "no GPS", not a failure
        return None
    return gps_from_exif(dict(gps)) if gps else None


def gps_from_bytes(data: bytes) -> tuple[float, float] | None:
    """EXIF GPS ``(lat, lon)`` in signed decimal degrees of encoded image bytes (any format
    :mod:`georay.data.images` reads: JPEG, HEIC, WebP, AVIF, RAW, ...), or None.

    Raises
    ------
    ImageDecodeError
        When the bytes are not a readable image at all.
    """
    return _gps_of(read_header(data, max_image_pixels=_NO_LIMIT).exif)


def inspect_image(path_or_uri: str, check: bool = False) -> dict[str, Any]:
    """Summarise one image: ``file, format, width, height, lat, lon`` (null when no GPS).

    Only the header and EXIF are read unless ``check``: then the pixels are decoded too and a
    failure (truncated data, too many pixels) adds an ``error`` field to the summary. Width and
    height are as displayed (EXIF orientation 5-8 swaps them).

    Raises
    ------
    ImageDecodeError, OSError
        Unreadable file or non-image content.
    """
    data = read_bytes(str(path_or_uri))
    header = read_header(data, max_image_pixels=_NO_LIMIT)
    gps = _gps_of(header.exif)
    info: dict[str, Any] = {
        "file": str(path_or_uri),
        "format": header.format,
        "width": header.width,
        "height": header.height,
        "lat": None if gps is None else round(gps[0], 7),
        "lon": None if gps is None else round(gps[1], 7),
    }
    if check:
        try:
            decode_image(data)
        except ImageDecodeError as err:
            info["error"] = err.reason
    return info
