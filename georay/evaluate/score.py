"""The metric core: join predictions to truth, score every row, aggregate by country and H3 cell.

Why pyarrow/numpy on one node and not Ray Data: evaluation is one join plus global aggregates
(medians, per-group tables) over a handful of numeric columns, about 100 bytes a row once the
names are dictionary-encoded, so 10M rows fit in ~1 GB on one machine and run in seconds; Ray
Data would shuffle the same columns through the object store for its join and group-bys and
spend longer starting up (~6.5 s) than this takes on 1M rows. Past ~100M rows the per-row part
(distances, cells) would move into ``map_batches`` and the aggregates into mergeable partials.

Per row in Python runs only what has no vectorized form: ``h3``'s ``latlng_to_cell`` (integer
cells, which group fast). Names are resolved once per *distinct* value (dictionary encoding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from h3.api.basic_int import latlng_to_cell as cell

from georay.geo.distance import haversine_km
from georay.geo.gazetteer import Gazetteer
from georay.geo.metrics import country_codes, geoscores
from georay.geo.names import normalize_name
from georay.geo.places import city_of_coordinates

NO_CELL = np.uint64(0)


@dataclass
class Scored:
    """Per-row results, one entry per (deduplicated) truth row; arrays share one order."""

    image_id: np.ndarray  # object
    true_country: np.ndarray  # object, ISO alpha-2 or None
    pred_country: np.ndarray  # object, ISO alpha-2 or None (None also for unknown names)
    country_known: np.ndarray  # bool: the truth has a country
    country_answered: np.ndarray  # bool: a prediction named a country
    country_correct: np.ndarray  # bool
    city_known: np.ndarray
    city_answered: np.ndarray
    city_correct: np.ndarray
    located: np.ndarray  # bool: the truth has a location (km metrics are over these rows)
    true_lat: np.ndarray
    true_lon: np.ndarray
    pred_lat: np.ndarray
    pred_lon: np.ndarray
    distance_km: np.ndarray  # NaN where unanswered or unlocated
    cells: dict[int, np.ndarray] = field(default_factory=dict)  # res -> uint64 (0 = none)
    counts: dict[str, int] = field(default_factory=dict)  # how inputs were completed/joined
    # Confidence columns of the predictions (issue 20), aligned to the truth rows: NaN, False
    # and null where a row has none (no prediction, an error row, a method without scores).
    country_confidence: np.ndarray | None = None  # float64
    city_confidence: np.ndarray | None = None  # float64
    abstained: np.ndarray | None = None  # bool
    candidates: pa.Array | None = None  # list<struct> (CANDIDATE_TYPE), null where none

    def __len__(self) -> int:
        return len(self.image_id)


def _first_rows(table: pa.Table) -> tuple[pa.Table, int, int]:
    """Keep the first row of each image_id; return the table, the number of rows without an
    image_id and the number of duplicate rows left out."""
    valid = table.filter(pc.is_valid(table["image_id"]))
    ids = valid["image_id"].combine_chunks().dictionary_encode()
    no_id, dupes = len(table) - len(valid), len(valid) - len(ids.dictionary)
    if not dupes:  # the usual case: no sort needed
        return valid, no_id, 0
    _, first = np.unique(ids.indices.to_numpy(zero_copy_only=False), return_index=True)
    return valid.take(pa.array(np.sort(first))), no_id, dupes


def _decode(column: pa.ChunkedArray | pa.Array, fn) -> np.ndarray:
    """``fn`` applied once per distinct value of a string column, broadcast back to rows.

    ``fn`` takes an object array of distinct values and returns an object array; nulls map to
    None.
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    enc = arr.dictionary_encode()
    values = np.asarray(fn(np.asarray(enc.dictionary.to_pylist(), dtype=object)), dtype=object)
    values = np.append(values, None)  # slot for nulls
    idx = pc.fill_null(enc.indices, len(values) - 1).to_numpy(zero_copy_only=False)
    return values[idx]


