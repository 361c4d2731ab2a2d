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


def render_report(metrics: dict, tables: dict[str, pa.Table], top: int = 20) -> str:
    """Markdown report of one evaluation (figures are linked by relative file name)."""
    m, inputs = metrics, metrics["inputs"]
    split = (m.get("config") or {}).get("split")
    in_split = f", {inputs['truth_rows_in_split']:,} in split '{split}'" if split else ""
    out = [
        "# georay evaluation report",
        "",
        f"Truth: `{inputs['truth']}` ({inputs['truth_rows']:,} rows{in_split}). "
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
        "For orientation, the GeoReasoner paper reports country/city F1 of "
        + ", ".join(f"{k} {c:.4f}/{t:.4f}" for k, (c, t) in PAPER_F1.items())
        + " on its own benchmark; numbers are comparable only on the same data.",
        "",
    ]
    figures = m.get("figures") or {}
    if figures:
        out += ["## Figures", ""] + [f"![{name}]({path})" for name, path in figures.items()] + [""]
    out += [
        f"## Per country (top {top} by images; all in `countries.parquet`)",
        "",
        _table(
            ["country", "name", "n", "country acc.", "city acc.", "median km", "GeoScore"],
            _group_rows(tables["countries"], ["country", "country_name"], top),
        ),
        "",
    ]
    for name, table in tables.items():
        if name.startswith("cells_res"):
            out += [
                f"## Per H3 cell, resolution {name[9:]} (top {top} by images; all in "
                f"`{name}.parquet`)",
                "",
                _table(
                    [
                        "cell",
                        "centre lat",
                        "centre lon",
                        "main country",
                        "n",
                        "country acc.",
                        "city acc.",
                        "median km",
                        "GeoScore",
                    ],
                    _group_rows(table, ["cell", "lat", "lon", "country"], top),
                ),  # fmt: skip
                "",
            ]
    out += ["## Input accounting", ""]
    out += [f"- {k.replace('_', ' ')}: {_fmt(v)}" for k, v in inputs.items()
            if k not in ("truth", "predictions")]  # fmt: skip
    out += ["", "## Conventions", ""]
    out += [f"- **{k.replace('_', ' ')}**: {v}" for k, v in m["conventions"].items()]
    return "\n".join(out) + "\n"
