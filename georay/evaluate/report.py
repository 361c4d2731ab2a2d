"""``report.md``: the metrics as tables a person reads, the figures, and the conventions used."""

from __future__ import annotations

import math

import pyarrow as pa

# Published figures (GeoReasoner paper, Table 2), for orientation only: other data, other models.
PAPER_F1 = {"GeoReasoner": (0.9033, 0.8585), "StreetCLIP": (0.8854, 0.8543),
            "Qwen-VL": (0.7225, 0.5270)}  # fmt: skip


def _fmt(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _group_rows(table: pa.Table, key_columns: list[str], limit: int) -> list[list[object]]:
    cols = key_columns + ["n", "country_accuracy", "city_accuracy", "median_km", "geoscore"]
    data = table.slice(0, limit).select(cols).to_pylist()
    return [[row[c] for c in cols] for row in data]


# Rows of the side-by-side headline table: (label, path into a method's metrics).
HEADLINE_ROWS = [
    ("country precision", ("country", "precision")),
    ("country recall", ("country", "recall")),
    ("country F1", ("country", "f1")),
    ("city precision", ("city", "precision")),
    ("city recall", ("city", "recall")),
    ("city F1", ("city", "f1")),
    *((f"< {r} km", ("acc_km", r)) for r in ("1", "25", "200", "750", "2500")),
    ("GeoScore", ("geoscore",)),
    ("median km", ("median_km",)),
]


def methods_table(metrics: dict) -> str:
    """The headline figures of every method side by side (Markdown; also what the CLI and the
    demo print): one column per method, one row per figure, over the same truth rows."""
    methods = metrics["methods"]

    def get(m: dict, path: tuple) -> object:
        for key in path:
            m = m.get(key) if isinstance(m, dict) else None
        return m

    rows = [[label] + [get(m, path) for m in methods.values()] for label, path in HEADLINE_ROWS]
    digits = {"GeoScore": 0, "median km": 1}
    rows = [[r[0]] + [_fmt(v, digits.get(r[0], 4)) for v in r[1:]] for r in rows]
    rows.append(["truth rows"] + [m["n"] for m in methods.values()])
    if any("confidence" in m for m in methods.values()):
        rows += confidence_headline_rows(list(methods.values()))
    return _table(["figure", *methods], rows)


def _selective(country: dict, target: float) -> dict | None:
    for row in country.get("selective", []):
        if abs(row["target_precision"] - target) < 1e-9:
            return row
    return None


def confidence_headline_rows(methods: list[dict]) -> list[list[object]]:
    """Rows of the side-by-side table for methods with confidences: country ECE as given and
    calibrated, and the share of the archive kept at 95% country precision."""

    def country(m: dict) -> dict:
        return (m.get("confidence") or {}).get("country") or {}

    def kept(m: dict) -> str:
        row = _selective(country(m), 0.95)
        return "-" if row is None else f"{row['kept_share']:.1%}"

    rows = [
        ["country ECE"] + [_fmt((country(m).get("as_given") or {}).get("ece")) for m in methods]
    ]
    if any("calibrated" in country(m) for m in methods):
        rows.append(["country ECE calibrated"]
                    + [_fmt((country(m).get("calibrated") or {}).get("ece")) for m in methods])  # fmt: skip
    rows.append(["kept at 95% country precision"] + [kept(m) for m in methods])
    return rows


def placed_lines(metrics: dict, target: float = 0.95, bold: bool = False) -> list[str]:
    """Per method with confidences: "at 95% country precision, X% of photos are placed", with
    the threshold to give ``--min-confidence`` (the demo prints them; the report lists them)."""
    out = []
    for name, m in (metrics.get("methods") or {}).items():
        row = _selective((m.get("confidence") or {}).get("country") or {}, target)
        if row is None:
            continue
        label = f"**{name}**" if bold else name
        out.append(f"{label}: at {target:.0%} country precision, {row['kept_share']:.1%} of "
                   "photos are placed" + ("" if row["threshold"] is None else
                   f" (keep rows with confidence >= {row['threshold']:.4f})"))  # fmt: skip
    return out


def confidence_section(metrics: dict) -> list[str]:
    """The report's confidence section: what a user can accept at a precision, calibration,
    top-k and abstention, per method that carries confidences (empty if none does)."""
    methods = {k: v["confidence"] for k, v in (metrics.get("methods") or {}).items()
               if v.get("confidence")}  # fmt: skip
    if not methods:
        return []
    out = ["## Confidence: what you can accept", ""]
    out += [f"- {line}" for line in placed_lines(metrics, bold=True)]
    out += ["", "Keep rows whose confidence is at least the threshold (`--min-confidence`) and "
            "send the rest to a person:", ""]  # fmt: skip
    sel = [[name, f"{r['target_precision']:.0%}", r["threshold"], r["kept_share"], r["kept_rows"],
            r["precision"]]
           for name, c in methods.items() for r in (c.get("country") or {}).get("selective", [])]  # fmt: skip
    out += [_table(["method", "target precision", "threshold", "share kept", "rows kept",
                    "precision kept"], sel), ""]  # fmt: skip
    cal = []
    for name, c in methods.items():
        for level in ("country", "city"):
            f = c.get(level)
            if f:
                g, k = f["as_given"], f.get("calibrated") or {}
                cal.append([name, level, f["rows"], g["ece"], k.get("ece"), g["brier"],
                            k.get("brier"), g["mean_confidence"], g["accuracy"], f.get("aurc")])  # fmt: skip
    out += ["Calibration (ECE over 15 equal-mass bins; AURC: area under the risk-coverage "
            "curve, country):", "",
            _table(["method", "level", "rows", "ECE", "ECE calibrated", "Brier",
                    "Brier calibrated", "mean confidence", "accuracy", "AURC"], cal), ""]  # fmt: skip
    topk = [[name, t["rows_with_candidates"], t.get("country_top1"), t.get("country_top3"),
             t.get("country_top5"), t.get("within_25km")]
            for name, c in methods.items() if (t := c.get("top_k"))]  # fmt: skip
    if topk:
        out += ["Candidates:", "", _table(["method", "rows with candidates", "country top-1",
                "country top-3", "country top-5", "a candidate < 25 km"], topk), ""]  # fmt: skip
    ab = [[name, a["rows"], a["share"], a["counted_as"], a["kept_country_precision"],
           a["abstained_country_accuracy"]]
          for name, c in methods.items() if (a := c.get("abstained"))]  # fmt: skip
    if ab:
        out += ["Abstention:", "", _table(["method", "abstained rows", "share", "headline counts "
                "them as", "country precision of the rest", "country accuracy of abstained"],
                ab), ""]  # fmt: skip
    return out


def _method_rows(table: pa.Table, keys: list[str], methods: list[str], limit: int) -> list[list]:
    cols = keys + ["n"] + [f"{m}.{stat}" for stat in ("country_accuracy", "median_km")
                           for m in methods]  # fmt: skip
    data = table.slice(0, limit).select(cols).to_pylist()
    return [[row[c] for c in cols] for row in data]


def _group_section(title: str, table: pa.Table, keys: list[str], header: list[str],
                   methods: list[str], top: int) -> list[str]:  # fmt: skip
    if len(methods) == 1:
        rows = _group_rows(table, keys, top)
        header = header + ["n", "country acc.", "city acc.", "median km", "GeoScore"]
    else:
        rows = _method_rows(table, keys, methods, top)
        header = header + ["n"] + [f"{m} country acc." for m in methods]
        header += [f"{m} median km" for m in methods]
    return [title, "", _table(header, rows), ""]


def describe_layout(record: dict | None) -> str:
    """``osv5m`` (OpenStreetView-5M ...; image_id <- id, lat <- latitude, ...) for a report."""
    if not record:
        return "-"
    cols = ", ".join(f"{role} <- {src}" for role, src in record.get("columns", {}).items())
    extra = [f"{k.replace('_', ' ')} {v}" for k, v in record.items()
             if k not in ("layout", "title", "columns") and v]  # fmt: skip
    return f"`{record['layout']}` ({record.get('title', '')}; {'; '.join([cols, *extra])})"


def render_report(metrics: dict, tables: dict[str, pa.Table], top: int = 20) -> str:
    """Markdown report of one evaluation (figures are linked by relative file name)."""
    m, inputs = metrics, metrics["inputs"]
    methods = list(m.get("methods") or {"predictions": m})
    split = (m.get("config") or {}).get("split")
    in_split = f", {inputs['truth_rows_in_split']:,} in split '{split}'" if split else ""
    layout = (inputs.get("truth_layout") or {}).get("layout", "georay")
    out = [
        "# georay evaluation report",
        "",
        f"Truth: `{inputs['truth']}` ({inputs['truth_rows']:,} rows{in_split}; layout `{layout}`).",
    ]
    if len(methods) == 1:
        out += [
            f"Predictions: `{inputs['predictions']}` ({inputs['prediction_rows']:,} rows).",
            f"Scored rows: **{m['n']:,}**; without a prediction (unanswered): "
            f"{inputs['truth_without_prediction']:,}; predictions without a truth row: "
            f"{inputs['unmatched_predictions']:,} (listed in `unmatched_predictions.parquet`).",
            "",
            "## Headline",
            "",
            _table(
                ["level", "n", "answered", "correct", "precision", "recall", "F1"],
                [
                    [lvl]
                    + [m[lvl][k] for k in ("n", "answered", "correct", "precision", "recall", "f1")]
                    for lvl in ("country", "city")
                ],
            ),  # fmt: skip
            "",
            _table(
                [f"< {r} km" for r in m["acc_km"]] + ["GeoScore", "median km", "mean km"],
                [[*m["acc_km"].values(), m["geoscore"], m["median_km"], m["mean_km"]]],
            ),
            "",
        ]
    else:
        out += ["", f"Scored rows: **{m['n']:,}**, the same for every method.", ""]
        out += [
            "| method | predictions | rows | without a prediction | without a truth row |",
            "|---|---|---|---|---|",
        ]
        for name, mm in m["methods"].items():
            i = mm["inputs"]
            out.append(f"| {name} | `{i['predictions']}` | {i['prediction_rows']:,} | "
                       f"{i['truth_without_prediction']:,} | {i['unmatched_predictions']:,} |")  # fmt: skip
        out += ["", "## Headline: methods side by side", "", methods_table(m), ""]
        out += [f"Maps, error histogram and country bars show `{methods[0]}`; `methods.png` "
                "compares every method.", ""]  # fmt: skip
    out += [
        "For orientation, the GeoReasoner paper reports country/city F1 of "
        + ", ".join(f"{k} {c:.4f}/{t:.4f}" for k, (c, t) in PAPER_F1.items())
        + " on its own benchmark; numbers are comparable only on the same data.",
        "",
    ]
    out += confidence_section(m)
    figures = m.get("figures") or {}
    if figures:
        out += ["## Figures", ""] + [f"![{name}]({path})" for name, path in figures.items()] + [""]
    out += _group_section(
        f"## Per country (top {top} by images; all in `countries.parquet`)",
        tables["countries"], ["country", "country_name"], ["country", "name"], methods, top,
    )  # fmt: skip
    for name, table in tables.items():
        if name.startswith("cells_res"):
            out += _group_section(
                f"## Per H3 cell, resolution {name[9:]} (top {top} by images; all in "
                f"`{name}.parquet`)",
                table, ["cell", "lat", "lon", "country"],
                ["cell", "centre lat", "centre lon", "main country"], methods, top,
            )  # fmt: skip
    out += ["## Input accounting", ""]
    out += [f"- {k.replace('_', ' ')}: {_fmt(v)}" for k, v in inputs.items()
            if k not in ("truth", "predictions", "truth_layout")]  # fmt: skip
    out += [f"- truth layout: {describe_layout(inputs.get('truth_layout'))}"]
    out += ["", "## Conventions", ""]
    out += [f"- **{k.replace('_', ' ')}**: {v}" for k, v in m["conventions"].items()]
    return "\n".join(out) + "\n"
