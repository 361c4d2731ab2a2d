"""georay.geo speed: gazetteer load, reverse lookups, name resolution, polygon lookups.

Run: `.venv/bin/python -m benchmarks.geo`. Baselines, measured in the same run: brute-force
haversine argmin over all places (reverse lookups) and a shapely STRtree "intersects" query
(polygon lookups). Writes the `geo` section of BENCHMARKS.md.
"""

from __future__ import annotations

import datetime
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import shapely

from georay.geo.distance import haversine_km
from georay.geo.gazetteer import Gazetteer, get_gazetteer
from georay.geo.outlines import country_of_point_polygon, country_polygons

BENCH_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def median_s(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def write_part(area: str, names: tuple[str, ...], part: str, text: str) -> None:
    """Replace one part of an area's section of BENCHMARKS.md (``<!-- area.part:start -->``),
    keeping its other parts (in the order of ``names``); the section is added if missing."""
    start, end = f"<!-- {area}:start -->", f"<!-- {area}:end -->"
    md = BENCH_MD.read_text()
    if start not in md:
        md = md.rstrip() + f"\n\n{start}\n{end}\n"
    head, rest = md.split(start, 1)
    body, tail = rest.split(end, 1)
    parts = {}
    for name in names:
        open_, close = f"<!-- {area}.{name}:start -->", f"<!-- {area}.{name}:end -->"
        if open_ in body:
            parts[name] = body.split(open_, 1)[1].split(close, 1)[0].strip()
    parts[part] = text.strip()
    inner = "\n\n".join(
        f"<!-- {area}.{name}:start -->\n{parts[name]}\n<!-- {area}.{name}:end -->"
        for name in names
        if name in parts
    )
    BENCH_MD.write_text(f"{head}{start}\n## {area}\n\n{inner}\n{end}{tail}")


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = re.search(r"Model name:\s*(.+)", lscpu)
        cpu = model.group(1).strip() if model else platform.processor()
    except OSError:
        cpu = platform.processor()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return f"{nproc} cores, {cpu}"


def run() -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-60, 70, 10_000), rng.uniform(-180, 180, 10_000)
    load = median_s(Gazetteer.from_package, 3)
    gaz = get_gazetteer()
    tree = median_s(lambda: gaz.reverse(lat, lon), 5)
    # Baseline: exact nearest place by haversine to every place, on 100 points, per 10k.
    brute = (
        median_s(
            lambda: [
                np.argmin(haversine_km(a, b, gaz.lat, gaz.lon))
                for a, b in zip(lat[:100], lon[:100], strict=True)
            ],
            3,
        )
        * 100
    )
    names = [p.name for p in gaz.cities("US", limit=500)] + ["Zürich, Switzerland", "U.S.A."] * 250
    gaz.resolve("warm up the name index")
    resolve = median_s(lambda: [gaz.resolve(t) for t in names], 3)
    country_of_point_polygon(0.0, 0.0)  # load and prepare polygons outside the timing
    poly = median_s(lambda: country_of_point_polygon(lat, lon), 3)
    strtree = shapely.STRtree(country_polygons()[1])
    points = shapely.points(lon, lat)
    poly_base = median_s(lambda: strtree.query(points, predicate="intersects"), 3)
    return [
        ("gazetteer load (155,210 GeoNames places, JSON + K-D tree)", f"{load:.2f} s"),
        ("10,000 reverse lookups (K-D tree on unit vectors)", f"{tree * 1e3:.1f} ms"),
        ("  baseline: brute-force haversine argmin, per 10,000", f"{brute:.1f} s "
         f"({brute / tree:.0f}x slower)"),
        ("1,000 free-text resolutions (name index built)", f"{resolve * 1e3:.1f} ms"),
        ("10,000 polygon lookups (contains_xy per country bbox)", f"{poly * 1e3:.1f} ms"),
        ("  baseline: STRtree intersects query", f"{poly_base * 1e3:.1f} ms "
         f"({poly_base / poly:.1f}x slower)"),
    ]  # fmt: skip


def write_section(rows: list[tuple[str, str]]) -> str:
    """Replace the geo section of BENCHMARKS.md (appended if missing); returns the text."""
    body = "\n".join(
        [
            "## geo",
            "",
            "`.venv/bin/python -m benchmarks.geo` on "
            f"{machine()}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. "
            "Medians of 3-5 runs; the machine was shared with other agents while measuring, so "
            "read the ratios (same run) rather than absolute times.",
            "",
            "| what | median |",
            "|---|---|",
            *[f"| {what.strip()} | {value} |" for what, value in rows],
        ]
    )
    section = f"<!-- geo:start -->\n{body}\n<!-- geo:end -->"
    text = BENCH_MD.read_text() if BENCH_MD.exists() else "# georay benchmarks\n"
    pattern = re.compile(r"<!-- geo:start -->.*?<!-- geo:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    BENCH_MD.write_text(text)
    return body


if __name__ == "__main__":
    print(write_section(run()))
