"""Reading images where they live, on a local Ray: S3 that throttles, resets and stops for a
while (moto behind the fault proxy), and http(s) manifests against a loopback server.

Each runs the real bulk-job skeleton (guard, resume, parts, summary) with a stand-in model stage,
so what is checked is the fetch and the bookkeeping: every input row exactly once, reasons given.
"""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from georay import pipeline as pl
from georay.data.manifest import write_manifest

SCHEMA = pa.schema([("image_id", pa.string()), ("status", pa.string()), ("error", pa.string())])


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def _run(manifest, out, **settings) -> dict:
    cfg = pl.BulkSettings(input=str(manifest), output=str(out), block_rows=8, **settings)

    def stages(ds):
        def keep(batch):  # a stand-in model stage (nested: Ray workers cannot import tests)
            return pl.clean_status({k: batch[k] for k in ("image_id", "status", "error")})

        return pl.load_stage(ds, cfg, side=16).map_batches(keep, batch_format="numpy")

    return pl.run_bulk_job(pl.BulkJob(name="fetch-test", settings=cfg, identity={},
                                      tables=("scores",), outputs=lambda _: {"scores": SCHEMA},
                                      stages=stages))  # fmt: skip


def _rows(out) -> dict[str, tuple[str, str | None]]:
    table = pl.PartWriter(str(out)).read()
    ids = table["image_id"].to_pylist()
    assert len(ids) == len(set(ids)), "a row appears twice"
    pairs = zip(table["status"].to_pylist(), table["error"].to_pylist(), strict=True)
    return dict(zip(ids, pairs, strict=True))


@pytest.fixture
def s3_manifest(s3_bucket, tmp_path):
    """160 small JPEGs on the test S3 endpoint and a local manifest naming them."""
    s3 = boto3.client("s3")
    ids = [f"img{i:03d}" for i in range(160)]
    for i, image_id in enumerate(ids):
        s3.put_object(Bucket=s3_bucket, Key=f"photos/{image_id}.jpg", Body=_jpeg(i))
    uris = [f"s3://{s3_bucket}/photos/{i}.jpg" for i in ids]
    manifest = tmp_path / "manifest.parquet"
    write_manifest(pa.table({"image_id": ids, "uri": uris}), str(manifest))
    return manifest, ids


def test_s3_throttling_and_resets_are_retried(ray_session, s3_manifest, s3_faults, tmp_path):
    manifest, ids = s3_manifest
    s3_faults.fail_rate, s3_faults.reset_rate = 0.05, 0.01
    summary = _run(manifest, tmp_path / "out", fetch_backoff_s=0.02)
    rows = _rows(tmp_path / "out")
    assert sorted(rows) == ids and {s for s, _ in rows.values()} == {"ok"}
    assert summary["rows_in"] == summary["rows_out"] == summary["ok"] == len(ids)
    faults = s3_faults.counts["slowdown"] + s3_faults.counts["reset"]
    assert faults > 0 and summary["fetch"]["retries"] == faults
    assert summary["fetch"]["objects"] == len(ids) and summary["fetch"]["failed_transient"] == 0


def test_s3_outage_mid_job_then_retry_errors(ray_session, s3_manifest, s3_faults, tmp_path):
    manifest, ids = s3_manifest
    out = tmp_path / "out"
    # Stopped (connections refused) from the 40th GET on, for longer than the retries last.
    s3_faults.delay_s = 0.03
    s3_faults.outage_after(gets=40, seconds=3.0)
    first = _run(manifest, out, fetch_concurrency=2, fetch_attempts=2, fetch_backoff_s=0.05)
    rows = _rows(out)
    failed = {i for i, (s, _) in rows.items() if s == "error"}
    assert first["rows_in"] == first["rows_out"] == len(ids) and sorted(rows) == ids
    assert 0 < len(failed) <= len(ids) - 39
    assert all(rows[i][1].startswith("read failed, transient: ") for i in failed)
    assert first["fetch"]["failed_transient"] == len(failed)
    while s3_faults.down:
        time.sleep(0.1)

    again = _run(manifest, out)  # a plain rerun keeps committed errors
    assert again["rows_this_run"] == 0 and again["error"] == len(failed)
    third = _run(manifest, out, retry_errors=True)
    rows = _rows(out)
    assert sorted(rows) == ids and {s for s, _ in rows.values()} == {"ok"}
    assert third["retried_errors"] == third["rows_this_run"] == len(failed)
    assert third["fetch"]["objects"] == len(failed)  # counted by every task, job after job
    assert third["rows_in"] == third["rows_out"] == third["ok"] == len(ids)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status, body, headers = 200, b"", {}
        if self.path.startswith("/img/"):
            body = _jpeg(int(self.path.rsplit("/", 1)[1]))
        elif self.path == "/slow":
            time.sleep(3)
            body = _jpeg(0)
        elif self.path == "/big":
            body = b"\xff\xd8" + bytes(60_000)
        elif self.path == "/to-metadata":
            status, headers = 302, {"Location": "http://169.254.169.254/latest/meta-data/"}
        else:
            status = 404
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # the fetcher gave up on /slow


def test_https_manifest_rows_each_once_with_reasons(ray_session, tmp_path):
    httpd = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        uris = {**{f"ok{i}": f"{base}/img/{i}" for i in range(6)}, "slow": f"{base}/slow",
                "gone": f"{base}/gone.jpg", "big": f"{base}/big",
                "redirect": f"{base}/to-metadata"}  # fmt: skip
        manifest = tmp_path / "urls.csv"
        write_manifest(pa.table({"image_id": list(uris), "uri": list(uris.values())}),
                       str(manifest))  # fmt: skip
        summary = _run(manifest, tmp_path / "out", url_allow_networks=["127.0.0.0/8"],
                       fetch_timeout_s=0.5, fetch_attempts=2, max_file_bytes=50_000)  # fmt: skip
        refused = _run(manifest, tmp_path / "no-flag")
    finally:
        httpd.shutdown()
    rows = _rows(tmp_path / "out")
    assert sorted(rows) == sorted(uris) and summary["rows_in"] == summary["rows_out"] == 10
    assert all(rows[f"ok{i}"] == ("ok", None) for i in range(6))
    assert rows["slow"][1].startswith("read failed, transient: fetching the image URL took")
    assert rows["gone"][1] == f"missing file: {base}/gone.jpg (HTTP 404)"
    assert rows["big"][1].startswith("file too large: image at URL is 60002 bytes")
    assert rows["redirect"][1].startswith("read failed, permanent: URL host '169.254.169.254'")
    assert refused["error"] == 10  # loopback is refused without --url-allow-networks
    assert all("non-public address" in e for _, e in _rows(tmp_path / "no-flag").values())