def _normalized_ids(*columns: pa.Array) -> list[np.ndarray]:
    """Integer ids of normalized names, comparable across columns; -1 for null/empty."""
    vocab: dict[str, int] = {"": -1}

    def ids(values: np.ndarray) -> np.ndarray:
        return np.array([vocab.setdefault(normalize_name(v), len(vocab)) for v in values])

    out = []
    for column in columns:
        decoded = _decode(column, ids)
        out.append(np.where(np.equal(decoded, None), -1, decoded).astype(np.int64))
    return out


def _nonempty(column: pa.Array) -> np.ndarray:
    """True where a string is present and not empty after normalization."""
    return _normalized_ids(column)[0] >= 0


def _coordinates(
    gaz: Gazetteer, country: pa.Array, city: pa.Array, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gazetteer coordinates of (country, city) name pairs at ``rows``, once per distinct pair."""
    lat, lon = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    if not len(rows):
        return lat, lon
    pairs = pa.table({"c": country.take(pa.array(rows)), "t": city.take(pa.array(rows))})
    keys = pc.binary_join_element_wise(
        pc.fill_null(pairs["c"], ""), pc.fill_null(pairs["t"], ""), "\x1f"
    ).combine_chunks().dictionary_encode()  # fmt: skip
    distinct = [k.split("\x1f") for k in keys.dictionary.to_pylist()]
    ulat, ulon = gaz.coordinates(
        np.array([c or None for c, _ in distinct], dtype=object),
        np.array([t or None for _, t in distinct], dtype=object),
    )
    idx = keys.indices.to_numpy(zero_copy_only=False)
    return ulat[idx], ulon[idx]


def h3_cells(lat: np.ndarray, lon: np.ndarray, resolutions: list[int]) -> dict[int, np.ndarray]:
    """H3 cells (uint64; 0 where no location) at each resolution, one ``h3`` call per row each.

    Each resolution is indexed directly rather than as the parent of the finest cell: H3's
    hierarchy is not exact containment, so near cell edges a point's res-3 cell differs from
    its res-5 cell's parent, and the cell a reader gets from ``h3.latlng_to_cell`` must match.
    """
    ok = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90)
    la, lo, count = lat[ok].tolist(), lon[ok].tolist(), int(ok.sum())
    out = {}
    for res in resolutions:
        cells = np.zeros(len(lat), dtype=np.uint64)
        points = zip(la, lo, strict=True)
        cells[ok] = np.fromiter((cell(a, b, res) for a, b in points), np.uint64, count)
        out[res] = cells
    return out


@dataclass
class Truth:
    """Truth rows deduplicated and completed once, then scored against every prediction set
    (so that methods compared side by side are scored on exactly the same rows)."""

    table: pa.Table  # deduplicated truth rows (image_id, country, city, ...)
    country: np.ndarray  # object, ISO alpha-2 or None (given, else from coordinates)
    city: pa.Array  # given, else from coordinates
    lat: np.ndarray  # given, else from names
    lon: np.ndarray
    located: np.ndarray
    cells: dict[int, np.ndarray]
    counts: dict[str, int]

    def __len__(self) -> int:
        return len(self.table)


def prepare_truth(truth: pa.Table, gaz: Gazetteer, resolutions: list[int]) -> Truth:
    """Deduplicate truth rows and complete them: country and city from coordinates,
    coordinates from names (the conventions in ``EVALUATE_CONVENTIONS``)."""
    truth, truth_no_id, truth_dupes = _first_rows(truth)
    tc = _decode(truth["country"], lambda v: country_codes(v, gaz))
    tlat = truth["lat"].to_numpy(zero_copy_only=False).astype(np.float64)
    tlon = truth["lon"].to_numpy(zero_copy_only=False).astype(np.float64)
    has_xy = np.isfinite(tlat) & np.isfinite(tlon)
    counts = {"truth_duplicates": truth_dupes, "truth_without_image_id": truth_no_id}
    true_city = truth["city"].combine_chunks()
    no_cc = np.equal(tc, None) & has_xy
    if no_cc.any():
        tc[no_cc] = gaz.reverse(tlat[no_cc], tlon[no_cc]).country_code
    no_city = ~pc.is_valid(true_city).to_numpy(zero_copy_only=False) & has_xy
    if no_city.any():
        names, codes = city_of_coordinates(gaz, tlat[no_city], tlon[no_city])
        names[codes != tc[no_city]] = None  # a city across the border: the city stays unknown
        city = true_city.to_numpy(zero_copy_only=False).astype(object)
        city[no_city] = names
        true_city = pa.array(city, pa.string())
    counts["truth_country_from_coordinates"] = int(no_cc.sum())
    counts["truth_city_from_coordinates"] = int(no_city.sum())
    need_xy = np.flatnonzero(~has_xy)
    tlat[need_xy], tlon[need_xy] = _coordinates(gaz, truth["country"], truth["city"], need_xy)
    counts["truth_location_from_names"] = int(np.isfinite(tlat[need_xy]).sum())
    located = np.isfinite(tlat) & np.isfinite(tlon)
    counts["truth_without_country"] = int(np.equal(tc, None).sum())
    counts["truth_without_location"] = int((~located).sum())
    cells = h3_cells(tlat, tlon, resolutions)
    return Truth(truth, tc, true_city, tlat, tlon, located, cells, counts)


def _confidence_columns(pred: pa.Table) -> dict:
    """The confidence fields of :class:`Scored` from predictions aligned to truth rows (absent
    columns give nothing)."""
    names, out = pred.column_names, {}
    for level in ("country", "city"):
        if f"{level}_confidence" in names:
            col = pred[f"{level}_confidence"].combine_chunks().cast(pa.float64())
            out[f"{level}_confidence"] = pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False)
    if "abstained" in names:
        col = pred["abstained"].combine_chunks().cast(pa.bool_())
        out["abstained"] = pc.fill_null(col, False).to_numpy(zero_copy_only=False)
    if "candidates" in names:
        out["candidates"] = pred["candidates"].combine_chunks()
    return out


def score(
    truth: pa.Table | Truth,
    predictions: pa.Table,
    gaz: Gazetteer,
    resolutions: list[int] | None = None,
) -> tuple[Scored, pa.Table]:
    """Join predictions to truth on ``image_id`` and score every truth row.

    ``truth`` is a table (columns of :mod:`georay.evaluate.inputs`; cells at ``resolutions``)
    or a :class:`Truth` from :func:`prepare_truth`, to score several prediction sets on the
    same rows. Returns the scored truth rows and the predictions with no truth row.
    """
    t = truth if isinstance(truth, Truth) else prepare_truth(truth, gaz, resolutions or [])
    predictions, pred_no_id, pred_dupes = _first_rows(predictions)
    ids = t.table["image_id"].combine_chunks()
    n = len(t)
    pos = pc.index_in(ids, value_set=predictions["image_id"].combine_chunks())
    matched = pc.is_valid(pos).to_numpy(zero_copy_only=False)
    orphans = predictions.filter(pc.invert(pc.is_in(predictions["image_id"], value_set=ids)))
    # Prediction columns aligned to truth rows (nulls where no prediction).
    pred = predictions.take(pos)

    pred_name = pc.coalesce(pred["country"], pred["country_code"]).combine_chunks()
    flag = matched.copy()
    flag &= pc.fill_null(pred["answered"], True).to_numpy(zero_copy_only=False)
    flag &= pc.fill_null(pc.equal(pred["status"], "ok"), True).to_numpy(zero_copy_only=False)
    pcode = _decode(pred_name, lambda v: country_codes(v, gaz))
    counts = {
        **t.counts,
        "prediction_duplicates": pred_dupes,
        "predictions_without_image_id": pred_no_id,
        "unmatched_predictions": len(orphans),
        "truth_without_prediction": int(n - matched.sum()),
    }

    # Predicted coordinates: as given, else from the predicted names (city centre / country).
    plat = pred["lat"].to_numpy(zero_copy_only=False).astype(np.float64)
    plon = pred["lon"].to_numpy(zero_copy_only=False).astype(np.float64)
    need = np.flatnonzero(flag & ~(np.isfinite(plat) & np.isfinite(plon)))
    plat[need], plon[need] = _coordinates(gaz, pred_name, pred["city"].combine_chunks(), need)
    counts["prediction_location_from_names"] = int(np.isfinite(plat[need]).sum())
    dist = haversine_km(t.lat, t.lon, plat, plon)
    dist[~flag] = np.nan

    tc = t.country
    country_known = np.not_equal(tc, None)
    country_answered = flag & _nonempty(pred_name)
    country_correct = country_answered & country_known & (pcode == tc)
    p_city, t_city = _normalized_ids(pred["city"].combine_chunks(), t.city)
    city_known = t_city >= 0
    city_answered = flag & (p_city >= 0)
    same_country = ~country_known | (pcode == tc)
    city_correct = city_answered & city_known & (p_city == t_city) & same_country
    return (
        Scored(
            image_id=ids.to_numpy(zero_copy_only=False),
            true_country=tc,
            pred_country=pcode,
            country_known=country_known,
            country_answered=country_answered,
            country_correct=np.asarray(country_correct, dtype=bool),
            city_known=city_known,
            city_answered=city_answered,
            city_correct=np.asarray(city_correct, dtype=bool),
            located=t.located,
            true_lat=t.lat,
            true_lon=t.lon,
            pred_lat=plat,
            pred_lon=plon,
            distance_km=dist,
            cells=t.cells,
            counts=counts,
            **_confidence_columns(pred),
        ),
        orphans,
    )


def group_stats(keys: np.ndarray, scored: Scored, mask: np.ndarray | None = None) -> dict:
    """Per-group statistics of the rows in ``mask`` (default all) by ``keys`` (any sortable
    dtype), vectorized.

    Returns
    -------
    dict of arrays
        ``key`` (distinct keys, most rows first), ``n``, ``answered`` (share),
        ``country_accuracy`` (correct / n), ``city_accuracy`` (correct / rows with a true city;
        NaN without any), ``median_km`` (over answered rows; NaN without any), ``geoscore``
        (mean over all rows, 0 for unanswered), ``acc_25km`` (share of rows within 25 km).
    """
    sel = np.ones(len(keys), bool) if mask is None else mask
    uniq, g = np.unique(keys[sel], return_inverse=True)
    k = len(uniq)
    n = np.bincount(g, minlength=k)

    def share(values: np.ndarray, denom: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(g, weights=values[sel].astype(float), minlength=k) / denom

    d = scored.distance_km[sel]
    fin = np.isfinite(d)
    gf, df = g[fin], d[fin]
    order = np.lexsort((df, gf))
    gf, df = gf[order], df[order]
    m = np.bincount(gf, minlength=k)
    start = np.cumsum(m) - m
    median = np.full(k, np.nan)
    has = m > 0
    median[has] = (df[start[has] + (m[has] - 1) // 2] + df[start[has] + m[has] // 2]) / 2
    with np.errstate(invalid="ignore"):
        within = scored.distance_km < 25
    stats = {
        "key": uniq,
        "n": n,
        "answered": share(scored.country_answered, n),
        "country_accuracy": share(scored.country_correct, n),
        "city_accuracy": share(
            scored.city_correct, np.bincount(g, scored.city_known[sel].astype(float), k)
        ),
        "median_km": median,
        "geoscore": share(geoscores(scored.distance_km), n),
        "acc_25km": share(within, n),
    }
    top = np.lexsort((uniq, -n))
    return {name: v[top] for name, v in stats.items()}
