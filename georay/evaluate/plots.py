"""Report figures (matplotlib, Agg): H3 map over Natural Earth outlines, error histogram,
per-country bars. Each function returns PNG bytes, so the report folder can be local or S3."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on workers and CI; must precede pyplot

import h3  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402

from georay.data.storage import join_uri, write_bytes  # noqa: E402
from georay.evaluate.score import Scored  # noqa: E402
from georay.geo.metrics import THRESHOLDS_KM  # noqa: E402
from georay.geo.outlines import country_outlines  # noqa: E402

OCEAN, LAND, BORDER = "#dce8f2", "#f4f1ea", "#a0a0a0"
ACCURACY_CMAP = "RdYlGn"
ERROR_CMAP = "viridis_r"
DPI = 110


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _extent(lon: np.ndarray, lat: np.ndarray) -> tuple[float, float, float, float]:
    """Map window around the data (whole world when the data spans most of it)."""
    if not len(lon):
        return -180, 180, -60, 85
    pad = 5.0
    x0, x1 = max(-180, lon.min() - pad), min(180, lon.max() + pad)
    y0, y1 = max(-90, lat.min() - pad), min(90, lat.max() + pad)
    if x1 - x0 > 200:
        return -180, 180, max(-60, y0), min(85, y1)
    # Keep a 2:1 aspect so small regions are not stretched.
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, y1 - y0, 10)
    return cx - half, cx + half, max(-90, cy - half / 2), min(90, cy + half / 2)


def _basemap(ax: plt.Axes, extent: tuple[float, float, float, float]) -> None:
    ax.set_facecolor(OCEAN)
    rings = [ring for _, parts in country_outlines(0.1) for ring in parts]
    ax.add_collection(
        PolyCollection(rings, facecolors=LAND, edgecolors=BORDER, linewidths=0.3, zorder=1)
    )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.grid(color="white", linewidth=0.4, zorder=0)


def _error_norm(cells: pa.Table) -> LogNorm:
    """Log colour scale over the decades the medians span (1 km .. 20,000 km at most)."""
    med = np.asarray(cells["median_km"].to_numpy(zero_copy_only=False), dtype=float)
    med = med[np.isfinite(med) & (med > 0)]
    if not len(med):
        return LogNorm(1, 20000)
    low = 10 ** np.floor(np.log10(max(med.min(), 1.0)))
    high = min(10 ** np.ceil(np.log10(max(med.max(), low * 10))), 20000)
    return LogNorm(low, max(high, low * 10))


def _cell_polygon(cell: str) -> np.ndarray:
    ring = np.array([(lon, lat) for lat, lon in h3.cell_to_boundary(cell)])
    if np.ptp(ring[:, 0]) > 180:  # crosses the antimeridian: draw it on the east side
        ring[ring[:, 0] < 0, 0] += 360
    return ring


def cell_map(cells: pa.Table, res: int, n_images: int) -> bytes:
    """Two stacked maps of one resolution's cells: country accuracy and median error.

    Cells are drawn as their hexagons when the map window is regional; on a world-wide window
    a res-3..5 hexagon is a pixel or two, so cells become markers whose area grows with the
    number of images in them.
    """
    lon, lat = cells["lon"].to_numpy(), cells["lat"].to_numpy()
    n = cells["n"].to_numpy()
    extent = _extent(lon, lat)
    as_markers = extent[1] - extent[0] > 60
    panels = [
        ("country_accuracy", "country accuracy", plt.get_cmap(ACCURACY_CMAP), Normalize(0, 1)),
        ("median_km", "median error (km)", plt.get_cmap(ERROR_CMAP), _error_norm(cells)),
    ]
    aspect = (extent[3] - extent[2]) / (extent[1] - extent[0])
    fig, axes = plt.subplots(2, 1, figsize=(12, 2 * (10.5 * aspect + 1.0)), layout="constrained")
    biggest = int(n.max()) if len(n) else 1
    size = 12 + 140 * np.sqrt(n / biggest)  # marker area grows with images per cell
    for ax, (column, label, cmap, norm) in zip(axes, panels, strict=True):
        _basemap(ax, extent)
        values = np.asarray(cells[column].to_numpy(zero_copy_only=False), dtype=float)
        colors = cmap(norm(np.clip(np.nan_to_num(values, nan=20000), 1e-9, None)))
        colors[np.isnan(values)] = (0.55, 0.55, 0.55, 1.0)  # no answered row in the cell
        order = np.argsort(-n, kind="stable")  # big cells first so small ones stay on top
        if as_markers:
            ax.scatter(lon[order], lat[order], s=size[order], c=colors[order],
                       edgecolors="black", linewidths=0.3, zorder=3)  # fmt: skip
            for k in sorted({1, biggest}):
                ax.scatter([], [], s=12 + 140 * np.sqrt(k / biggest), c="white",
                           edgecolors="black", linewidths=0.3, label=f"{k:,} image(s)")  # fmt: skip
            ax.legend(loc="lower left", title="cell size", fontsize=8, title_fontsize=8)
        else:
            polys = [_cell_polygon(c) for c in cells["cell"].to_pylist()]
            ax.add_collection(PolyCollection([polys[i] for i in order], facecolors=colors[order],
                                             edgecolors="black", linewidths=0.3, zorder=3))  # fmt: skip
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.9,
                           pad=0.01)  # fmt: skip
        bar.set_label(label)
        ax.set_title(
            f"{label.capitalize()} per H3 res-{res} cell of the true location "
            f"({len(n):,} cells, {n_images:,} images)"
        )
    return _png(fig)


def error_histogram(scored: Scored) -> bytes:
    """Distribution of the error (log km) with the accuracy thresholds, and the cumulative
    share of *all* rows within each distance (unanswered rows never get there)."""
    d = scored.distance_km[scored.located]
    fin = d[np.isfinite(d)]
    total = max(len(d), 1)
    fig, ax = plt.subplots(figsize=(10, 5))
    bins = np.logspace(-1, np.log10(20040), 60)  # 0.1 km .. half the circumference
    ax.hist(np.clip(fin, 0.1, None), bins=bins, color="#4c72b0", alpha=0.85)
    ax.set_xscale("log")
    ax.set_xlabel("great-circle error (km, log scale)")
    ax.set_ylabel("images")
    twin = ax.twinx()
    xs = np.sort(np.clip(fin, 0.1, None))
    twin.step(xs, np.arange(1, len(xs) + 1) / total, where="post", color="#dd8452")
    twin.set_ylim(0, 1)
    twin.set_ylabel("share of all rows within d", color="#dd8452")
    for r in THRESHOLDS_KM:
        share = float(np.mean(d < r)) if len(d) else 0.0
        ax.axvline(r, color="black", linestyle="--", linewidth=0.8)
        ax.text(r * 1.08, 0.97, f"{r:g} km\n{share:.1%}", transform=ax.get_xaxis_transform(),
                va="top", fontsize=8)  # fmt: skip
    unanswered = len(d) - len(fin)
    ax.set_title(
        f"Error distribution: {len(fin):,} located answers, {unanswered:,} unanswered of {len(d):,}"
    )
    return _png(fig)


def country_bars(countries: pa.Table, top: int = 25) -> bytes:
    """Per true country (most images first): country accuracy and median error."""
    t = countries.slice(0, top)
    names = [f"{nm} ({cc})" for nm, cc in zip(t["country_name"].to_pylist(),
                                               t["country"].to_pylist(), strict=True)]  # fmt: skip
    acc = np.asarray(t["country_accuracy"].to_numpy(zero_copy_only=False), dtype=float)
    med = np.asarray(t["median_km"].to_numpy(zero_copy_only=False), dtype=float)
    n = t["n"].to_numpy()
    y = np.arange(len(t))[::-1]
    height = max(3.0, 0.32 * len(t) + 1.2)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    left.barh(y, acc, color=plt.get_cmap(ACCURACY_CMAP)(acc))
    left.set_xlim(0, 1.15)
    left.set_xlabel("country accuracy (correct / images)")
    left.set_yticks(y, names)
    for yi, a, k in zip(y, acc, n, strict=True):
        left.text(min(a, 1) + 0.01, yi, f"{a:.0%}  n={k:,}", va="center", fontsize=8)
    right.barh(y, np.nan_to_num(med, nan=0), color="#4c72b0")
    right.set_xscale("log")
    right.set_xlim(0.5, 25000)
    right.set_xlabel("median error (km, log scale)")
    for r in THRESHOLDS_KM:
        right.axvline(r, color="black", linestyle=":", linewidth=0.6)
    more = f" (top {top} of {len(countries)} by images)" if len(countries) > top else ""
    fig.suptitle(f"Per true country{more}")
    fig.tight_layout()
    return _png(fig)


def compare_methods(scored: dict[str, Scored]) -> bytes:
    """Methods side by side: the share of all located truth rows within each distance (one
    curve per method, thresholds marked), and country / city F1 (the paper's) as bars."""
    from georay.geo.metrics import level_metrics

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(13, 5), width_ratios=(3, 2))
    xs = np.logspace(-1, np.log10(20040), 400)  # 0.1 km .. half the circumference
    for name, s in scored.items():
        d = s.distance_km[s.located]
        hits = np.sort(d[np.isfinite(d)])  # strict d < x: the count left of x
        share = np.searchsorted(hits, xs, side="left") / max(len(d), 1)
        curves.plot(xs, share, label=name, linewidth=1.8)
    for r in THRESHOLDS_KM:
        curves.axvline(r, color="black", linestyle=":", linewidth=0.7)
        curves.text(r * 1.08, 0.98, f"{r:g} km", transform=curves.get_xaxis_transform(),
                    va="top", fontsize=8)  # fmt: skip
    curves.set_xscale("log")
    curves.set_ylim(0, 1)
    curves.set_xlabel("great-circle distance d (km, log scale)")
    curves.set_ylabel("share of truth rows predicted within d")
    curves.legend(loc="upper left", bbox_to_anchor=(0.0, 0.92))
    curves.set_title("Accuracy within d km")
    levels = ("country", "city")
    width = 0.8 / max(len(scored), 1)
    for i, (name, s) in enumerate(scored.items()):
        f1 = [
            level_metrics(getattr(s, f"{lvl}_correct"), getattr(s, f"{lvl}_answered"),
                          getattr(s, f"{lvl}_known"))["f1"]
            for lvl in levels
        ]  # fmt: skip
        x = np.arange(len(levels)) + (i - (len(scored) - 1) / 2) * width
        bars.bar(x, f1, width, label=name)
        for xi, v in zip(x, f1, strict=True):
            bars.text(xi, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    bars.set_xticks(np.arange(len(levels)), [f"{lvl} F1" for lvl in levels])
    bars.set_ylim(0, 1.1)
    bars.set_title("Precision/recall F1 per level (GeoReasoner protocol)")
    fig.suptitle(
        f"{len(scored)} methods on the same {len(next(iter(scored.values()))):,} truth rows"
    )
    fig.tight_layout()
    return _png(fig)


def reliability_diagram(curves: dict[str, dict]) -> bytes:
    """Per level (country, city): accuracy against mean confidence in equal-mass bins, one
    line per method, solid as given and dashed after calibration; the diagonal is perfect."""
    levels = [lvl for lvl in ("country", "city") if any(lvl in c for c in curves.values())]
    fig, axes = plt.subplots(1, len(levels), figsize=(6 * len(levels), 5.5), squeeze=False)
    for ax, level in zip(axes[0], levels, strict=True):
        ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=0.8, label="perfect")
        for i, (method, c) in enumerate(curves.items()):
            if level not in c:
                continue
            color = f"C{i}"
            for kind, style in (("as_given", "-"), ("calibrated", "--")):
                if kind in c[level]:
                    b = c[level][kind]
                    label = method if kind == "as_given" else f"{method} calibrated"
                    ax.plot(b["confidence"], b["accuracy"], style, marker="o", markersize=3,
                            color=color, label=label)  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("mean confidence in bin")
        ax.set_ylabel("share right in bin")
        ax.set_title(f"{level}: reliability (equal-mass bins)")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def coverage_curves(curves: dict[str, dict]) -> bytes:
    """Country precision of the kept rows against the share of the archive kept (most
    confident first), one curve per method, with the area under the risk-coverage curve."""
    from georay.evaluate.confidence import PRECISION_TARGETS

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for method, c in curves.items():
        if "curve" not in c:
            continue
        cv = c["curve"]
        ax.step(np.r_[0, cv["coverage"]], np.r_[cv["precision"][:1], cv["precision"]],
                where="pre", label=f"{method} (AURC {cv['aurc']:.3f})", linewidth=1.8)  # fmt: skip
    for target in PRECISION_TARGETS:
        ax.axhline(target, color="black", linestyle=":", linewidth=0.7)
        ax.text(0.01, target, f"{target:.0%}", va="bottom", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), 1.01)
    ax.set_xlabel("share of the archive kept (most confident first)")
    ax.set_ylabel("country precision of the kept rows")
    ax.set_title("Selective prediction: keep the confident rows, check the rest")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def draw_all(
    scored: dict[str, Scored], tables: dict[str, pa.Table], cfg, confidence: dict | None = None
) -> dict[str, str]:
    """Draw every figure into ``cfg.output``; returns {figure name: file name}.

    The map, error histogram and country bars show the first method (``tables`` are its
    group tables); with several methods, ``methods.png`` compares them. ``confidence`` (method
    -> curves from :func:`georay.evaluate.confidence.confidence_metrics`) adds
    ``calibration.png`` and ``coverage.png`` for the methods that carry confidences.
    """
    res = cfg.map_resolution if cfg.map_resolution is not None else min(cfg.h3_resolution)
    primary = next(iter(scored.values()))
    figures = {
        f"map_res{res}": cell_map(tables[f"cells_res{res}"], res, len(primary)),
        "error_histogram": error_histogram(primary),
        "countries": country_bars(tables["countries"]),
    }
    if len(scored) > 1:
        figures["methods"] = compare_methods(scored)
    if any(lvl in c for c in (confidence or {}).values() for lvl in ("country", "city")):
        figures["calibration"] = reliability_diagram(confidence)
    if any("curve" in c for c in (confidence or {}).values()):
        figures["coverage"] = coverage_curves(confidence)
    for name, png in figures.items():
        write_bytes(join_uri(cfg.output, f"{name}.png"), png)
    return {name: f"{name}.png" for name in figures}
