"""Drawing the synthetic street views: country looks and a two-layer (RGB + ADE20K label) canvas.

Every shape is drawn twice with the same Pillow rasteriser, once in colour and once as its
ADE20K class id into a label image, so the per-class area fractions of a view are exact. A
country's look is a :class:`CountryStyle` (palette, road markings, sign shape, script marks,
vegetation); a city within it changes the sign panel colour and the skyline, so city is
learnable from pixels too. Views are drawn in relative units and work at any size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from georay.data.ade20k import NUM_CLASSES, class_id

RGB = tuple[int, int, int]


@cache
@dataclass(frozen=True)
class CountryStyle:
    """How one country's streets look, and the words a clue uses for each cue."""

    code: str  # ISO 3166-1 alpha-2
    wall: RGB  # building facade, the dominant colour
    wall_desc: str
    roof: RGB
    roof_desc: str
    pitched_roofs: bool
    sky: RGB
    asphalt: RGB
    verge: str  # ADE20K class of the roadside strip: "grass" or "earth"
    verge_rgb: RGB
    marking: str  # "dashed" | "solid" | "double" | "edges" | "dashed_edges" | "none"
    marking_rgb: RGB
    marking_desc: str
    sign_shape: str  # "rect" | "wide" | "tall" | "circle" | "triangle" | "diamond" | "octagon"
    sign_border: RGB
    script: str  # "latin" | "cjk" | "arabic" | "devanagari" | "cyrillic" | "thai" | "hangul"
    script_desc: str
    vegetation: float  # 0..1: how many trees
    tree_kind: str  # "round" | "conifer" | "palm"
    veg_desc: str
    pole_rgb: RGB
    traffic_lights: bool = False
    fences: bool = False


