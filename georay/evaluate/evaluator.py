"""``evaluate(cfg)``: predictions + truth -> metrics.json, Parquet tables, plots, report.md."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict

import h3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from georay.data.storage import filesystem_for, join_uri, write_bytes
from georay.errors import UserError
from georay.evaluate.config import EvaluateConfig
from georay.evaluate.inputs import PREDICTION_COLUMNS, TRUTH_COLUMNS, read_columns
from georay.evaluate.score import NO_CELL, Scored, group_stats, score
from georay.geo.gazetteer import get_gazetteer
from georay.geo.metrics import CONVENTIONS, THRESHOLDS_KM, distance_metrics, level_metrics
from georay.geo.places import CITY_RADIUS_KM

log = logging.getLogger(__name__)

EVALUATE_CONVENTIONS = {
    "join": "predictions joined to truth on image_id; a truth row without a prediction is "
    "unanswered (a miss at every level and in every km figure); a prediction without a truth row "
    "is counted in unmatched_predictions and written to unmatched_predictions.parquet; "
    "duplicate image_ids keep their first row (counted)",
    "prediction_rows": "a prediction counts as answered when its `answered` flag is not false and "
    "its `status` is not other than 'ok' (absent columns impose nothing)",
    "truth_completion": "a truth row without a country takes it from its coordinates "
    "(country_of_coordinate); without a city, the most populous GeoNames place within "
    f"{CITY_RADIUS_KM:g} km of it (not the nearest place: GeoNames lists city districts such as "
    "'Zürich (Kreis 1)' as places), left unknown if that place is in another country; a truth row without coordinates is placed through its names like a "
    "prediction (name_resolution); rows with no location at all are left out of the km figures",
    "km_denominator": "acc_km, geoscore: all truth rows that have a location (given or resolved)",
    "per_group_tables": "country_accuracy = correct / rows of the group (unanswered rows count "
    "as wrong); median_km over answered rows; geoscore mean over all rows of the group",
}


def headline(scored: Scored) -> dict:
    """The metrics.json figures (paper P/R/F1 per level, km accuracy, GeoScore, median/mean)."""
    keep = ("n", "answered", "correct", "precision", "recall", "f1")
    country = level_metrics(scored.country_correct, scored.country_answered, scored.country_known)
    city = level_metrics(scored.city_correct, scored.city_answered, scored.city_known)
    dist = distance_metrics(scored.distance_km[scored.located], THRESHOLDS_KM)
    return {
        "n": len(scored),
        "country": {k: country[k] for k in keep},
        "city": {k: city[k] for k in keep},
        "acc_km": {f"{r:g}": dist[f"acc_{r:g}km"] for r in THRESHOLDS_KM},
        "geoscore": dist["geoscore"],
        "median_km": dist["median_km"],
        "mean_km": dist["mean_km"],
        "km_rows": dist["n"],
        "located_predictions": dist["located"],
    }


def country_table(scored: Scored) -> pa.Table:
    """Per true country: n, answered, accuracies, median km, GeoScore."""
    gaz = get_gazetteer()
    # Group on dictionary indices: integers sort far faster than a million strings.
    enc = pa.array(scored.true_country, pa.string()).dictionary_encode()
    keys = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)
    stats = group_stats(keys, scored, keys >= 0)
    codes = np.asarray(enc.dictionary.to_pylist(), dtype=object)[stats.pop("key")]
    names = [gaz.country_name(c) for c in codes]
    return pa.table({"country": pa.array(codes, pa.string()), "country_name": names, **stats})


def _majority(groups: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> dict:
    """Most common label per group (ties: a real label before None, then sort order)."""
    if not mask.any():
        return {}
    enc = pa.array(labels[mask], pa.string()).dictionary_encode()
    width = len(enc.dictionary) + 1  # label codes 0..k-1, k for None
    lab = pc.fill_null(enc.indices, width - 1).to_numpy(zero_copy_only=False).astype(np.int64)
    g_uniq, g = np.unique(groups[mask], return_inverse=True)
    pairs, counts = np.unique(g * width + lab, return_counts=True)
    pg, pl = pairs // width, pairs % width
    order = np.lexsort((-counts, pg))  # stable: equal counts keep the smaller label code
    first = order[np.r_[True, pg[order][1:] != pg[order][:-1]]]
    names = np.append(np.asarray(enc.dictionary.to_pylist(), dtype=object), None)
    return dict(zip(g_uniq[pg[first]].tolist(), names[pl[first]], strict=True))


def cell_table(scored: Scored, res: int) -> pa.Table:
    """Per H3 cell (of the true location) at ``res``: centre, main true country, n,
    accuracies, median km."""
    cells = scored.cells[res]
    stats = group_stats(cells, scored, cells != NO_CELL)
    keys = stats.pop("key")
    main = _majority(cells, scored.true_country, cells != NO_CELL)
    ids = [h3.int_to_str(int(c)) for c in keys]
    centres = np.array([h3.cell_to_latlng(c) for c in ids]).reshape(-1, 2)
    country = pa.array([main.get(int(k)) for k in keys], pa.string())
    return pa.table(
        {"cell": ids, "lat": centres[:, 0], "lon": centres[:, 1], "country": country, **stats}
    )


def rows_table(scored: Scored) -> pa.Table:
    """One row per truth row: what was compared and whether it was right."""
    return pa.table(
        {
            "image_id": scored.image_id,
            "true_country": scored.true_country,
            "pred_country": scored.pred_country,
            "country_correct": scored.country_correct,
            "city_correct": scored.city_correct,
            "answered": scored.country_answered,
            "true_lat": scored.true_lat,
            "true_lon": scored.true_lon,
            "pred_lat": scored.pred_lat,
            "pred_lon": scored.pred_lon,
            "distance_km": scored.distance_km,
        }
    )


def _write_parquet(table: pa.Table, uri: str) -> None:
    fs, path = filesystem_for(uri)
    if isinstance(fs, pafs.LocalFileSystem):  # pyarrow does not create local folders
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, path, filesystem=fs, compression="zstd")


def _json_ready(value):
    """NaN -> None and numpy scalars -> Python, so metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def evaluate(cfg: EvaluateConfig) -> dict:
    """Score predictions against truth and write the report folder.

    Writes ``metrics.json``, ``countries.parquet``, ``cells_res{R}.parquet`` for each
    resolution, ``rows.parquet`` (per truth row), ``unmatched_predictions.parquet``,
    ``report.md`` and the PNG figures into ``cfg.output``.

    Returns
    -------
    dict
        The metrics.json contents.
    """
    start = time.perf_counter()
    truth = read_columns(cfg.truth, TRUTH_COLUMNS)
    truth_rows = len(truth)
    if cfg.split:
        if truth["split"].null_count == len(truth):
            raise UserError(f"--split {cfg.split!r} given but {cfg.truth} has no 'split' column")
        truth = truth.filter(pc.fill_null(pc.equal(truth["split"], cfg.split), False))
    predictions = read_columns(cfg.predictions, PREDICTION_COLUMNS)
    read_s = time.perf_counter() - start
    scored, orphans = score(truth, predictions, get_gazetteer(), cfg.h3_resolution)
    metrics = headline(scored)
    metrics["inputs"] = {
        "truth": cfg.truth,
        "predictions": cfg.predictions,
        "truth_rows": truth_rows,
        "truth_rows_in_split": len(truth),
        "prediction_rows": len(predictions),
        **scored.counts,
    }
    tables = {"countries": country_table(scored)}
    tables.update({f"cells_res{r}": cell_table(scored, r) for r in cfg.h3_resolution})
    tables["rows"] = rows_table(scored)
    tables["unmatched_predictions"] = orphans
    for name, table in tables.items():
        _write_parquet(table, join_uri(cfg.output, f"{name}.parquet"))
    metrics["tables"] = {name: f"{name}.parquet" for name in tables}
    figures: dict[str, str] = {}
    if cfg.plots:
        from georay.evaluate.plots import draw_all

        figures = draw_all(scored, tables, cfg)
    metrics["figures"] = figures
    metrics["conventions"] = {
        **CONVENTIONS,
        **EVALUATE_CONVENTIONS,
        "h3_resolutions": cfg.h3_resolution,
    }
    metrics["timing_s"] = {"read": read_s, "total": time.perf_counter() - start}
    metrics["config"] = asdict(cfg)
    metrics = _json_ready(metrics)
    write_bytes(join_uri(cfg.output, "metrics.json"), json.dumps(metrics, indent=2).encode())
    from georay.evaluate.report import render_report

    write_bytes(join_uri(cfg.output, "report.md"), render_report(metrics, tables).encode())
    log.info(
        "evaluated %d truth rows in %.1f s: country F1 %.4f, city F1 %.4f, median %s km",
        metrics["n"], metrics["timing_s"]["total"], metrics["country"]["f1"],
        metrics["city"]["f1"], metrics["median_km"],
    )  # fmt: skip
    return metrics
