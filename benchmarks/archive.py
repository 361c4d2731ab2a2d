"""Geotagging a partly geotagged archive (issue 21): the VLM alone, kNN alone and the fused method.

Run: ``.venv/bin/python -m benchmarks.archive --run RUN`` on a finished ``georay demo`` run (its
trained VLM, curate head and embeddings, held-out views). The archive is the demo's held-out
split; a share of its photos (10 / 30 / 50%) gets EXIF GPS (:func:`georay.synth.formats.
with_exif_gps`: same pixels), and those photos are the gallery of the rest:

* **speed** (30% tagged, the same run): ``georay predict`` with the VLM alone on every photo, and
  ``georay predict --gallery-from-exif`` (EXIF photos placed by their GPS, the rest fused);
  images/s of the photos each job asked the VLM about;
* **accuracy** (10 / 30 / 50%): on the untagged photos, the VLM's rows of that run; kNN alone
  (the baseline's weighted medoid over the tagged photos' curate embeddings, the same vectors
  the job computes); fused (:func:`georay.archive.fusion.fuse` on the same VLM rows and
  neighbours, as the job's actor does). Scored by ``georay evaluate`` against the manifest:
  median km, accuracy within 25 km, country F1, city F1.

Writes the ``archive`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import Conditions, write_section
from georay.archive.fusion import Fusion, Neighbours, fit_weights, fuse, vlm_candidates
from georay.demo.run import DEDUP_SIMILARITY

AREA = "archive"
SHARES = (0.1, 0.3, 0.5)
SPEED_SHARE = 0.3
K = 5  # neighbours per photo, the fused job's default
# The fused job's defaults, with the demo's same-scene cosine for its random-init encoder (the
# demo's fused step and the speed runs below use the same).
FUSION = Fusion(same_scene=DEDUP_SIMILARITY)


def tag_archive(run: Path, share: float, out: Path, draw: int = 0) -> tuple[str, set[str]]:
    """The held-out manifest with ``share`` of its readable views, drawn by ``draw``, given EXIF
    GPS (copies under ``out``); returns (manifest path, tagged ids)."""
    from georay.data.manifest import read_manifest, write_manifest
    from georay.synth.formats import with_exif_gps

    table = read_manifest(str(run / "predict-input.parquet"))
    rows = table.to_pylist()
    views = [i for i, r in enumerate(rows) if r["view"] != "corrupt"]
    rng = np.random.default_rng([4, round(share * 100), draw])
    tagged = set(rng.permutation(views)[: round(share * len(views))].tolist())
    (out / "images").mkdir(parents=True, exist_ok=True)
    uris, ids = [], set()
    for i, r in enumerate(rows):
        data = Path(r["uri"]).read_bytes()
        if i in tagged:
            data = with_exif_gps(data, r["lat"], r["lon"])
            ids.add(r["image_id"])
        path = out / "images" / Path(r["uri"]).name
        path.write_bytes(data)
        uris.append(str(path))
    table = table.set_column(table.schema.get_field_index("uri"), "uri", pa.array(uris))
    write_manifest(table, str(out / "manifest.parquet"))
    return str(out / "manifest.parquet"), ids


def _predict(argv: list[str]) -> dict:
    import contextlib
    import io

    from georay.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0, argv
    return json.loads(buf.getvalue())


def speed(run: Path, work: Path, repeat: int) -> dict[str, list[dict]]:
    """Three jobs on the 30%-tagged archive, interleaved ``repeat`` times (fresh outputs each
    time): the VLM alone; fused with a ready gallery (the demo's train views, as its fused
    step), every photo asked; fused with ``--gallery-from-exif``, the EXIF pass included. Each
    job's summary with its ``wall_s``."""
    manifest, _ = tag_archive(run, SPEED_SHARE, work / "speed-archive")
    common = ["--input", manifest, "--model", str(run / "train" / "location")]
    fused = ["--head", str(run / "curate" / "head"),
             "--same-scene-similarity", str(DEDUP_SIMILARITY)]  # fmt: skip
    jobs = {
        "vlm": [],
        "gallery": ["--gallery", str(run / "curate"), "--gallery-split", "train", *fused],
        "exif": ["--gallery-from-exif", *fused],
    }
    out: dict[str, list[dict]] = {name: [] for name in jobs}
    for i in range(repeat):
        for name, extra in jobs.items():
            start = time.perf_counter()
            out[name].append(_predict(["predict", *common, "--output", str(work / f"{name}-{i}"),
                                       *extra]))  # fmt: skip
            out[name][-1]["wall_s"] = time.perf_counter() - start
    return out


