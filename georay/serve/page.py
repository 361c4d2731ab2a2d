"""The page that tries the API (``GET /``): static assets shipped in ``georay/serve/static/``.

``index.html`` loads ``static/page.css``, ``static/page.js`` and the world map's country
outlines ``static/world.json``, all from the app itself: the page needs nothing from outside
the server (no CDN, no map tiles). The app redirects ``/prefix`` to ``/prefix/``, so the
page's relative URLs resolve under any route prefix.

``world.json`` maps ISO alpha-2 codes to SVG path data in an equirectangular frame of tenths
of a degree (x = 10 * lon, y = -10 * lat), with relative moves so most numbers are one or two
digits. It is generated once from the Natural Earth outlines of :mod:`georay.geo.outlines`
and committed; regenerate it with ``python -m georay.serve.page``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The files the app serves, with their media types: nothing else under static/ is reachable.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "world.json": "application/json",
}
# 0.1 degree: under a pixel on a 1000-pixel world map, and still recognisable on the
# 24-degree view the page zooms to; 168 KB of JSON (52 KB gzipped).
OUTLINE_TOLERANCE_DEG = 0.1
OUTLINE_UNITS_PER_DEG = 10


@dataclass(frozen=True)
class Asset:
    """One static file, ready to send: its bytes, gzipped bytes, media type and ETag."""

    body: bytes
    gzipped: bytes
    media_type: str
    etag: str


@functools.lru_cache(maxsize=len(ASSETS))
def asset(name: str) -> Asset | None:
    """The static file ``name`` (one of :data:`ASSETS`), read and compressed once; else None."""
    media_type = ASSETS.get(name)
    if media_type is None:
        return None
    body = (STATIC_DIR / name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    # mtime=0: the same bytes every time, so replicas agree.
    return Asset(body, gzip.compress(body, compresslevel=9, mtime=0), media_type, etag)


def svg_path(rings: list[np.ndarray], units_per_deg: int = OUTLINE_UNITS_PER_DEG) -> str:
    """SVG path data of lon/lat rings on the page's grid (x = u * lon, y = -u * lat).

    Each ring is one absolute move, then relative lines (``l dx dy ...``) and a close. Points
    that round onto the previous one are dropped, and so are rings left with under 3 points.

    >>> svg_path([np.array([[0, 0], [1, 0], [1, 1], [0, 0]])])
    'M0 0l10 0 0 -10z'
    """
    parts = []
    for ring in rings:
        grid = np.round(np.asarray(ring, dtype=np.float64) * units_per_deg).astype(np.int64)
        grid[:, 1] *= -1  # SVG's y axis points down
        keep = np.ones(len(grid), dtype=bool)
        keep[1:] = np.any(grid[1:] != grid[:-1], axis=1)
        grid = grid[keep]
        if len(grid) > 1 and (grid[0] == grid[-1]).all():
            grid = grid[:-1]  # "z" closes the ring
        if len(grid) < 3:
            continue
        steps = " ".join(f"{dx} {dy}" for dx, dy in np.diff(grid, axis=0).tolist())
        parts.append(f"M{grid[0, 0]} {grid[0, 1]}l{steps}z")
    return "".join(parts)


def world_outlines(tolerance_deg: float = OUTLINE_TOLERANCE_DEG) -> dict[str, str]:
    """ISO alpha-2 code -> SVG path data of that country, for ``static/world.json``."""
    from georay.geo.outlines import country_outlines

    paths = {code: svg_path(rings) for code, rings in country_outlines(tolerance_deg)}
    return {code: d for code, d in paths.items() if d}


def write_world_json(path: Path = STATIC_DIR / "world.json") -> int:
    """Regenerate ``world.json`` (sorted keys, no spaces); returns its size in bytes."""
    text = json.dumps(world_outlines(), separators=(",", ":"), sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")
    return path.stat().st_size


if __name__ == "__main__":
    size = write_world_json()
    print(f"wrote {STATIC_DIR / 'world.json'} ({size} bytes)")
