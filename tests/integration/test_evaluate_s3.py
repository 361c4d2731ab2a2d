"""Evaluate a predict-style output (a folder of Parquet parts) on S3, writing the report to S3."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from georay.data.storage import filesystem_for, list_files, read_bytes, write_bytes
from georay.evaluate import EvaluateConfig, evaluate


def _parquet(table: pa.Table, uri: str) -> None:
    fs, path = filesystem_for(uri)
    pq.write_table(table, path, filesystem=fs)


def test_parts_on_s3(s3_bucket):
    root = f"s3://{s3_bucket}/run"
    truth = pa.table({
        "image_id": ["a", "b", "c", "d"], "uri": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
        "lat": [47.3769, 35.6762, -33.4489, 48.8566], "lon": [8.5417, 139.6503, -70.6693, 2.3522],
        "country": ["CH", "JP", "CL", "FR"], "city": ["Zürich", "Tokyo", "Santiago", "Paris"],
        "split": ["test", "test", "test", "train"],
    })  # fmt: skip
    _parquet(truth, f"{root}/manifest.parquet")
    # predict's output: committed parts, each with the DESIGN predictions columns
    part = {"country": ["Switzerland", "Japan"], "country_code": ["CH", "JP"],
            "city": ["Zurich", "Kyoto"], "lat": [47.36667, 35.02107], "lon": [8.55, 135.75385],
            "answered": [True, True], "status": ["ok", "ok"], "raw_text": ["...", "..."]}  # fmt: skip
    _parquet(pa.table({"image_id": ["a", "b"], **part}), f"{root}/pred/part-r1-000000.parquet")
    _parquet(pa.table({"image_id": ["c", "zz"], **part}), f"{root}/pred/part-r1-000001.parquet")
    write_bytes(f"{root}/pred/.part-r2-000000.parquet.tmp", b"not parquet")  # uncommitted

    out = f"{root}/report"
    metrics = evaluate(EvaluateConfig(predictions=f"{root}/pred", truth=f"{root}/manifest.parquet",
                                      output=out, split="test"))  # fmt: skip
    assert metrics["n"] == 3  # the train row is not scored
    assert metrics["country"]["correct"] == 2 and metrics["country"]["answered"] == 3
    assert metrics["city"]["correct"] == 1  # Zürich; Kyoto is not Tokyo, c is in Chile
    assert metrics["acc_km"]["25"] == 1 / 3
    assert metrics["inputs"]["unmatched_predictions"] == 1
    files = {u.rsplit("/", 1)[1] for u in list_files(out)}
    assert {"metrics.json", "report.md", "countries.parquet", "cells_res3.parquet",
            "cells_res5.parquet", "unmatched_predictions.parquet", "map_res3.png",
            "error_histogram.png", "countries.png"} <= files  # fmt: skip
    assert json.loads(read_bytes(f"{out}/metrics.json"))["n"] == 3
    assert read_bytes(f"{out}/map_res3.png")[:4] == b"\x89PNG"
