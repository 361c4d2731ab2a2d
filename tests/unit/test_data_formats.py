"""The formats an archive holds: HEIC, AVIF, WebP, DNG, with EXIF GPS and orientation; camera
folder clutter skipped by name."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from georay.data.exif import gps_from_bytes
from georay.data.images import (
    ImageDecodeError,
    decode_fit,
    decode_image,
    decode_square,
    list_images,
    read_header,
    skip_reason,
)
from georay.data.raw import raw_kind
from georay.synth.formats import encode_dng, encode_photo

BERLIN = (52.516, 13.3777)
RED, BLUE = (220, 30, 30), (30, 30, 220)


@pytest.fixture(scope="module")
def halves() -> np.ndarray:
    """96 wide, 64 high as stored: red left half, blue right half."""
    pixels = np.zeros((64, 96, 3), np.uint8)
    pixels[:, :48], pixels[:, 48:] = RED, BLUE
    return pixels


def _upright_red_on_top(image: np.ndarray) -> None:
    """Orientation 6 shows the stored image turned 90 degrees clockwise: the left (red) half on
    top, the right (blue) half below."""
    h = image.shape[0]
    top, bottom = image[: h // 3].reshape(-1, 3).mean(0), image[-h // 3 :].reshape(-1, 3).mean(0)
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0], (top, bottom)


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF", "AVIF", "WEBP", "DNG"])
def test_each_format_decodes_upright_with_its_gps(fmt, halves):
    data = encode_photo(halves, fmt, gps=BERLIN, orientation=6)
    header = read_header(data)
    assert header.format == fmt
    assert (header.width, header.height) == (64, 96)  # as displayed
    assert gps_from_bytes(data) == pytest.approx(BERLIN, abs=1e-4)
    full = decode_image(data)
    assert full.shape == (96, 64, 3)
    _upright_red_on_top(full)
    # The decode geometries the stages use keep the displayed aspect (a rotated WebP or AVIF
    # was resized to its stored aspect before).
    assert decode_fit(data, 24 * 16).shape == (24, 16, 3)
    _upright_red_on_top(decode_fit(data, 24 * 16))
    assert decode_square(data, 32).shape == (32, 32, 3)


def test_heic_is_rotated_once(halves):
    """libheif applies the rotation box and pillow-heif then reports orientation 1: a second
    rotation by the EXIF tag would turn the photo sideways again."""
    data = encode_photo(halves, "HEIF", orientation=6)
    assert read_header(data).exif.get(0x0112, 1) == 1
    _upright_red_on_top(decode_image(data))


def test_pixel_limit_applies_to_heic_and_raw(halves):
    for fmt in ("HEIF", "AVIF", "DNG"):
        data = encode_photo(halves, fmt)
        with pytest.raises(ImageDecodeError, match="too many pixels"):
            decode_fit(data, None, max_image_pixels=96 * 64 - 1)
        assert decode_fit(data, None, max_image_pixels=96 * 64).shape == (64, 96, 3)


def test_dng_uses_its_preview_when_large_enough_else_libraw(halves):
    with_preview = encode_dng(halves, orientation=6)
    jpeg = encode_photo(halves, "JPEG", orientation=6)  # the same preview, as a plain JPEG
    # Preview path: bit for bit what the preview decodes to, at any size it covers.
    for size in (24 * 16, None):
        assert np.array_equal(decode_fit(with_preview, size), decode_fit(jpeg, size))
    # No preview: LibRaw demosaics the Bayer data (colours close, not equal to the JPEG's).
    sensor = decode_fit(encode_dng(halves, orientation=6, preview=False), None)
    assert sensor.shape == (96, 64, 3) and not np.array_equal(sensor, decode_fit(jpeg, None))
    _upright_red_on_top(sensor)
    middle = sensor[10:30, 10:50].reshape(-1, 3).mean(0)
    assert np.allclose(middle, RED, atol=40), middle


def test_raw_kinds_by_content_and_unsupported_ones_named():
    tiff = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiff, format="TIFF")
    assert raw_kind(tiff.getvalue()) is None  # a plain TIFF is not a RAW
    assert raw_kind(encode_dng(np.zeros((8, 8, 3), np.uint8))) == "DNG"
    assert raw_kind(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(64)) == "CR2"
    assert raw_kind(b"\x00\x00\x00\x18ftypcrx " + bytes(64)) == "CR3"
    # Sigma's X3F: LibRaw dropped it (0.21), so it is named, not called "not an image".
    x3f = b"FOVb" + bytes(4096)
    with pytest.raises(ImageDecodeError, match=r"^RAW format X3F not supported \(LibRaw"):
        decode_image(x3f)
    with pytest.raises(ImageDecodeError, match="RAW format X3F not supported"):
        gps_from_bytes(x3f)


def test_truncated_dng_is_an_error_not_a_crash(halves):
    data = encode_dng(halves, preview=False)
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 3])


def test_folder_clutter_is_skipped_by_name(tmp_path):
    names = {
        "2019/07/IMG_0001.HEIC": True,
        "2019/07/Bild Straße.JPG": True,
        "2019/07/DSC_0002.nef": True,
        "2019/07/._IMG_0001.HEIC": False,
        "2019/.DS_Store": False,
        "2019/Thumbs.db": False,
        "README.txt": False,
        "clip.mov": False,
    }
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    images, skipped = list_images(str(tmp_path))
    assert sorted(images) == sorted(str(tmp_path / n) for n, keep in names.items() if keep)
    assert skipped == {
        "macOS AppleDouble file (._*)": 1,
        "macOS folder metadata (.DS_Store)": 1,
        "Windows thumbnail cache (Thumbs.db)": 1,
        "not an image extension (.txt)": 1,
        "not an image extension (.mov)": 1,
    }
    assert skip_reason("photos/IMG_0001.heic") is None


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    from support import phone_archive

    return phone_archive(tmp_path_factory.mktemp("archive"))


def test_inspect_summary_of_a_phone_archive(archive, capsys):
    from georay.cli import main

    assert main(["inspect", "--summary", str(archive)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == 7 and summary["with_gps"] == 3
    assert summary["formats"] == {"HEIF": {"files": 2, "gps": 1}, "DNG": {"files": 2, "gps": 1},
                                  "AVIF": {"files": 1, "gps": 1}, "WEBP": {"files": 1, "gps": 0}}  # fmt: skip
    assert summary["unreadable"] == 1
    (reason,) = summary["unreadable_reasons"]
    assert reason.startswith("RAW format X3F not supported")
    assert summary["skipped_files"] == 4 and len(summary["skipped_reasons"]) == 4
    # Line mode: one line per image, none for the clutter; sizes as displayed.
    assert main(["inspect", str(archive)]) == 0
    lines = {Path(x["file"]).name: x for x in map(json.loads, capsys.readouterr().out.splitlines())}
    assert len(lines) == 7 and "._IMG_0001.HEIC" not in lines
    assert (lines["IMG_0001.HEIC"]["width"], lines["IMG_0001.HEIC"]["height"]) == (96, 128)
    assert lines["DSC_0003.DNG"]["lat"] == pytest.approx(-33.9249)


def test_load_stage_reads_every_archive_format_upright_with_gps(archive):
    """The decode stage curate, predict and the baselines share, on the archive's files."""
    from support import ARCHIVE, ARCHIVE_SIZE

    from georay.pipeline.stages import load_images

    files, skipped = list_images(str(archive))
    assert sum(skipped.values()) == 4
    n = len(files)
    batch = {"image_id": np.array(files, dtype=object), "uri": np.array(files, dtype=object),
             "status": np.array(["ok"] * n, dtype=object), "error": np.full(n, None)}  # fmt: skip
    out = load_images(batch, max_pixels=64 * 48, exif_gps=True)
    for i, uri in enumerate(files):
        fmt, gps, orientation = ARCHIVE[str(Path(uri).relative_to(archive))]
        if fmt == "X3F":
            assert out["status"][i] == "error" and "RAW format X3F" in out["error"][i]
            continue
        assert out["status"][i] == "ok", out["error"][i]
        w, h = ARCHIVE_SIZE[0] // 2, ARCHIVE_SIZE[1] // 2
        assert (out["width"][i], out["height"][i]) == ((h, w) if orientation == 6 else (w, h))
        got = (out["exif_lat"][i], out["exif_lon"][i])
        assert got == pytest.approx(gps, abs=1e-4) if gps else np.isnan(got).all()


def test_a_rotated_png_keeps_its_aspect(halves):
    """A PNG's EXIF comes with its pixels: the size wanted is worked out once it is turned."""
    data = encode_photo(halves, "PNG", orientation=6)
    assert decode_fit(data, 24 * 16).shape == (24, 16, 3)
    _upright_red_on_top(decode_fit(data, 24 * 16))
