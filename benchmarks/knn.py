"""kNN baseline speed: queries/s of georay's gallery search + medoid, against brute-force numpy.

Run: ``.venv/bin/python -m benchmarks.knn`` (gallery sizes 10K and 1M synthetic embeddings,
256-d). For each size, in the same run:

* georay: ``georay.data.vectors`` as the kNN actor uses it (``build_index(kind="auto")``:
  exact ``IndexFlatIP`` up to 50K vectors, ``IndexIVFFlat`` above), ``Gallery.search`` of k
  neighbours plus :func:`~georay.baseline.index.locate` (the weighted medoid), per query batch;
* baseline: brute-force numpy, the same cosine similarities as one matrix product per chunk of
  queries, ``argpartition`` for the top k, then the same medoid;
* recall@k of georay's neighbours against the exact ones, and how often both pick the same
  place.

Synthetic galleries: unit vectors drawn around 5,000 random "places" (each with its own
coordinates), as images of one place look alike; queries are new draws around the same places.
With ``--demo-run RUN`` it also sweeps k and the weighting temperature on a demo run's curate
embeddings (leave-one-out on the train split, so the choice never sees the test views) and
scores the chosen setting on the test split. Writes the ``knn`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import numpy as np

from benchmarks.common import Conditions, write_part
from georay.baseline.config import KnnConfig
from georay.baseline.index import Gallery, locate
from georay.data.vectors import build_index, normalise
from georay.geo.distance import haversine_km

AREA = "knn"
DIM = 256
PLACES = 5_000
NOISE = 0.08  # per dimension: neighbours of one place stay closer than other places' images


# The baseline's own defaults, to set beside the sweep's pick.
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(KnnConfig)}
DEFAULT_K, DEFAULT_T = _DEFAULTS["neighbours"], _DEFAULTS["temperature"]


def synthetic(n: int, seed: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors around random ``centres`` (float32, made in chunks: 1M x 256 is 1 GiB),
    and the centre of each."""
    rng = np.random.default_rng(seed)
    place = rng.integers(0, len(centres), n)
    out = np.empty((n, centres.shape[1]), np.float32)
    for s in range(0, n, 100_000):
        e = min(s + 100_000, n)
        noise = rng.standard_normal((e - s, centres.shape[1]), dtype=np.float32)
        out[s:e] = centres[place[s:e]] + NOISE * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out, place


def numpy_topk(gallery: np.ndarray, queries: np.ndarray, k: int, chunk: int = 64):
    """Exact top-k by cosine (rows are unit vectors): chunked matrix products + argpartition."""
    sims = np.empty((len(queries), k), np.float32)
    rows = np.empty((len(queries), k), np.int64)
    for s in range(0, len(queries), chunk):
        scores = queries[s : s + chunk] @ gallery.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part = np.take_along_axis(scores, top, 1)
        order = np.argsort(-part, axis=1)
        rows[s : s + chunk] = np.take_along_axis(top, order, 1)
        sims[s : s + chunk] = np.take_along_axis(part, order, 1)
    return sims, rows


def place_of(g: Gallery, sims: np.ndarray, rows: np.ndarray, temperature: float) -> np.ndarray:
    """The gallery row each query is placed at (the medoid of its neighbours)."""
    valid = rows >= 0
    safe = np.maximum(rows, 0)
    best = locate(g.lat[safe], g.lon[safe], sims, valid, temperature)
    return safe[np.arange(len(rows)), best]


