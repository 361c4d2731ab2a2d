"""Photos as cameras and phones write them: JPEG, HEIC, AVIF, WebP and DNG, with EXIF GPS and
orientation, for tests and benchmarks of the formats an archive holds.

HEIC is written through ``pillow-heif`` (x265), so it is what an iPhone's decoder path reads:
the orientation becomes the file's rotation box, as Apple's HEICs carry it. The DNG is written
here, byte by byte, as a phone's DNG is laid out: a TIFF whose first directory holds the
EXIF/GPS, the orientation and (optionally) a full-size JPEG preview, with the 16-bit RGGB Bayer
mosaic in a sub-directory. LibRaw reads it like any DNG.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

import georay.data.images  # noqa: F401  (registers the HEIF writer too)

_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10
_PACK = {_BYTE: "B", _SHORT: "H", _LONG: "I"}
# XYZ (D65) -> linear sRGB: as a DNG ColorMatrix1 this makes the "camera" space linear sRGB.
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)
WHITE_LEVEL = 4095  # a 12-bit sensor
FORMATS = ("JPEG", "HEIF", "AVIF", "WEBP", "PNG", "DNG")


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees, minutes = int(value), int(value * 60 % 60)
    return float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 4)


def gps_ifd(lat: float, lon: float) -> dict[int, object]:
    """An EXIF GPS directory (Pillow's tag -> value) for signed decimal degrees."""
    return {0: b"\x02\x03\x00\x00", 1: "N" if lat >= 0 else "S", 2: _dms(lat),
            3: "E" if lon >= 0 else "W", 4: _dms(lon)}  # fmt: skip


def encode_photo(
    pixels: np.ndarray,
    fmt: str,
    *,
    gps: tuple[float, float] | None = None,
    orientation: int = 1,
    quality: int = 90,
    preview: bool = True,
) -> bytes:
    """``(H, W, 3)`` uint8 pixels (as stored) encoded as ``fmt`` (one of :data:`FORMATS`).

    ``orientation`` is the EXIF orientation to display them with (HEIC: the rotation box);
    ``preview`` (DNG only) embeds a full-size JPEG preview.
    """
    if fmt == "DNG":
        return encode_dng(pixels, gps=gps, orientation=orientation, preview=preview)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    if gps is not None:
        exif[0x8825] = gps_ifd(*gps)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format=fmt, quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def with_exif_gps(jpeg: bytes, lat: float, lon: float) -> bytes:
    """``jpeg`` with an EXIF block holding GPS ``(lat, lon)`` (signed decimal degrees) inserted
    after its start marker: the same compressed pixels, so a tagged photo decodes exactly like
    the untagged one, as a phone's EXIF leaves the image data alone."""
    if jpeg[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no start-of-image marker)")
    exif = Image.Exif()
    exif[0x8825] = gps_ifd(lat, lon)
    payload = exif.tobytes()  # b"Exif\0\0" + TIFF header and directories
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


class _Tiff:
    """A little-endian TIFF built front to back: blobs and directories appended, each at an
    offset known when written, so a directory can point at everything before it."""

    def __init__(self):
        self.buf = bytearray(b"II*\x00\x00\x00\x00\x00")

    def _align(self) -> int:
        if len(self.buf) % 2:
            self.buf += b"\x00"
        return len(self.buf)

    def blob(self, data: bytes) -> int:
        offset = self._align()
        self.buf += data
        return offset

    @staticmethod
    def _value(typ: int, values) -> tuple[bytes, int]:
        if typ == _ASCII:
            raw = values.encode() + b"\x00"
            return raw, len(raw)
        if typ in (_RATIONAL, _SRATIONAL):
            f = "<ii" if typ == _SRATIONAL else "<II"
            return b"".join(struct.pack(f, round(v * 10000), 10000) for v in values), len(values)
        return struct.pack("<" + _PACK[typ] * len(values), *values), len(values)

    def directory(self, entries: dict[int, tuple[int, object]]) -> int:
        offset = self._align()
        extra_at = offset + 2 + 12 * len(entries) + 4
        table, extra = bytearray(struct.pack("<H", len(entries))), bytearray()
        for tag in sorted(entries):
            raw, count = self._value(*entries[tag])
            if len(raw) <= 4:
                table += struct.pack("<HHI", tag, entries[tag][0], count) + raw.ljust(4, b"\x00")
            else:
                table += struct.pack("<HHII", tag, entries[tag][0], count, extra_at + len(extra))
                extra += raw + b"\x00" * (len(raw) % 2)
        self.buf += table + struct.pack("<I", 0) + extra
        return offset

    def finish(self, first: int) -> bytes:
        self.buf[4:8] = struct.pack("<I", first)
        return bytes(self.buf)


def bayer_mosaic(pixels: np.ndarray) -> np.ndarray:
    """An RGGB mosaic (uint16, 12-bit linear) a sensor would record for sRGB ``pixels``."""
    linear = (pixels.astype(np.float32) / 255.0) ** 2.2 * WHITE_LEVEL
    mosaic = np.empty(pixels.shape[:2], np.uint16)
    for dy, dx, channel in ((0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 2)):
        mosaic[dy::2, dx::2] = linear[dy::2, dx::2, channel]
    return mosaic


def encode_dng(
    pixels: np.ndarray,
    *,
    gps: tuple[float, float] | None = None,
    orientation: int = 1,
    preview: bool = True,
) -> bytes:
    """A DNG 1.4 of ``pixels`` (even width and height): Bayer data, EXIF GPS, orientation, and
    a full-size JPEG preview unless ``preview=False``."""
    h, w = pixels.shape[:2]
    tiff = _Tiff()
    mosaic = bayer_mosaic(pixels)
    strip = tiff.blob(mosaic.astype("<u2").tobytes())
    raw = tiff.directory({
        254: (_LONG, [0]), 256: (_LONG, [w]), 257: (_LONG, [h]), 258: (_SHORT, [16]),
        259: (_SHORT, [1]), 262: (_SHORT, [32803]), 273: (_LONG, [strip]), 277: (_SHORT, [1]),
        278: (_LONG, [h]), 279: (_LONG, [mosaic.nbytes]), 284: (_SHORT, [1]),
        33421: (_SHORT, [2, 2]), 33422: (_BYTE, [0, 1, 1, 2]),  # RGGB
        50714: (_LONG, [0]), 50717: (_LONG, [WHITE_LEVEL]),
    })  # fmt: skip
    first = {
        254: (_LONG, [1]), 271: (_ASCII, "georay"), 272: (_ASCII, "synthetic DNG"),
        274: (_SHORT, [orientation]), 330: (_LONG, [raw]),
        50706: (_BYTE, [1, 4, 0, 0]), 50707: (_BYTE, [1, 1, 0, 0]),
        50708: (_ASCII, "georay synthetic"), 50721: (_SRATIONAL, _XYZ_TO_SRGB),
        50728: (_RATIONAL, [1, 1, 1]), 50778: (_SHORT, [21]),  # as-shot neutral, D65
    }  # fmt: skip
    if gps is not None:
        lat, lon = gps
        first[34853] = (_LONG, [tiff.directory({
            0: (_BYTE, [2, 3, 0, 0]), 1: (_ASCII, "N" if lat >= 0 else "S"),
            2: (_RATIONAL, _dms(lat)), 3: (_ASCII, "E" if lon >= 0 else "W"),
            4: (_RATIONAL, _dms(lon)),
        })])  # fmt: skip
    if preview:
        jpeg = encode_photo(pixels, "JPEG")  # as stored: the orientation is the DNG's
        first.update({
            256: (_LONG, [w]), 257: (_LONG, [h]), 258: (_SHORT, [8, 8, 8]), 259: (_SHORT, [7]),
            262: (_SHORT, [6]), 273: (_LONG, [tiff.blob(jpeg)]), 277: (_SHORT, [3]),
            278: (_LONG, [h]), 279: (_LONG, [len(jpeg)]),
        })  # fmt: skip
    return tiff.finish(tiff.directory(first))