@functools.lru_cache(maxsize=1)  # read once: every share and draw uses the same run's vectors
def _embeddings(run: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(run / "curate" / "embeddings")
    emb = table["embedding"].combine_chunks()
    x = emb.values.to_numpy(zero_copy_only=False).reshape(-1, emb.type.list_size)
    return dict(zip(table["image_id"].to_pylist(), x, strict=True))


def offline_methods(run: Path, vlm_rows: dict, tagged: set[str], fusion: Fusion,
                    voters: int = 20) -> dict[str, list[dict]]:  # fmt: skip
    """Rows of kNN alone and fused for the untagged photos, the gallery = the tagged ones (the
    fused job's search: ``voters`` neighbours, the place from the first ``fusion.neighbours``)."""
    from georay.archive.job import gallery_of_points
    from georay.baseline.index import locate
    from georay.geo.gazetteer import get_gazetteer

    emb = _embeddings(run)
    truth = {r["image_id"]: r for r in pq.read_table(run / "predict-input.parquet").to_pylist()}
    ids = sorted(tagged & set(emb))
    x = np.stack([emb[i] for i in ids])
    points = pa.table({"image_id": ids, "lat": [truth[i]["lat"] for i in ids],
                       "lon": [truth[i]["lon"] for i in ids],
                       "embedding": pa.FixedSizeListArray.from_arrays(
                           x.reshape(-1).astype(np.float32), x.shape[1])})  # fmt: skip
    g = gallery_of_points(points, "flat", 32)
    gaz = get_gazetteer()
    queries = [i for i in vlm_rows if i not in tagged and i in emb]
    k, temperature = fusion.neighbours, fusion.temperature
    sims, rows = g.search(np.stack([emb[i] for i in queries]), max(k, voters))
    out: dict[str, list[dict]] = {"knn": [], "fused": [], "fused_fitted": []}
    examples: dict[str, tuple[list[dict], Neighbours]] = {}
    for q, image_id in enumerate(queries):
        valid = rows[q] >= 0
        r = rows[q][valid]
        best = int(locate(g.lat[r][None], g.lon[r][None], sims[q][valid][None],
                          np.arange(len(r))[None] < k, temperature)[0])  # fmt: skip
        j = r[best]
        out["knn"].append({"image_id": image_id, "lat": float(g.lat[j]), "lon": float(g.lon[j]),
                           "country": g.country[j], "city": g.city[j], "status": "ok",
                           "answered": True})  # fmt: skip
        nb = Neighbours(g.image_id[r], sims[q][valid], g.lat[r], g.lon[r], g.country[r], g.city[r])
        examples[image_id] = (vlm_candidates(vlm_rows[image_id]), nb)

    def row(image_id: str, w: Fusion) -> dict:
        f = fuse(*examples[image_id], w)
        return {"image_id": image_id, "lat": f.lat, "lon": f.lon, "city": f.city,
                "country": f.country_code and gaz.country_name(f.country_code),
                "status": "ok", "answered": f.lat is not None}  # fmt: skip

    out["fused"] = [row(i, fusion) for i in examples]
    # Weights fitted on labelled rows, 2-fold: each half scored with the other half's fit.
    halves = [[i for j, i in enumerate(examples) if j % 2 == h] for h in (0, 1)]
    fitted = []
    for h in (0, 1):
        train = halves[1 - h]
        w, _ = fit_weights([examples[i] for i in train], [truth[i]["country"] for i in train],
                           fusion)  # fmt: skip
        fitted.append(f"{w.vlm:g}/{w.knn:g}")
        out["fused_fitted"] += [row(i, w) for i in halves[h]]
    out["fitted_weights"] = fitted  # type: ignore[assignment]
    return out


def score(rows: list[dict], truth: str, out: Path) -> dict:
    """``georay evaluate`` of ``rows`` (the figures the issue asks for)."""
    from georay.evaluate import EvaluateConfig, evaluate
    from georay.protocol.predictions import PREDICTIONS_SCHEMA

    out.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in r.items() if k in PREDICTIONS_SCHEMA.names} for r in rows]
    table = pa.Table.from_pylist(rows, schema=PREDICTIONS_SCHEMA)
    pq.write_table(table, out / "predictions.parquet")
    metrics = evaluate(EvaluateConfig(predictions=[str(out / "predictions.parquet")],
                                      truth=truth, output=str(out / "report")))  # fmt: skip
    return metrics