def measure(n: int, queries: int, base_queries: int, k: int, temperature: float) -> dict:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((PLACES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    clat, clon = rng.uniform(-60, 70, PLACES), rng.uniform(-180, 180, PLACES)
    emb, place = synthetic(n, 1, centres)
    q, _ = synthetic(queries, 2, centres)
    none = np.full(n, None, dtype=object)
    t = time.perf_counter()
    index = build_index(emb, "auto")
    build_s = time.perf_counter() - t
    g = Gallery(index, none, clat[place], clon[place], none, none)
    g.search(q[:64], k)  # warm-up
    t = time.perf_counter()
    sims, rows = [], []
    for s in range(0, queries, 64):  # the actor's batches
        a, b = g.search(q[s : s + 64], k)
        sims.append(a), rows.append(b)
    sims, rows = np.concatenate(sims), np.concatenate(rows)
    ours_at = place_of(g, sims, rows, temperature)
    ours_s = time.perf_counter() - t
    nb = min(base_queries, queries)
    t = time.perf_counter()
    bsims, brows = numpy_topk(emb, q[:nb], k)
    base_at = place_of(g, bsims, brows, temperature)
    base_s = time.perf_counter() - t
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(rows[:nb], brows, strict=True)])
    same = haversine_km(g.lat[ours_at[:nb]], g.lon[ours_at[:nb]], g.lat[base_at], g.lon[base_at])
    return {
        "n": n,
        "index": type(index).__name__,
        "nlist": getattr(index, "nlist", None),
        "nprobe": getattr(index, "nprobe", None),
        "build_s": build_s,
        "queries": queries,
        "ours_qps": queries / ours_s,
        "baseline_queries": nb,
        "baseline_qps": nb / base_s,
        "recall_at_k": float(recall),
        "same_place": float(np.mean(same < 1e-6)),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


# ---- the k / temperature sweep on a demo run -------------------------------------------------


def _demo_arrays(run: str):
    """(ids, embeddings, split, lat, lon, country, city) of a demo run's scored views."""
    import pyarrow.compute as pc

    from georay.data.manifest import read_manifest
    from georay.data.tables import read_table

    emb = read_table(f"{run}/curate/embeddings")
    truth = read_manifest(f"{run}/world/manifest.parquet")
    pos = pc.index_in(emb["image_id"], value_set=truth["image_id"]).to_numpy(zero_copy_only=False)
    t = truth.take(pos.astype(np.int64))
    vectors = emb["embedding"].combine_chunks()
    x = vectors.values.to_numpy().reshape(-1, vectors.type.list_size)
    col = lambda name: t[name].to_numpy(zero_copy_only=False)  # noqa: E731
    return x, col("split"), col("lat"), col("lon"), col("country"), col("city")


def _scores(g, truth_idx, at, lat, lon, country, city) -> dict:
    d = haversine_km(lat[truth_idx], lon[truth_idx], g.lat[at], g.lon[at])
    return {
        "country": float(np.mean(g.country[at] == country[truth_idx])),
        "city": float(np.mean(g.city[at] == city[truth_idx])),
        "acc_25km": float(np.mean(d < 25)),
        "median_km": float(np.median(d)),
        "geoscore": float(np.mean(5000 * np.exp(-d / 1492.7))),
    }


def choose(grid: dict, n: int) -> tuple[int, float]:
    """The setting kept: among those whose country accuracy is within one standard error of
    the best (differences smaller than that are noise at n queries), the lowest median km."""
    top = max(v["country"] for v in grid.values())
    se = np.sqrt(top * (1 - top) / n)
    near = [kt for kt, v in grid.items() if v["country"] >= top - se]
    return min(near, key=lambda kt: (grid[kt]["median_km"], -grid[kt]["country"]))


def sweep(run: str, ks=(1, 3, 5, 10, 20, 50), temperatures=(0.0, 0.01, 0.02, 0.05, 0.1)) -> dict:
    """Leave-one-out on the train split for every (k, temperature); the setting
    :func:`choose` keeps, scored on the test split."""
    x, split, lat, lon, country, city = _demo_arrays(run)
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    ids = np.arange(len(x)).astype(str).astype(object)
    g = Gallery(build_index(normalise(x[train]), "flat"), ids[train], lat[train], lon[train],
                country[train].astype(object), city[train].astype(object))  # fmt: skip
    grid = {}
    for k in ks:
        sims, rows = g.search(x[train], k, exclude=ids[train])
        for temp in temperatures:
            at = place_of(g, sims, rows, temp)
            grid[(k, temp)] = _scores(g, train, at, lat, lon, country, city)
    best = choose(grid, len(train))
    sims, rows = g.search(x[test], best[0])
    held_out = _scores(g, test, place_of(g, sims, rows, best[1]), lat, lon, country, city)
    return {"train": len(train), "test": len(test), "grid": grid, "best": best,
            "held_out": held_out, "countries": len(set(country))}  # fmt: skip


# ---- report -----------------------------------------------------------------------------------


def speed_text(results: list[dict], args, conditions: Conditions) -> str:
    lines = [
        conditions.line(),
        "",
        f"Search + medoid of k={args.k} neighbours (temperature {args.temperature:g}) over "
        f"synthetic {DIM}-d unit vectors around {PLACES:,} places, queries in batches of 64 as "
        "the actor gets them. Baseline: brute-force numpy (chunked matrix product + "
        "argpartition, then the same medoid) on the first queries, in the same run. Recall@k "
        "and 'same place' compare georay's neighbours and answers with the exact ones.", "",
        "| gallery | georay index | build s | georay queries/s | numpy queries/s | speed-up "
        "| recall@k | same place | peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in results:
        index = r["index"] + (f" (nlist {r['nlist']}, nprobe {r['nprobe']})" if r["nlist"] else "")
        lines.append(
            f"| {r['n']:,} | {index} | {r['build_s']:.1f} | {r['ours_qps']:,.0f} "
            f"({r['queries']:,} q) | {r['baseline_qps']:,.0f} ({r['baseline_queries']:,} q) | "
            f"{r['ours_qps'] / r['baseline_qps']:.1f}x | {r['recall_at_k']:.3f} | "
            f"{r['same_place']:.3f} | {r['peak_rss_gib']:.2f} |"
        )
    lines += ["", "Peak RSS: the benchmark process's maximum so far (ru_maxrss), which at 1M holds "
              "the gallery, the IVF lists' copy of it and the numpy baseline's score chunks."]  # fmt: skip
    return "\n".join(lines)


def demo_text(s: dict, run: str, conditions: Conditions) -> str:
    """The k / temperature sweep and the demo report's methods side by side."""
    import json
    from pathlib import Path

    from georay.evaluate.report import methods_table

    ks = sorted({k for k, _ in s["grid"]})
    temps = sorted({t for _, t in s["grid"]})
    lines = [
        "### The demo world", "",
        f"{conditions.line()} RUN = `{run}`, a `georay demo --output RUN` run.", "",
        f"k and weighting: leave-one-out on the {s['train']:,} train views of the demo world "
        f"({s['countries']} countries, chance country accuracy {1 / s['countries']:.3f}; "
        "curate's embeddings, tiny encoder): each train view queries the other train views "
        "(its own embedding excluded), answer = weighted geodesic medoid of its k neighbours. "
        "Country accuracy / median km (temperature 0 = uniform weights):", "",
        "| k | " + " | ".join(f"t={t:g}" for t in temps) + " |",
        "|---|" + "---|" * len(temps),
    ]  # fmt: skip
    for k in ks:
        cells = [f"{s['grid'][(k, t)]['country']:.3f} / {s['grid'][(k, t)]['median_km']:.1f}"
                 for t in temps]  # fmt: skip
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    h = s["held_out"]
    lines += [
        "",
        "Kept (within one standard error of the best country accuracy on train, the lowest "
        f"median km): k={s['best'][0]}, temperature {s['best'][1]:g}. On the {s['test']:,} "
        f"held-out test views: country accuracy {h['country']:.3f}, city {h['city']:.3f}, "
        f"within 25 km {h['acc_25km']:.3f}, median {h['median_km']:.1f} km, GeoScore "
        f"{h['geoscore']:.0f}.",
    ]
    default = s["grid"].get((DEFAULT_K, DEFAULT_T))
    if default and s["best"] != (DEFAULT_K, DEFAULT_T):
        lines[-1] += (
            f" The baseline's defaults (k={DEFAULT_K}, temperature {DEFAULT_T:g}) score "
            f"{default['country']:.3f} / {default['median_km']:.1f} km on train here."
        )
    metrics = Path(run, "report", "metrics.json")
    if metrics.exists():
        m = json.loads(metrics.read_text())
        demo = json.loads(Path(run, "demo.json").read_text())
        t = json.loads(Path(run, "summary.json").read_text())["timings_s"]
        lines += [
            "",
            f"`georay demo` (n={demo['n']}, {demo['countries']} countries, seed {demo['seed']}): "
            "the trained tiny VLM, CLIP zero-shot with the tiny random-init encoder (its text "
            "tower is untrained, so near chance is what it should score) and kNN over the train "
            "views, on the same held-out views (report/metrics.json of the run):", "",
            methods_table(m), "",
            f"Demo step times from its summary.json: predict {t['predict']:.1f} s, "
            f"baseline_zeroshot {t['baseline_zeroshot']:.1f} s, baseline_knn "
            f"{t['baseline_knn']:.1f} s, evaluate {t['evaluate']:.1f} s; whole demo "
            f"{sum(t.values()):.0f} s.",
        ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="gallery sizes ('' = none)")
    parser.add_argument("--queries", type=int, default=2000, help="queries per size (georay)")
    parser.add_argument("--baseline-queries", type=int, default=256, help="queries (numpy)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--demo-run", default="", help="a `georay demo` run folder to sweep on")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit BENCHMARKS")
    args = parser.parse_args(argv)
    conditions = Conditions()
    results = []
    for n in (int(s) for s in args.sizes.split(",") if s):
        results.append(measure(n, args.queries, args.baseline_queries, args.k, args.temperature))
        print(results[-1], flush=True)
    sweep_result = sweep(args.demo_run) if args.demo_run else None
    if sweep_result:
        print({k: v for k, v in sweep_result.items() if k != "grid"}, flush=True)
    texts = {}
    if results:
        texts["speed"] = speed_text(results, args, conditions)
    if sweep_result:
        texts["demo"] = demo_text(sweep_result, args.demo_run, conditions)
    for part, text in texts.items():
        print(text)
        if not args.no_write:
            write_part(AREA, ("speed", "demo"), part, text)


if __name__ == "__main__":
    main()
