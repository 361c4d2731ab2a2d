"""georay.data speed: drawing the synthetic world, and decoding JPEGs with and without draft mode.

Run: `.venv/bin/python -m benchmarks.data`. Baselines, measured in the same run: the world drawn
in one process (vs. a process pool), and a full JPEG decode followed by a resize (vs. DCT-scaled
draft decoding, ``georay.data.images.decode_image``). Writes the `data` section of BENCHMARKS.md.
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
from georay.data.images import decode_image
from georay.synth.world import SynthConfig, build_world, generate_world

AREA = "data"
# How it was measured: the sentence after the conditions line.
METHOD = (
    "Synth: one run each; decoding: medians of 3 runs over 200 synthetic JPEGs. Each baseline is "
    "measured in the same run as what it is compared with."
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
    return rows


def main() -> None:
    run_rows(AREA, METHOD, "result", lambda: run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))


if __name__ == "__main__":
    main()