def headline(ms: list[dict]) -> str:
    """The four figures, each the mean over draws."""

    def mean(get) -> float:
        return float(np.mean([get(m) for m in ms]))

    return (f"{mean(lambda m: m['median_km']):.2f} | {mean(lambda m: m['median_km_all']):.2f} | "
            f"{mean(lambda m: m['acc_km']['25']):.3f} | "
            f"{mean(lambda m: m['country']['f1']):.3f} | {mean(lambda m: m['city']['f1']):.3f}")  # fmt: skip


def rates(jobs: list[dict], asked) -> list[float]:
    """Images/s of the photos each job asked the VLM about."""
    return [asked(j) / j["wall_s"] for j in jobs]


def prompt_design(run: Path, work: Path, vlm_rows: dict, seed: int, draws: int) -> dict:
    """The second design's rows per (share, draw) (:mod:`benchmarks.archive_prompt`): stage 2
    trained once with the neighbours' line, then asked about each draw's untagged photos."""
    from benchmarks import archive_prompt as ap

    emb = _embeddings(run)
    truth = {
        r["image_id"]: r for r in pq.read_table(run / "world" / "manifest.parquet").to_pylist()
    }
    archive = [r for r in pq.read_table(run / "predict-input.parquet").to_pylist()
               if r["image_id"] in vlm_rows]  # fmt: skip
    sizes = [round(share * len(archive)) for share in SHARES]
    examples = ap.training_set(run, emb, truth, sizes, K, seed)
    info = ap.train(run, examples, work / "prompt", seed)
    question = examples[0].question.split("\n")[0]
    out: dict = {"train": info}
    for share in SHARES:
        for draw in range(draws):
            _, tagged = tag_archive(run, share, _archive_dir(work, share, draw), draw)
            ids = sorted(tagged & set(emb))
            gallery = ap.Points(ids, np.stack([emb[i] for i in ids]),
                                np.array([truth[i]["lat"] for i in ids], float),
                                np.array([truth[i]["lon"] for i in ids], float))  # fmt: skip
            views = [r for r in archive if r["image_id"] not in tagged and r["image_id"] in emb]
            out[share, draw] = ap.answer(work / "prompt" / "model", question, views, gallery,
                                         emb, K)  # fmt: skip
    return out


def _archive_dir(work: Path, share: float, draw: int) -> Path:
    return work / f"archive-{round(share * 100)}-{draw}"


def accuracy(run: Path, work: Path, vlm_rows: dict, prompted: dict, draws: int) -> dict:
    """Each share's and draw's metrics per method, on the untagged photos (the tagged ones are
    the gallery, placed by EXIF): ``{share: {method: [metrics per draw]}}``, and the fitted
    fusion weights per share and draw under ``"fitted"``."""
    truth = pq.read_table(run / "predict-input.parquet")
    out: dict = {"fitted": {}}
    for share in SHARES:
        out[share] = {}
        for draw in range(draws):
            _, tagged = tag_archive(run, share, _archive_dir(work, share, draw), draw)
            methods = offline_methods(run, vlm_rows, tagged, FUSION)
            out["fitted"][share, draw] = methods.pop("fitted_weights")
            untagged = [r for i, r in vlm_rows.items() if i not in tagged]
            methods = {"vlm": untagged, **methods}
            if (share, draw) in prompted:
                methods["prompt"] = prompted[share, draw]
            name = f"{round(share * 100)}-{draw}"
            keep = pa.array([i not in tagged for i in truth["image_id"].to_pylist()])
            pq.write_table(truth.filter(keep), work / f"truth-{name}.parquet")
            photos = [r["image_id"] for r in methods["fused"]]  # the readable untagged ones
            for method, rows in methods.items():
                m = score(
                    rows, str(work / f"truth-{name}.parquet"), work / f"score-{name}-{method}"
                )
                m["median_km_all"] = median_all(rows, photos, truth)
                out[share].setdefault(method, []).append(m | {"rows": len(rows)})
    return out