# Fixed order: the first K are a world with K countries, so worlds with different seeds share
# countries (train on one seed, evaluate on another). The first eight span continents and have
# the most distinct wall hues, markings, sign shapes and scripts.
# fmt: off
STYLES: tuple[CountryStyle, ...] = (
    CountryStyle("JP", (208, 208, 204), "pale grey concrete", (60, 70, 88), "dark blue-grey tiled", True,
                 (160, 195, 235), (92, 92, 98), "earth", (150, 130, 100), "dashed_edges", (245, 245, 245),
                 "dashed white centre lines with white edge lines", "rect", (30, 80, 190), "cjk", "CJK",
                 0.25, "round", "a few trimmed trees", (150, 150, 150), traffic_lights=True),
    CountryStyle("BR", (70, 170, 95), "bright green painted", (178, 82, 48), "terracotta", True,
                 (110, 175, 240), (70, 70, 72), "grass", (70, 140, 50), "double", (250, 200, 20),
                 "double yellow centre lines", "diamond", (20, 20, 20), "latin", "Portuguese",
                 0.8, "palm", "lush palms", (60, 60, 60)),
    CountryStyle("FR", (236, 222, 175), "cream limestone", (82, 90, 110), "grey slate", True,
                 (175, 200, 230), (105, 105, 112), "grass", (105, 150, 70), "dashed", (250, 250, 250),
                 "dashed white centre lines", "circle", (200, 20, 30), "latin", "French",
                 0.5, "round", "plane trees", (110, 120, 110)),
    CountryStyle("US", (165, 58, 48), "red brick", (35, 35, 38), "black asphalt-shingle", True,
                 (130, 180, 235), (58, 58, 60), "grass", (90, 150, 60), "double", (240, 190, 0),
                 "double yellow centre lines", "octagon", (245, 245, 245), "latin", "English",
                 0.45, "round", "maples", (120, 95, 60), traffic_lights=True),
    CountryStyle("IN", (238, 138, 38), "saffron orange", (182, 172, 150), "flat concrete", False,
                 (205, 200, 175), (140, 128, 110), "earth", (170, 130, 85), "none", (140, 128, 110),
                 "unmarked dusty roads", "tall", (20, 110, 40), "devanagari", "Devanagari",
                 0.45, "palm", "scattered palms", (90, 90, 90)),
    CountryStyle("ZA", (140, 100, 185), "purple plastered", (170, 176, 182), "corrugated iron", False,
                 (95, 165, 245), (66, 66, 70), "earth", (160, 95, 60), "dashed_edges", (250, 210, 0),
                 "yellow edge lines", "triangle", (200, 20, 20), "latin", "Afrikaans/English",
                 0.35, "round", "jacaranda trees", (200, 200, 200), fences=True),
    CountryStyle("RU", (232, 150, 168), "pink stucco", (45, 120, 70), "green metal", True,
                 (185, 200, 215), (100, 100, 104), "grass", (90, 130, 75), "solid", (245, 245, 245),
                 "solid white centre lines", "wide", (20, 60, 160), "cyrillic", "Cyrillic",
                 0.7, "conifer", "birch and fir trees", (70, 70, 70)),
    CountryStyle("AU", (48, 150, 162), "teal weatherboard", (200, 200, 205), "white corrugated", True,
                 (60, 140, 250), (75, 72, 70), "earth", (190, 90, 40), "edges", (250, 250, 250),
                 "white edge lines only", "rect", (250, 190, 0), "latin", "English",
                 0.6, "round", "eucalyptus trees", (170, 170, 170)),
    CountryStyle("CL", (228, 160, 118), "peach", (172, 72, 40), "terracotta tiled", True,
                 (140, 190, 235), (84, 84, 88), "earth", (150, 120, 80), "double", (245, 245, 245),
                 "double white centre lines", "circle", (20, 20, 20), "latin", "Spanish",
                 0.35, "round", "dry-looking trees", (90, 90, 95)),
    CountryStyle("GB", (118, 72, 52), "dark brown brick", (80, 85, 95), "grey slate", True,
                 (170, 180, 195), (72, 72, 76), "grass", (80, 140, 60), "dashed", (250, 250, 250),
                 "dashed white centre lines", "triangle", (200, 20, 20), "latin", "English",
                 0.55, "round", "hedges and oaks", (40, 40, 40), fences=True),
    CountryStyle("EG", (214, 192, 140), "sand-coloured", (200, 185, 150), "flat sandy", False,
                 (210, 215, 210), (120, 110, 98), "earth", (200, 175, 120), "none", (120, 110, 98),
                 "unmarked roads", "wide", (20, 80, 40), "arabic", "Arabic",
                 0.15, "palm", "date palms", (100, 100, 100)),
    CountryStyle("TH", (215, 80, 150), "magenta", (180, 40, 40), "red tiled", True,
                 (120, 170, 225), (80, 80, 84), "grass", (60, 150, 60), "dashed_edges", (250, 200, 20),
                 "dashed yellow centre lines with edge lines", "rect", (20, 20, 120), "thai", "Thai",
                 0.7, "palm", "tropical palms", (80, 80, 80)),
    CountryStyle("MX", (242, 205, 40), "bright yellow", (150, 75, 50), "brown tiled", False,
                 (100, 165, 235), (88, 84, 82), "earth", (170, 140, 100), "double", (250, 210, 0),
                 "double yellow centre lines", "octagon", (245, 245, 245), "latin", "Spanish",
                 0.35, "palm", "a few palms", (120, 120, 120)),
    CountryStyle("DE", (240, 240, 236), "white rendered", (150, 50, 40), "red tiled", True,
                 (165, 190, 220), (96, 96, 100), "grass", (85, 145, 70), "dashed", (250, 250, 250),
                 "dashed white centre lines", "diamond", (250, 210, 0), "latin", "German",
                 0.6, "round", "lime trees", (140, 140, 140), fences=True),
    CountryStyle("KR", (170, 192, 215), "blue-grey tiled", (90, 100, 120), "flat grey", False,
                 (175, 195, 220), (78, 78, 84), "earth", (140, 120, 95), "solid", (250, 200, 20),
                 "solid yellow centre lines", "rect", (30, 80, 190), "hangul", "Hangul",
                 0.3, "conifer", "pines", (160, 160, 160), traffic_lights=True),
    CountryStyle("NG", (160, 172, 60), "olive green", (150, 150, 155), "rusty corrugated", False,
                 (180, 190, 200), (110, 100, 90), "earth", (180, 100, 50), "edges", (245, 245, 245),
                 "faded white edge lines", "tall", (20, 120, 40), "latin", "English",
                 0.5, "palm", "oil palms", (80, 80, 80)),
)
# fmt: on

