"""georay.data speed: drawing the synthetic world, and decoding JPEGs with and without draft mode.

Run: `.venv/bin/python -m benchmarks.data`. Baselines, measured in the same run: the world drawn
in one process (vs. a process pool), and a full JPEG decode followed by a resize (vs. DCT-scaled
draft decoding, ``georay.data.images.decode_image``). Writes the `data` section of BENCHMARKS.md.
"""

from __future__ import annotations

import datetime
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.geo import BENCH_MD, machine, median_s
from georay.data.images import decode_image
from georay.synth.world import SynthConfig, build_world, generate_world

AREA = "data"


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


def write_section(rows: list[tuple[str, str]]) -> str:
    """Replace the data section of BENCHMARKS.md (appended if missing); returns the text."""
    body = "\n".join(
        [
            f"## {AREA}",
            "",
            f"`.venv/bin/python -m benchmarks.{AREA}` on {machine()}, "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Synth: one run "
            "each; decoding: medians of 3 runs over 200 synthetic JPEGs. The machine was shared "
            "with other agents while measuring (load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end): read the ratios (same "
            "run), not absolute times; a process pool only pays off when cores are free.",
            "",
            "| what | result |",
            "|---|---|",
            *[f"| {what} | {value} |" for what, value in rows],
        ]
    )
    section = f"<!-- {AREA}:start -->\n{body}\n<!-- {AREA}:end -->"
    text = BENCH_MD.read_text() if BENCH_MD.exists() else "# georay benchmarks\n"
    pattern = re.compile(rf"<!-- {AREA}:start -->.*?<!-- {AREA}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    BENCH_MD.write_text(text)
    return body


if __name__ == "__main__":
    print(write_section(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)))
