"""georay.data speed: drawing the synthetic world, decoding JPEGs with and without draft mode,
and the other formats an archive holds (HEIC, AVIF, WebP, camera RAW) beside JPEG.

Run: `.venv/bin/python -m benchmarks.data`. Baselines, measured in the same run: the world drawn
in one process (vs. a process pool), a full JPEG decode followed by a resize (vs. DCT-scaled
draft decoding, ``georay.data.images.decode_image``), JPEG of the same pixels (vs. HEIC, AVIF,
WebP), and LibRaw's renders of a 12-megapixel DNG (vs. its embedded preview, the path
``georay.data.raw`` takes when the preview is large enough). Writes the `data` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import median_s, run_rows
from georay.data.images import decode_fit, decode_image
from georay.synth.formats import encode_dng, encode_photo
from georay.synth.world import SynthConfig, build_world, generate_world

AREA = "data"
# How it was measured: the sentence after the conditions line.
METHOD = (
    "Synth: one run each; decoding: medians of 3 runs over 200 synthetic JPEGs (formats: the same "
    "200 views re-encoded at quality 90; RAW: 3 DNGs of 4000x3000 upscaled views). Each baseline "
    "is measured in the same run as what it is compared with."
)


def full_decode_resize(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Baseline: decode every pixel, then resize (what decode_image avoids for JPEGs)."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR, reducing_gap=None))


def run(n: int = 2000) -> list[tuple[str, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rates = {}
        build_world(8, 3)  # load the gazetteer outside the timed runs
        for workers in (1, 2):
            out = Path(tmp) / f"w{workers}"
            t = time.perf_counter()
            generate_world(SynthConfig(output=str(out), n=n, countries=8, seed=0, workers=workers))
            rates[workers] = n / (time.perf_counter() - t)
        rows.append((f"synth, {n} views 640x480, 1 process (baseline)", f"{rates[1]:.1f} img/s"))
        rows.append(
            (
                f"synth, {n} views 640x480, 2 processes",
                f"{rates[2]:.1f} img/s ({rates[2] / rates[1]:.2f}x)",
            )
        )
        files = sorted((Path(tmp) / "w1" / "images").glob("*.jpg"))[:200]
        blobs = [f.read_bytes() for f in files]
        per = len(blobs) / 1000.0  # seconds per batch -> ms per image
        native = median_s(lambda: [decode_image(b) for b in blobs], 3) / per
        rows.append(("decode 640x480 JPEG at full size", f"{native:.2f} ms/img"))
        for size in ((224, 224), (56, 56)):
            base = median_s(lambda s=size: [full_decode_resize(b, s) for b in blobs], 3) / per
            fast = median_s(lambda s=size: [decode_image(b, s) for b in blobs], 3) / per
            rows.append(
                (
                    f"decode + resize to {size[0]}x{size[1]}, full decode (baseline)",
                    f"{base:.2f} ms/img",
                )
            )
            rows.append(
                (
                    f"decode + resize to {size[0]}x{size[1]}, draft mode",
                    f"{fast:.2f} ms/img ({base / fast:.2f}x faster)",
                )
            )
        rows += format_rows([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])
        rows += raw_rows([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs[:3]])
    return rows


def format_rows(views: list[np.ndarray]) -> list[tuple[str, str]]:
    """HEIC, AVIF and WebP decode cost per image beside JPEG of the same pixels (ratio > 1:
    slower than JPEG), at full size and to 224x224 (JPEG alone has draft mode there)."""
    per = len(views) / 1000.0
    encoded = {
        fmt: [encode_photo(v, fmt) for v in views] for fmt in ("JPEG", "HEIF", "AVIF", "WEBP")
    }
    rows = []
    for label, size in (("full size", None), ("to 224x224", (224, 224))):
        ms = {}
        for fmt, blobs in encoded.items():
            ms[fmt] = median_s(lambda b=blobs, s=size: [decode_image(x, s) for x in b], 3) / per
        for fmt, value in ms.items():
            name = f"decode 640x480 {fmt} q90 {label}" + (" (baseline)" if fmt == "JPEG" else "")
            ratio = "" if fmt == "JPEG" else f" ({value / ms['JPEG']:.2f}x JPEG)"
            rows.append((name, f"{value:.2f} ms/img{ratio}"))
    return rows


def raw_rows(views: list[np.ndarray]) -> list[tuple[str, str]]:
    """A 12-megapixel DNG to 224x224 pixels (the curate encoder's input): through its embedded
    full-size JPEG preview (what georay does when there is one), or LibRaw's half-size and
    full AHD renders of the Bayer data (what it does when there is none)."""
    big = [np.asarray(Image.fromarray(v).resize((4000, 3000), Image.Resampling.BILINEAR))
           for v in views]  # fmt: skip
    with_preview = [encode_dng(v) for v in big]
    sensor_only = [encode_dng(v, preview=False) for v in big]
    jpegs = [encode_photo(v, "JPEG") for v in big]
    per = len(big)  # seconds per run -> seconds per image
    timed = {
        "4000x3000 JPEG q90 to 224x224 (draft mode, baseline)": (jpegs, 224 * 224),
        "4000x3000 DNG to 224x224 via its JPEG preview": (with_preview, 224 * 224),
        "4000x3000 DNG to 224x224 via LibRaw, half size": (sensor_only, 224 * 224),
        "4000x3000 DNG at full size via LibRaw, AHD demosaic": (sensor_only, None),
    }
    rows, base = [], None
    for name, (blobs, pixels) in timed.items():
        ms = 1000 * median_s(lambda b=blobs, p=pixels: [decode_fit(x, p) for x in b], 3) / per
        base = base or ms
        rows.append((f"decode {name}", f"{ms:.1f} ms/img ({ms / base:.1f}x JPEG)"))
    return rows


def main() -> None:
    run_rows(AREA, METHOD, "result", lambda: run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))


if __name__ == "__main__":
    main()
