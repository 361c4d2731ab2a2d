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
from georay.evaluate.confidence import (
    CONFIDENCE_CONVENTIONS,
    confidence_metrics,
    has_confidence,
    without_abstained,
)
from georay.evaluate.config import EvaluateConfig
from georay.evaluate.inputs import PREDICTION_COLUMNS, read_columns, read_truth
from georay.evaluate.score import NO_CELL, Scored, group_stats, prepare_truth, score
from georay.geo.gazetteer import get_gazetteer
from georay.geo.metrics import CONVENTIONS, THRESHOLDS_KM, distance_metrics, level_metrics
from georay.geo.places import CITY_RADIUS_KM
from georay.protocol.calibration import Calibration, calibration_uri, load_calibration

log = logging.getLogger(__name__)

EVALUATE_CONVENTIONS = {
    "truth_layout": "a truth table is read in the layout its columns identify (georay manifest, "
    "OSV-5M, Im2GPS3k / MP-16, YFCC4k / YFCC26k; inputs.truth_layout says which and from which "
    "columns); benchmark ids lose their image suffix (1234.jpg -> 1234), the id a folder of the "
    "same images gets; benchmark countries given as names or codes become ISO alpha-2",
    "methods": "several prediction sets are scored on the same truth rows (deduplicated and "
    "completed once); the top-level figures are those of the first set (primary_method)",
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


def rows_table(scored: Scored, method: str) -> pa.Table:
    """One row per truth row: what was compared and whether it was right."""
    return pa.table(
        {
            "method": pa.array([method] * len(scored), pa.string()),
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


# Per-group figures that get one column per method in a side-by-side report.
METHOD_STATS = (
    "answered",
    "country_accuracy",
    "city_accuracy",
    "median_km",
    "geoscore",
    "acc_25km",
)


def side_by_side(tables: dict[str, pa.Table], keys: list[str]) -> pa.Table:
    """One group table from several methods' (same groups, same order: they are grouped on the
    same truth rows): the ``keys`` and ``n`` once, then ``<method>.<figure>`` per method."""
    first = next(iter(tables.values()))
    out = {k: first[k] for k in [*keys, "n"]}
    for method, table in tables.items():
        if table.select(keys).to_pylist() != first.select(keys).to_pylist():
            raise RuntimeError(f"group tables of {method} are not aligned")  # a bug, not input
        out.update({f"{method}.{stat}": table[stat] for stat in METHOD_STATS})
    return pa.table(out)


def _group_tables(
    scored: dict[str, Scored], resolutions: list[int]
) -> tuple[dict[str, dict[str, pa.Table]], dict[str, pa.Table]]:
    """countries and cells_res{R} tables per method, and as written: one method's as they are,
    several side by side."""
    per_method = {m: {"countries": country_table(s)} for m, s in scored.items()}
    for m, s in scored.items():
        per_method[m].update({f"cells_res{r}": cell_table(s, r) for r in resolutions})
    if len(scored) == 1:
        return per_method, dict(next(iter(per_method.values())))
    names = ["countries", *(f"cells_res{r}" for r in resolutions)]
    keys = {"countries": ["country", "country_name"]}
    return per_method, {
        name: side_by_side({m: t[name] for m, t in per_method.items()},
                           keys.get(name, ["cell", "lat", "lon", "country"]))
        for name in names
    }  # fmt: skip


def _calibrations(cfg: EvaluateConfig) -> dict[str, Calibration]:
    """The ``--calibration`` files, loaded (UserError where one is missing or not one)."""
    out = {}
    for method, path in cfg.calibrations().items():
        try:
            found = load_calibration(path)
        except ValueError as err:
            raise UserError(f"--calibration: {err}") from None
        if found is None:
            raise UserError(f"--calibration: no {calibration_uri(path)}")
        if found.get(method) is None:
            raise UserError(f"--calibration: {path} calibrates {', '.join(found.methods)}, "
                            f"not {method!r}: name one of them for it")  # fmt: skip
        out[method] = found
    return out


def evaluate(cfg: EvaluateConfig) -> dict:
    """Score one or several prediction sets against truth and write the report folder.

    Writes ``metrics.json``, ``countries.parquet``, ``cells_res{R}.parquet`` for each
    resolution, ``rows.parquet`` (per truth row and method), ``unmatched_predictions.parquet``,
    ``report.md`` and the PNG figures into ``cfg.output``. With several prediction sets every
    method is scored on the same truth rows; the group tables get one column per method and
    figure (``knn.country_accuracy``), and a figure compares the methods.

    Returns
    -------
    dict
        The metrics.json contents: the first method's figures at the top level (as with one
        set), and every method's under ``methods``.
    """
    start = time.perf_counter()
    gaz = get_gazetteer()
    truth, truth_rows, truth_layout = read_truth(cfg.truth, mapping=cfg.truth_columns,
                                                  split=cfg.split)  # fmt: skip
    prepared = prepare_truth(truth, gaz, cfg.h3_resolution)
    scored: dict[str, Scored] = {}
    orphans, methods = [], {}
    calibrations = _calibrations(cfg)
    confidence_curves: dict[str, dict] = {}
    for method, path in cfg.methods().items():
        predictions, layout = read_columns(path, PREDICTION_COLUMNS, flag="--predictions")
        as_answered, unmatched = score(prepared, predictions, gaz)
        scored[method] = as_answered
        if cfg.abstained == "unanswered":
            scored[method] = without_abstained(as_answered)
        orphans.append(unmatched.add_column(0, "method", pa.array([method] * len(unmatched),
                                                                  pa.string())))  # fmt: skip
        methods[method] = {
            **headline(scored[method]),
            "inputs": {"predictions": path, "prediction_rows": len(predictions),
                       "prediction_layout": layout.record(), **scored[method].counts},
        }  # fmt: skip
        if has_confidence(as_answered):
            methods[method]["confidence"], confidence_curves[method] = confidence_metrics(
                as_answered, gaz, calibration=calibrations.get(method), method=method,
                counted_as=cfg.abstained,
            )  # fmt: skip
    read_s = time.perf_counter() - start
    primary = next(iter(methods))
    metrics = {k: v for k, v in methods[primary].items() if k != "inputs"}
    metrics["inputs"] = {
        "truth": cfg.truth,
        "truth_layout": truth_layout,
        "predictions": methods[primary]["inputs"]["predictions"],
        "truth_rows": truth_rows,
        "truth_rows_in_split": len(truth),
        "prediction_rows": methods[primary]["inputs"]["prediction_rows"],
        **scored[primary].counts,
    }
    metrics["methods"] = methods
    metrics["primary_method"] = primary
    per_method, tables = _group_tables(scored, cfg.h3_resolution)
    # permissive: a method whose column is all null in these rows has it typed null
    rows = [rows_table(s, m) for m, s in scored.items()]
    tables["rows"] = pa.concat_tables(rows, promote_options="permissive")
    tables["unmatched_predictions"] = pa.concat_tables(orphans, promote_options="permissive")
    for name, table in tables.items():
        _write_parquet(table, join_uri(cfg.output, f"{name}.parquet"))
    metrics["tables"] = {name: f"{name}.parquet" for name in tables}
    figures: dict[str, str] = {}
    if cfg.plots:
        from georay.evaluate.plots import draw_all

        figures = draw_all(scored, per_method[primary], cfg, confidence_curves)
    metrics["figures"] = figures
    metrics["conventions"] = {
        **CONVENTIONS,
        **EVALUATE_CONVENTIONS,
        **(CONFIDENCE_CONVENTIONS if confidence_curves else {}),
        "h3_resolutions": cfg.h3_resolution,
    }
    metrics["timing_s"] = {"read": read_s, "total": time.perf_counter() - start}
    metrics["config"] = asdict(cfg)
    metrics = _json_ready(metrics)
    write_bytes(join_uri(cfg.output, "metrics.json"), json.dumps(metrics, indent=2).encode())
    from georay.evaluate.report import render_report

    write_bytes(join_uri(cfg.output, "report.md"), render_report(metrics, tables).encode())
    for method, m in metrics["methods"].items():
        log.info(
            "%s: %d truth rows: country F1 %.4f, city F1 %.4f, median %s km",
            method, m["n"], m["country"]["f1"], m["city"]["f1"], m["median_km"],
        )  # fmt: skip
    log.info("evaluated in %.1f s", metrics["timing_s"]["total"])
    return metrics