GRASS, EARTH = (85, 140, 60), (160, 125, 85)


def neighbour(
    s: CountryStyle, code: str, marking: str, marking_rgb: RGB, marking_desc: str, sign_shape: str
) -> CountryStyle:
    """The country next door to ``s``: the same buildings, roofs, sky, script and trees, so a
    view of sky, a wall and vegetation cannot tell the two apart; another roadside verge (grass
    for earth and back), road paint and sign shape, so a street view can."""
    verge = "earth" if s.verge == "grass" else "grass"
    return dataclasses.replace(
        s,
        code=code,
        verge=verge,
        verge_rgb=GRASS if verge == "grass" else EARTH,
        marking=marking,
        marking_rgb=marking_rgb,
        marking_desc=marking_desc,
        sign_shape=sign_shape,
    )


_WHITE, _YELLOW = (250, 250, 250), (250, 200, 20)
# One confusable neighbour per style above, in the same order (countries 17..32 of a world):
# the `confusable` synth preset's pairs. Each differs from its sibling only in what a street
# view shows low in the frame (verge, road paint) and in its sign shape.
# fmt: off
NEIGHBOURS: tuple[CountryStyle, ...] = tuple(
    neighbour(STYLES[i], *rest) for i, rest in enumerate((
        ("TW", "solid", _YELLOW, "solid yellow centre lines", "circle"),
        ("AR", "dashed", _WHITE, "dashed white centre lines", "circle"),
        ("BE", "solid", _WHITE, "solid white centre lines", "triangle"),
        ("CA", "dashed_edges", _YELLOW, "dashed yellow centre lines with edge lines", "diamond"),
        ("BD", "edges", _WHITE, "white edge lines only", "rect"),
        ("BW", "solid", _WHITE, "solid white centre lines", "circle"),
        ("UA", "double", _YELLOW, "double yellow centre lines", "rect"),
        ("NZ", "dashed_edges", _WHITE, "dashed white centre lines with white edge lines", "diamond"),
        ("PE", "dashed", _YELLOW, "dashed yellow centre lines", "wide"),
        ("IE", "edges", _YELLOW, "yellow edge lines", "diamond"),
        ("SA", "solid", _WHITE, "solid white centre lines", "rect"),
        ("LA", "double", _WHITE, "double white centre lines", "circle"),
        ("GT", "none", (88, 84, 82), "unmarked roads", "triangle"),
        ("AT", "double", _WHITE, "double white centre lines", "circle"),
        ("CN", "dashed", _WHITE, "dashed white centre lines", "tall"),
        ("GH", "double", _YELLOW, "double yellow centre lines", "octagon"),
    ))
)
# fmt: on
STYLES = STYLES + NEIGHBOURS

# City i of a country: sign panel colour i and skyline i (capital-size cities are tallest).
CITY_PANELS: tuple[tuple[RGB, RGB, str], ...] = (
    ((245, 245, 245), (20, 20, 20), "white"),
    ((250, 205, 30), (20, 20, 20), "yellow"),
    ((25, 95, 200), (250, 250, 250), "blue"),
    ((20, 140, 70), (250, 250, 250), "green"),
)
SKYLINES: tuple[tuple[float, float, str], ...] = (
    (0.40, 0.62, "tall towers"),
    (0.22, 0.36, "mid-rise blocks"),
    (0.10, 0.18, "low houses"),
    (0.16, 0.45, "a mixed skyline"),
)


