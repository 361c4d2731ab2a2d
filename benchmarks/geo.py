"""georay.geo speed: gazetteer load, reverse lookups, name resolution, polygon lookups.

Run: `.venv/bin/python -m benchmarks.geo`. Baselines, measured in the same run: brute-force
haversine argmin over all places (reverse lookups) and a shapely STRtree "intersects" query
(polygon lookups). Writes the `geo` section of BENCHMARKS.md.
"""

from __future__ import annotations

import numpy as np
import shapely

from benchmarks.common import median_s, run_rows
from georay.geo.distance import haversine_km
from georay.geo.gazetteer import Gazetteer, get_gazetteer
from georay.geo.outlines import country_of_point_polygon, country_polygons

AREA = "geo"
# How it was measured: the sentence after the conditions line.
METHOD = (
    "Medians of 3-5 runs; each baseline is measured in the same run as what it is compared with."
)


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
        ("  baseline: brute-force haversine argmin, 100 points timed, x100", f"{brute:.1f} s "
         f"({brute / tree:.0f}x slower)"),
        ("1,000 free-text resolutions (name index built)", f"{resolve * 1e3:.1f} ms"),
        ("10,000 polygon lookups (contains_xy per country bbox)", f"{poly * 1e3:.1f} ms"),
        ("  baseline: STRtree intersects query", f"{poly_base * 1e3:.1f} ms "
         f"({poly_base / poly:.1f}x slower)"),
    ]  # fmt: skip


def main() -> None:
    run_rows(AREA, METHOD, "median", run)


if __name__ == "__main__":
    main()
