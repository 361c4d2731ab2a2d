"""``calibrate(cfg)``: labelled predictions -> per-level maps -> ``calibration.json``.

Rows are joined to truth and judged right or wrong exactly as ``georay evaluate`` judges them
(:func:`georay.evaluate.score.score`), so the probability a map learns is the probability of
being counted right in the report. An abstained row counts by its answer (abstention is decided
from the calibrated confidence, so it must not feed back into the fit).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa

from georay.calibrate.config import CalibrateConfig
from georay.errors import UserError
from georay.evaluate.inputs import PREDICTION_COLUMNS, read_columns, read_truth
from georay.evaluate.score import Scored, prepare_truth, score
from georay.geo.gazetteer import get_gazetteer
from georay.protocol.calibration import (
    LEVELS,
    Calibration,
    LevelMap,
    fit_level,
    load_calibration,
    save_calibration,
)

log = logging.getLogger(__name__)
DEFAULT_METHOD = "default"


def _method_name(cfg: CalibrateConfig) -> str:
    """--method, else the predictions' single `method` value, else ``default``."""
    if cfg.method:
        return cfg.method
    table, _ = read_columns(cfg.input, {"method": pa.string()}, flag="--input")
    values = {v for v in table["method"].to_pylist() if v}
    return values.pop() if len(values) == 1 else DEFAULT_METHOD


def _fit_levels(scored: Scored, cfg: CalibrateConfig) -> tuple[dict[str, LevelMap], dict]:
    """A map per level with enough labelled rows; why the others have none."""
    maps, skipped = {}, {}
    for level in LEVELS:
        conf = getattr(scored, f"{level}_confidence")
        if conf is None:
            skipped[level] = "no confidence column"
            continue
        rows = np.isfinite(conf) & getattr(scored, f"{level}_known")
        if rows.sum() < cfg.min_rows:
            skipped[level] = f"{int(rows.sum())} labelled rows with a confidence (< {cfg.min_rows})"
            continue
        maps[level] = fit_level(conf[rows], getattr(scored, f"{level}_correct")[rows], cfg.map)
    return maps, skipped


def calibrate(cfg: CalibrateConfig) -> dict:
    """Fit the calibration of one method and write it (merged into an existing file).

    Returns
    -------
    dict
        Where it was written, the method name, per fitted level the map used and the in-sample
        ECE/Brier before and after, and the levels left out with the reason.

    Raises
    ------
    UserError
        No level could be fitted (predictions without confidences, too few labelled rows), or
        the destination holds a file that is not a georay calibration.
    """
    start = time.perf_counter()
    gaz = get_gazetteer()
    truth, _, _ = read_truth(cfg.truth, mapping=cfg.truth_columns, split=cfg.split)
    predictions, _ = read_columns(cfg.input, PREDICTION_COLUMNS, flag="--input")
    scored, _ = score(prepare_truth(truth, gaz, []), predictions, gaz)
    maps, skipped = _fit_levels(scored, cfg)
    if not maps:
        reasons = "; ".join(f"{lvl}: {why}" for lvl, why in skipped.items())
        raise UserError(f"{cfg.input}: nothing to calibrate ({reasons}); predictions need "
                        "country_confidence/city_confidence on rows with truth")  # fmt: skip
    method = _method_name(cfg)
    try:
        calibration = load_calibration(cfg.destination) or Calibration()
    except ValueError as err:
        raise UserError(f"--output: {err}") from None
    calibration.methods[method] = maps
    calibration.provenance[method] = {
        "predictions": cfg.input, "truth": cfg.truth, "split": cfg.split or None,
        "model": cfg.model or None, "map": cfg.map,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    uri = save_calibration(calibration, cfg.destination)
    levels = {}
    for level, m in maps.items():
        used = "before" if m.use == "none" else m.use  # "none" applies nothing
        after = m.fit[f"ece_{used}"], m.fit[f"brier_{used}"]
        levels[level] = {"use": m.use, "temperature": m.temperature, "rows": m.rows,
                         "ece_before": m.fit["ece_before"], "ece_after": after[0],
                         "brier_before": m.fit["brier_before"], "brier_after": after[1]}  # fmt: skip
        log.info("%s %s: %d rows, %s map, in-sample ECE %.4f -> %.4f", method, level, m.rows,
                 m.use, m.fit["ece_before"], after[0])  # fmt: skip
    log.info("calibration written to %s in %.1f s", uri, time.perf_counter() - start)
    return {"calibration": uri, "method": method, "levels": levels, "skipped": skipped}