def _jitter(rgb: RGB, rng: np.random.Generator, amount: int = 12) -> RGB:
    d = rng.integers(-amount, amount + 1, 3).tolist()
    return tuple(min(255, max(0, v + e)) for v, e in zip(rgb, d, strict=True))  # type: ignore[return-value]


def _darker(rgb: RGB, f: float = 0.6) -> RGB:
    return tuple(int(v * f) for v in rgb)  # type: ignore[return-value]


class Canvas:
    """An RGB image and its ADE20K label map, drawn in lockstep."""

    def __init__(self, width: int, height: int, sky: RGB):
        self.w, self.h = width, height
        self.rgb = Image.new("RGB", (width, height), sky)
        self.lab = Image.new("L", (width, height), class_id("sky"))
        self._d_rgb = ImageDraw.Draw(self.rgb)
        self._d_lab = ImageDraw.Draw(self.lab)

    def polygon(self, pts, rgb: RGB, c: str) -> None:
        self._d_rgb.polygon(pts, fill=rgb)
        self._d_lab.polygon(pts, fill=class_id(c))

    def rect(self, x0, y0, x1, y1, rgb: RGB, c: str) -> None:
        box = [int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1))]
        if box[2] < box[0] or box[3] < box[1]:
            return
        self._d_rgb.rectangle(box, fill=rgb)
        self._d_lab.rectangle(box, fill=class_id(c))

    def ellipse(self, x0, y0, x1, y1, rgb: RGB, c: str) -> None:
        box = [int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1))]
        if box[2] <= box[0] or box[3] <= box[1]:
            return
        self._d_rgb.ellipse(box, fill=rgb)
        self._d_lab.ellipse(box, fill=class_id(c))

    def line(self, pts, rgb: RGB, c: str, width: int) -> None:
        self._d_rgb.line(pts, fill=rgb, width=max(1, width))
        self._d_lab.line(pts, fill=class_id(c), width=max(1, width))

    def finish(self, rng: np.random.Generator, noise: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Pixels with mild sensor noise (so JPEG and models see texture) and the label map.

        The noise comes from a few cached fields, one picked per view, added in one Pillow C
        pass (``a + b - noise``, clipped) instead of drawing ~1M random numbers per image.
        """
        grains = _grain(self.w, self.h, noise)
        grain = grains[int(rng.integers(len(grains)))]
        img = ImageChops.add(self.rgb, grain, scale=1.0, offset=-noise)
        return np.asarray(img, dtype=np.uint8), np.asarray(self.lab, dtype=np.uint8)


@cache
def _grain(width: int, height: int, amount: int, variants: int = 8) -> tuple[Image.Image, ...]:
    """Noise images with values in [0, 2 * amount] (grey, so the noise does not tint)."""
    rng = np.random.default_rng(12345)
    fields = rng.integers(0, 2 * amount + 1, (variants, height, width, 1), dtype=np.uint8)
    return tuple(Image.fromarray(np.repeat(f, 3, axis=2), "RGB") for f in fields)


def fractions(labels: np.ndarray) -> np.ndarray:
    """Exact per-class area fractions (150,) float32 of a label map."""
    counts = np.bincount(labels.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    return (counts / labels.size).astype(np.float32)


def _sky(c: Canvas, s: CountryStyle, horizon: float, rng) -> None:
    # A vertical gradient, lighter towards the horizon: a few bands are enough at any size.
    top = _jitter(s.sky, rng, 8)
    for k in range(6):
        y0, y1 = horizon * k / 6, horizon * (k + 1) / 6 + 1
        f = 1 + 0.05 * k
        c.rect(0, y0, c.w, y1, tuple(min(255, int(v * f)) for v in top), "sky")


def _building(c: Canvas, s, x0, x1, top, base, rng) -> None:
    wall = _jitter(s.wall, rng, 14)
    c.rect(x0, top, x1, base, wall, "building")
    roof_h = max(2.0, (base - top) * 0.12)
    if s.pitched_roofs and x1 - x0 < c.w * 0.25:
        c.polygon(
            [(x0 - 2, top), (x1 + 2, top), ((x0 + x1) / 2, top - roof_h * 1.6)],
            _jitter(s.roof, rng, 8),
            "building",
        )
    else:
        c.rect(x0, top, x1, top + roof_h, _jitter(s.roof, rng, 8), "building")
    # Windows: a grid, darker than the wall.
    win = _darker(wall, 0.45)
    bw, bh = x1 - x0, base - top - roof_h
    cols = max(1, int(bw / (c.w * 0.035)))
    rows = max(1, int(bh / (c.h * 0.07)))
    for i in range(cols):
        for j in range(rows):
            wx = x0 + bw * (i + 0.3) / cols
            wy = top + roof_h + bh * (j + 0.25) / rows
            c.rect(wx, wy, wx + bw * 0.4 / cols, wy + bh * 0.45 / rows, win, "window")


def _buildings(c: Canvas, s, horizon, vx, skyline, rng) -> None:
    lo, hi, _ = skyline
    for side in (-1, 1):
        edge = vx - c.w * 0.08 if side < 0 else vx + c.w * 0.08
        x = 0.0 if side < 0 else float(c.w)
        step = -side  # left row is laid out rightwards from x=0, right row leftwards
        while (edge - x) * step >= 2.0:
            far = min(c.w * rng.uniform(0.08, 0.2), (edge - x) * step)
            # Nearer the image edge = nearer the camera = taller (cheap perspective).
            depth = abs(x - vx) / (c.w / 2)
            height = c.h * rng.uniform(lo, hi) * (0.45 + 0.8 * depth)
            xa, xb = (x, x + far) if step > 0 else (x - far, x)
            _building(c, s, xa, xb, horizon - height, horizon + c.h * 0.02, rng)
            x += step * far


def _ground(c: Canvas, s, horizon, vx, half, rng) -> None:
    c.rect(0, horizon, c.w, c.h, _jitter(s.verge_rgb, rng, 10), s.verge)
    walk = half * 1.45
    pave = _jitter((168, 164, 158), rng, 10)
    c.polygon(
        [(vx - 3, horizon), (vx + 3, horizon), (vx + walk, c.h), (vx - walk, c.h)], pave, "sidewalk"
    )
    c.polygon(
        [(vx - 2, horizon), (vx + 2, horizon), (vx + half, c.h), (vx - half, c.h)],
        _jitter(s.asphalt, rng, 6),
        "road",
    )


def _markings(c: Canvas, s, horizon, vx, half) -> None:
    """Paint on the road (still class road): centre line(s) and edge lines, in perspective."""
    rgb = s.marking_rgb

    def along(u: float, t: float) -> tuple[float, float]:
        # u in [-1, 1] across the road, t in [0, 1] from horizon to bottom.
        return vx + u * (2 + (half - 2) * t), horizon + (c.h - horizon) * t

    def stripe(u: float, t0: float, t1: float, width: float) -> None:
        (xa, ya), (xb, yb) = along(u, t0), along(u, t1)
        wa, wb = width * (0.1 + t0), width * (0.1 + t1)
        c.polygon([(xa - wa, ya), (xa + wa, ya), (xb + wb, yb), (xb - wb, yb)], rgb, "road")

    w = c.w * 0.006
    if s.marking in ("dashed", "dashed_edges"):
        # Dashes at perspective spacing: t^2 grows towards the camera.
        for k in range(2, 12):
            t0, t1 = (k / 11) ** 2, ((k + 0.5) / 11) ** 2
            stripe(0.0, t0, min(t1, 1.0), w)
    elif s.marking == "solid":
        stripe(0.0, 0.02, 1.0, w)
    elif s.marking == "double":
        stripe(-0.03, 0.02, 1.0, w * 0.7)
        stripe(0.03, 0.02, 1.0, w * 0.7)
    if s.marking in ("edges", "dashed_edges"):
        stripe(-0.9, 0.02, 1.0, w * 0.8)
        stripe(0.9, 0.02, 1.0, w * 0.8)


def _tree(c: Canvas, s, x, base, size, rng) -> None:
    green = _jitter((60, 125, 55) if s.tree_kind != "conifer" else (35, 90, 50), rng, 15)
    trunk = (95, 70, 45)
    c.rect(x - size * 0.06, base - size * 0.9, x + size * 0.06, base, trunk, "tree")
    if s.tree_kind == "round":
        c.ellipse(
            x - size * 0.45, base - size * 1.6, x + size * 0.45, base - size * 0.7, green, "tree"
        )
    elif s.tree_kind == "conifer":
        c.polygon(
            [
                (x - size * 0.35, base - size * 0.5),
                (x + size * 0.35, base - size * 0.5),
                (x, base - size * 1.9),
            ],
            green,
            "tree",
        )
    else:  # palm: a tall trunk and a crown of fronds
        c.rect(x - size * 0.04, base - size * 1.6, x + size * 0.04, base, trunk, "tree")
        top = base - size * 1.6
        for k in range(6):
            a = math.pi * (0.15 + 0.7 * k / 5)
            c.line(
                [
                    (x, top),
                    (x - math.cos(a) * size * 0.6, top + math.sin(a) * size * 0.15 - size * 0.12),
                ],
                green,
                "tree",
                int(size * 0.08),
            )


def _script(c: Canvas, s, box, ink: RGB, rng) -> None:
    """Script-like marks inside a sign panel (class signboard): a per-country 'alphabet'."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    lines = 2 if h > w * 0.5 else 1
    for li in range(lines):
        ly0 = y0 + h * (0.2 + 0.6 * li / lines)
        lh = h * 0.6 / lines * 0.7
        x = x0 + w * 0.1
        while x < x1 - w * 0.15:
            gw = w * rng.uniform(0.06, 0.11)
            t = max(1, int(lh * 0.18))
            if s.script == "latin":  # words of short letter strokes with gaps
                c.rect(x, ly0 + lh * rng.uniform(0, 0.3), x + t, ly0 + lh, ink, "signboard")
                c.rect(x, ly0 + lh * 0.8, x + gw * 0.7, ly0 + lh, ink, "signboard")
            elif s.script == "cjk":  # square blocks with inner strokes
                c.rect(x, ly0, x + gw, ly0 + t, ink, "signboard")
                c.rect(x + gw / 2 - t / 2, ly0, x + gw / 2 + t / 2, ly0 + lh, ink, "signboard")
                c.rect(x, ly0 + lh * 0.55, x + gw, ly0 + lh * 0.55 + t, ink, "signboard")
            elif s.script == "devanagari":  # a top bar with hanging strokes
                c.rect(x, ly0, x + gw * 1.05, ly0 + t, ink, "signboard")
                c.rect(x + gw * 0.3, ly0, x + gw * 0.3 + t, ly0 + lh, ink, "signboard")
                c.ellipse(
                    x + gw * 0.4, ly0 + lh * 0.4, x + gw * 0.9, ly0 + lh * 0.9, ink, "signboard"
                )
            elif s.script == "arabic":  # a baseline with dots and hooks
                c.rect(x, ly0 + lh * 0.7, x + gw * 1.1, ly0 + lh * 0.7 + t, ink, "signboard")
                c.ellipse(x + gw * 0.3, ly0, x + gw * 0.3 + 2 * t, ly0 + 2 * t, ink, "signboard")
                c.rect(
                    x + gw * 0.8, ly0 + lh * 0.2, x + gw * 0.8 + t, ly0 + lh * 0.7, ink, "signboard"
                )
            elif s.script == "cyrillic":  # tall blocky letters
                c.rect(x, ly0, x + t, ly0 + lh, ink, "signboard")
                c.rect(x + gw * 0.6, ly0, x + gw * 0.6 + t, ly0 + lh, ink, "signboard")
                c.rect(x, ly0 + lh / 2, x + gw * 0.6, ly0 + lh / 2 + t, ink, "signboard")
            elif s.script == "thai":  # small loops with tails
                c.ellipse(x, ly0 + lh * 0.4, x + gw * 0.5, ly0 + lh, ink, "signboard")
                c.rect(x + gw * 0.5 - t, ly0 + lh * 0.2, x + gw * 0.5, ly0 + lh, ink, "signboard")
            else:  # hangul: a circle beside a bar
                c.ellipse(x, ly0, x + gw * 0.5, ly0 + lh * 0.5, ink, "signboard")
                c.rect(x + gw * 0.65, ly0, x + gw * 0.65 + t, ly0 + lh, ink, "signboard")
                c.rect(x, ly0 + lh * 0.75, x + gw * 0.5, ly0 + lh * 0.75 + t, ink, "signboard")
            x += gw * (1.5 if rng.random() < 0.8 else 2.4)


def _sign(c: Canvas, s, x, base, size, city: int, rng) -> None:
    panel, ink, _ = CITY_PANELS[city % len(CITY_PANELS)]
    c.rect(x - size * 0.03, base - size * 1.9, x + size * 0.03, base, s.pole_rgb, "pole")
    cx, cy = x, base - size * 1.9
    half = size * 0.5
    bw = max(2.0, size * 0.06)
    shape = s.sign_shape
    if shape in ("rect", "wide", "tall"):
        sx, sy = {"rect": (1.0, 0.7), "wide": (1.5, 0.55), "tall": (0.6, 1.1)}[shape]
        box = (cx - half * sx, cy - half * sy, cx + half * sx, cy + half * sy)
        c.rect(*box, s.sign_border, "signboard")
        inner = (box[0] + bw, box[1] + bw, box[2] - bw, box[3] - bw)
        c.rect(*inner, panel, "signboard")
    else:
        n = {"circle": 0, "triangle": 3, "diamond": 4, "octagon": 8}[shape]
        rot = {3: -math.pi / 2, 4: 0.0, 8: math.pi / 8}.get(n, 0.0)

        def ring(r: float):
            return [
                (
                    cx + r * math.cos(rot + 2 * math.pi * k / n),
                    cy + r * math.sin(rot + 2 * math.pi * k / n),
                )
                for k in range(n)
            ]

        if n == 0:
            c.ellipse(cx - half, cy - half, cx + half, cy + half, s.sign_border, "signboard")
            c.ellipse(
                cx - half + bw, cy - half + bw, cx + half - bw, cy + half - bw, panel, "signboard"
            )
        else:
            c.polygon(ring(half), s.sign_border, "signboard")
            c.polygon(ring(half - bw * 1.6), panel, "signboard")
        r = half * (0.5 if n == 3 else 0.62)
        inner = (cx - r, cy - r * (0.2 if n == 3 else 0.6), cx + r, cy + r * 0.6)
    _script(c, s, inner, ink, rng)


def _car(c: Canvas, x, y, size, rng) -> None:
    body = tuple(int(v) for v in rng.integers(20, 235, 3))
    c.rect(x - size, y - size * 0.55, x + size, y, body, "car")
    c.rect(
        x - size * 0.65, y - size * 0.95, x + size * 0.65, y - size * 0.5, _darker(body, 0.8), "car"
    )
    c.rect(x - size * 0.5, y - size * 0.88, x + size * 0.5, y - size * 0.58, (40, 50, 60), "car")
    c.ellipse(x - size * 0.8, y - size * 0.15, x - size * 0.4, y + size * 0.12, (15, 15, 15), "car")
    c.ellipse(x + size * 0.4, y - size * 0.15, x + size * 0.8, y + size * 0.12, (15, 15, 15), "car")


def _traffic_light(c: Canvas, s, x, base, size) -> None:
    c.rect(x - size * 0.03, base - size * 2.4, x + size * 0.03, base, s.pole_rgb, "pole")
    top = base - size * 2.4
    c.rect(x - size * 0.15, top - size * 0.6, x + size * 0.15, top, (30, 30, 30), "traffic light")
    for k, col in enumerate(((220, 30, 30), (240, 180, 0), (30, 190, 80))):
        y = top - size * 0.6 + size * 0.2 * k
        c.ellipse(
            x - size * 0.09, y + size * 0.03, x + size * 0.09, y + size * 0.17, col, "traffic light"
        )


def _fence(c: Canvas, x0, x1, base, height) -> None:
    wood = (140, 110, 80)
    c.rect(x0, base - height * 0.75, x1, base - height * 0.65, wood, "fence")
    c.rect(x0, base - height * 0.35, x1, base - height * 0.25, wood, "fence")
    step = max(4.0, height * 0.5)
    x = x0
    while x < x1:
        c.rect(x, base - height, x + max(1.0, height * 0.08), base, wood, "fence")
        x += step


def draw_street(
    s: CountryStyle, city: int, width: int, height: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A street view of country ``s`` in its ``city``-th city: (RGB uint8, labels uint8)."""
    horizon = height * rng.uniform(0.42, 0.52)
    vx = width * rng.uniform(0.4, 0.6)
    half = width * rng.uniform(0.42, 0.6)  # road half-width at the bottom edge
    c = Canvas(width, height, s.sky)
    _sky(c, s, horizon, rng)
    _buildings(c, s, horizon, vx, SKYLINES[city % len(SKYLINES)], rng)
    _ground(c, s, horizon, vx, half, rng)
    _markings(c, s, horizon, vx, half)
    # Roadside objects, far (small, near the horizon) to near (large, low in the frame).
    n_trees = int(round(s.vegetation * 8 * rng.uniform(0.6, 1.4)))
    objects = [("tree", rng.uniform(0.05, 0.9)) for _ in range(n_trees)]
    objects.append(("sign", rng.uniform(0.35, 0.6)))
    if s.traffic_lights:
        objects.append(("light", rng.uniform(0.2, 0.5)))
    for kind, t in sorted(objects, key=lambda o: o[1]):
        y = horizon + (height - horizon) * t * 0.55
        side = -1 if rng.random() < 0.5 else 1
        off = 2 + (half * 1.45 - 2) * (y - horizon) / (height - horizon) + width * 0.03
        x = vx + side * off
        size = height * (0.08 + 0.3 * t)
        if kind == "tree":
            _tree(c, s, x, y, size, rng)
        elif kind == "sign":
            _sign(c, s, x, y, size * 0.85, city, rng)
        else:
            _traffic_light(c, s, x, y, size * 0.6)
    if s.fences:
        y = horizon + (height - horizon) * 0.12
        _fence(c, 0, vx - half * 0.35, y, height * 0.05)
    for _ in range(int(rng.integers(0, 3))):
        t = rng.uniform(0.15, 0.6)
        y = horizon + (height - horizon) * t
        lane = rng.uniform(-0.5, 0.5) * (2 + (half - 2) * t)
        _car(c, vx + lane, y, width * (0.02 + 0.12 * t), rng)
    return c.finish(rng)


def draw_low_locatability(
    s: CountryStyle, width: int, height: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A view with little to locate it: mostly sky, a plain wall and vegetation."""
    c = Canvas(width, height, s.sky)
    top = height * rng.uniform(0.25, 0.45)
    _sky(c, s, top, rng)
    wall = _jitter(s.wall, rng, 14)
    c.rect(0, top, width, height, wall, "wall")
    if rng.random() < 0.6:
        dx = width * rng.uniform(0.1, 0.8)
        c.rect(dx, height * 0.55, dx + width * 0.12, height, _darker(wall, 0.5), "door")
    for _ in range(int(rng.integers(1, 5))):
        x = width * rng.uniform(0, 1)
        size = height * rng.uniform(0.2, 0.45)
        _tree(c, s, x, height, size, rng)
    c.rect(0, height * rng.uniform(0.85, 0.95), width, height, _jitter((70, 135, 60), rng), "grass")
    return c.finish(rng)
