"""Decoding edge cases and EXIF GPS on the reference photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from georay.data.exif import gps_from_bytes, gps_from_exif, inspect_image
from georay.data.images import ImageDecodeError, decode_image, encode_jpeg

# ../shared/data/README.md
PHOTOS = {
    "goexif_sample1.jpg": (39.915556, 116.390833),
    "goexif_geodegrees_as_string.jpg": (52.842781, 11.182857),
    "npm-exif_test1.jpg": (37.885, -122.6225),
    "npm-exif_test2.jpg": (37.814667, -122.264167),
}


def _jpeg(width: int = 64, height: int = 48, orientation: int | None = None) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    img.save(buf, format="JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def test_decode_plain_and_resize():
    data = _jpeg(64, 48)
    assert decode_image(data).shape == (48, 64, 3)
    out = decode_image(data, (20, 10))
    assert out.shape == (10, 20, 3) and out.dtype == np.uint8


def test_draft_mode_gives_requested_size_and_similar_pixels():
    # A smooth gradient: draft (DCT-scaled) and full decode must agree closely.
    y, x = np.mgrid[0:480, 0:640]
    pixels = np.stack([x * 255 // 640, y * 255 // 480, (x + y) * 255 // 1120], -1)
    data = encode_jpeg(pixels.astype(np.uint8))
    small = decode_image(data, (56, 56))
    assert small.shape == (56, 56, 3)
    full = np.asarray(Image.fromarray(decode_image(data)).resize((56, 56), Image.BILINEAR))
    assert np.abs(small.astype(int) - full.astype(int)).mean() < 4


def test_draft_is_used_when_downscaling(monkeypatch):
    seen = []
    from PIL import JpegImagePlugin

    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        seen.append(size)
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    decode_image(_jpeg(640, 480), (160, 120))
    decode_image(_jpeg(64, 48), (128, 96))  # upscaling: no draft
    assert seen == [(160, 120)]


def test_exif_orientation_rotates():
    # Orientation 6: stored 64x48, displayed rotated 90 degrees clockwise -> 48 wide, 64 high.
    data = _jpeg(64, 48, orientation=6)
    assert decode_image(data).shape == (64, 48, 3)
    assert decode_image(data, (24, 32)).shape == (32, 24, 3)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, this is a text file, not an image\n", "not an image"),
        (_jpeg(640, 480)[:2000], "truncated"),
    ],
)
def test_decode_errors(data, reason):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    assert reason in info.value.reason


def test_too_many_pixels_checked_before_decoding():
    data = _jpeg(64, 48)
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_image(data, max_image_pixels=64 * 48 - 1)
    assert decode_image(data, max_image_pixels=64 * 48).shape == (48, 64, 3)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [10_000, 100_000])  # below / above Pillow's own hard limit
def test_huge_header_is_rejected_without_allocating(side):
    # A PNG header claiming side x side pixels, hardly any data: must fail on the header.
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
    data += struct.pack(">I", zlib.crc32(chunk))
    idat = b"IDAT" + zlib.compress(b"\x00" * 64)
    data += struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat))
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_image(data)


def test_png_with_alpha_and_grayscale_become_rgb():
    buf = io.BytesIO()
    Image.new("LA", (8, 6), (10, 0)).save(buf, format="PNG")
    out = decode_image(buf.getvalue())
    assert out.shape == (6, 8, 3) and (out == 255).all()  # transparent -> white


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_gps_of_reference_photos(shared_data, name):
    data = (shared_data / "photos" / name).read_bytes()
    lat, lon = gps_from_bytes(data)
    assert lat == pytest.approx(PHOTOS[name][0], abs=1e-4)
    assert lon == pytest.approx(PHOTOS[name][1], abs=1e-4)
    info = inspect_image(str(shared_data / "photos" / name))
    assert info["format"] == "JPEG" and info["width"] > 0
    assert info["lat"] == pytest.approx(PHOTOS[name][0], abs=1e-4)


@pytest.mark.parametrize(
    "gps, expected",
    [
        ({1: "S", 2: "33,00000,27,00000,0,00000", 3: "W", 4: "70/1 40/1 0/1"}, (-33.45, -70.6667)),
        ({1: b"N\x00", 2: "48.8566", 3: "E", 4: (2.0, 21.0, 7.56)}, (48.8566, 2.3521)),
        ({1: "N", 2: (91.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)}, None),  # impossible
        ({1: "N", 3: "E"}, None),
    ],
)
def test_gps_forms(gps, expected):
    got = gps_from_exif(gps)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-4)


def test_no_gps_gives_none():
    assert gps_from_bytes(_jpeg()) is None


def test_inspect_swaps_size_for_rotated_and_check_decodes(tmp_path):
    rotated = tmp_path / "r.jpg"
    rotated.write_bytes(_jpeg(64, 48, orientation=6))
    info = inspect_image(str(rotated))
    assert (info["width"], info["height"], info["lat"]) == (48, 64, None)
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes(_jpeg(640, 480)[:3000])
    assert "error" not in inspect_image(str(truncated))  # header only: looks fine
    assert "truncated" in inspect_image(str(truncated), check=True)["error"]