def median_all(rows: list[dict], photos: list[str], truth: pa.Table) -> float:
    """Median km over ``photos``, one not answered in ``rows`` counted infinitely far: a
    method that answers more photos is not charged for the harder ones it took on."""
    from georay.geo.distance import haversine_km

    where = {r["image_id"]: (r["lat"], r["lon"]) for r in rows if r.get("lat") is not None}
    true = {r["image_id"]: (r["lat"], r["lon"]) for r in truth.to_pylist()}
    km = [float(haversine_km(*where[i], *true[i])) if i in where else np.inf for i in photos]
    return float(np.median(km))


def verdicts(by_method: dict[str, list[dict]]) -> str:
    """In how many draws fused beats the better of VLM and kNN on median km and on < 25 km, and
    is not worse than the VLM on country F1 by more than 0.01 (issue 21's targets)."""
    n = len(by_method["fused"])
    f, v, k = by_method["fused"], by_method["vlm"], by_method["knn"]
    km = sum(f[d]["median_km"] < min(v[d]["median_km"], k[d]["median_km"]) for d in range(n))
    km_all = sum(f[d]["median_km_all"] < min(v[d]["median_km_all"], k[d]["median_km_all"])
                 for d in range(n))  # fmt: skip
    acc = sum(f[d]["acc_km"]["25"] > max(v[d]["acc_km"]["25"], k[d]["acc_km"]["25"])
              for d in range(n))  # fmt: skip
    f1 = sum(f[d]["country"]["f1"] >= v[d]["country"]["f1"] - 0.01 for d in range(n))
    return (f"median km {km}/{n} (over every photo: {km_all}/{n}), < 25 km {acc}/{n}, "
            f"country F1 {f1}/{n}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished `georay demo` run folder")
    parser.add_argument("--work", default="", help="scratch folder (default RUN/archive-bench)")
    parser.add_argument("--repeat", type=int, default=3, help="speed runs of each job (median)")
    parser.add_argument(
        "--draws", type=int, default=3, help="draws of the tagged photos per share (mean)"
    )
    parser.add_argument(
        "--prompt-design",
        action="store_true",
        help="also train and score the second design (neighbours in the prompt)",
    )
    args = parser.parse_args()
    run = Path(args.run).resolve()
    work = Path(args.work or run / "archive-bench")
    conditions = Conditions()
    t0 = time.perf_counter()
    jobs = speed(run, work, args.repeat)
    vlm_jobs, gallery_jobs, fused_jobs = jobs["vlm"], jobs["gallery"], jobs["exif"]
    vlm_rows = {r["image_id"]: r for r in pq.read_table(work / "vlm-0" / "predictions").to_pylist()}
    prompted = prompt_design(run, work, vlm_rows, 0, args.draws) if args.prompt_design else {}
    found = accuracy(run, work, vlm_rows, prompted, args.draws)
    fitted_weights = found.pop("fitted")
    lines = ["| tagged | method | rows | median km (answered) | median km (every photo) | "
             "acc@25 km | country F1 | city F1 |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for share in SHARES:
        for method, ms in found[share].items():
            lines.append(f"| {share:.0%} | {method} | {ms[0]['rows']} | {headline(ms)} |")
    wins = [f"{share:.0%}: {verdicts(found[share])}" for share in SHARES]
    asked_vlm, asked_fused = vlm_jobs[0]["ok"], fused_jobs[0]["ok"] - fused_jobs[0]["skipped_exif"]
    rate_vlm = rates(vlm_jobs, lambda j: j["ok"])
    rate_fused = rates(fused_jobs, lambda j: j["ok"] - j["skipped_exif"])
    ratios = [f / v for f, v in zip(rate_fused, rate_vlm, strict=True)]
    archive_ratios = [v["wall_s"] / f["wall_s"] for f, v in zip(fused_jobs, vlm_jobs, strict=True)]
    # Per photo asked, inside the model actors (no job start-up, no EXIF pass): the VLM's
    # generate vs generate + the encoder's decode and forward + the gallery search + fusion.
    ms_vlm = [actor_ms(j, "PredictActor", j["ok"]) for j in vlm_jobs]
    ms_fused = [actor_ms(j, "FusedActor", j["ok"] - j["skipped_exif"]) for j in fused_jobs]
    rate_gallery = rates(gallery_jobs, lambda j: j["ok"])
    gallery_ratios = [g / v for g, v in zip(rate_gallery, rate_vlm, strict=True)]
    ms_gallery = [actor_ms(j, "FusedActor", j["ok"]) for j in gallery_jobs]
    trained = prompted.get("train")
    body = "\n".join([
        f"## {AREA}", "",
        f"{conditions.line()} Archive: the demo run's held-out views; a share of them tagged "
        "with EXIF GPS (same pixels) is the gallery of the rest. Accuracy on the untagged views; "
        "kNN alone and fused computed from the VLM job's rows and the curate embeddings with "
        f"the job's own code (georay.archive.fusion: {FUSION}). Each figure is the mean over "
        f"{args.draws} draws of the tagged photos.", "",
        *lines, "",
        "Issue 21's targets met in how many draws (fused beats the better of VLM and kNN on "
        "median km and on < 25 km; country F1 not below the VLM's by more than 0.01): "
        + "; ".join(wins) + ".", "",
        f"Speed at {SPEED_SHARE:.0%} tagged, {args.repeat} run(s) of each job interleaved, "
        f"medians. VLM alone asked {asked_vlm} photos: {_runs(rate_vlm)} images/s, "
        f"{_runs(ms_vlm)} ms per photo in its actor. **Fused with a ready gallery** "
        f"(`--gallery`: the demo's {gallery_jobs[0]['gallery_rows']} train views) asked the same "
        f"photos: {_runs(rate_gallery)} images/s, ratio **{np.median(gallery_ratios):.2f}** "
        f"({', '.join(f'{r:.2f}' for r in gallery_ratios)}; target >= 0.8), "
        f"{_runs(ms_gallery)} ms per photo in its actor (ratio "
        f"{np.median(ms_vlm) / np.median(ms_gallery):.2f}). **Fused with --gallery-from-exif** "
        f"(the EXIF pass included) asked {asked_fused} photos and placed "
        f"{fused_jobs[0]['skipped_exif']} by EXIF: {_runs(rate_fused)} images/s asked, ratio "
        f"**{np.median(ratios):.2f}** ({', '.join(f'{r:.2f}' for r in ratios)}); archive photos "
        f"(every row out) per second, ratio {np.median(archive_ratios):.2f} "
        f"({', '.join(f'{r:.2f}' for r in archive_ratios)}); {_runs(ms_fused)} ms per photo "
        f"asked in its actor (ratio {np.median(ms_vlm) / np.median(ms_fused):.2f}).",
        "fused_fitted: w_vlm/w_knn fitted on the other half of the untagged rows (country "
        "accuracy, grid 0..4), per half: "
        + "; ".join(f"{s:.0%} draw {d}: {' and '.join(w)}"
                    for (s, d), w in fitted_weights.items()) + ".",
        *([f"prompt: the second design (benchmarks/archive_prompt.py), stage 2 trained again "
           f"with the {K} nearest gallery photos' places in the question: {trained['steps']} "
           f"steps on {trained['examples']} examples, final loss {trained['final_loss']:.3f}, "
           f"{trained['train_s']:.0f} s."] if trained else []),
        f"Total {time.perf_counter() - t0:.0f} s.",
    ])  # fmt: skip
    print(body)
    write_section(AREA, body)


def actor_ms(job: dict, actor: str, asked: int) -> float:
    """Wall ms per photo asked in the job's ``actor`` stage (its summary's stage times)."""
    return 1000 * job["stages"][f"MapBatches({actor})"]["wall_s"] / max(asked, 1)


def _runs(values: list[float]) -> str:
    return f"{np.median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})"


if __name__ == "__main__":
    main()
