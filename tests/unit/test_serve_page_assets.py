"""The try-it page's static files: the committed world outlines and how assets are served."""

import gzip
import json
import re

import numpy as np

from georay.serve.page import ASSETS, STATIC_DIR, asset, svg_path, world_outlines


def _points(d: str) -> list[list[tuple[int, int]]]:
    """Absolute grid points of each ring of SVG path data made by :func:`svg_path`."""
    rings = []
    for start, steps in re.findall(r"M(-?\d+ -?\d+)l([-\d ]+)z", d):
        x, y = map(int, start.split())
        ring, deltas = [(x, y)], list(map(int, steps.split()))
        for dx, dy in zip(deltas[::2], deltas[1::2], strict=True):
            x, y = x + dx, y + dy
            ring.append((x, y))
        rings.append(ring)
    return rings


def test_svg_path_is_relative_rounded_and_closed():
    square = np.array([[2.0, 1.0], [2.04, 1.0], [3.0, 1.0], [3.0, 2.0], [2.0, 2.0], [2.0, 1.0]])
    d = svg_path([square, np.array([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [0.0, 0.0]])])
    # (2.04, 1) rounds onto (2, 1) and goes; the closing point is "z"; the tiny ring vanishes.
    assert d == "M20 -10l10 0 0 -10 -10 0z"
    assert _points(d) == [[(20, -10), (30, -10), (30, -20), (20, -20)]]


def test_committed_world_outlines_are_what_the_generator_makes():
    committed = json.loads((STATIC_DIR / "world.json").read_text())
    assert committed == world_outlines()  # else: python -m georay.serve.page
    assert len(committed) > 200 and (STATIC_DIR / "world.json").stat().st_size < 200_000
    (paris,) = [r for r in _points(committed["FR"]) if len(r) > 50]  # mainland France
    xs, ys = zip(*paris, strict=True)
    assert min(xs) < 23 < max(xs) and min(ys) < -488 < max(ys)  # Paris: 2.35 E, 48.86 N


def test_assets_are_the_listed_files_only_gzipped_with_stable_etags():
    assert set(ASSETS) == {p.name for p in STATIC_DIR.iterdir()}
    for name in ASSETS:
        found = asset(name)
        assert gzip.decompress(found.gzipped) == found.body == (STATIC_DIR / name).read_bytes()
        assert found.etag == asset(name).etag and found.etag.startswith('"')
    assert asset("page.py") is None and asset("../page.py") is None
    assert len(asset("world.json").gzipped) < 60_000
