"""georay.data.fetch: many reads at once, retries, reasons, URL rules; and drop_rows (resume)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from georay.data.fetch import FetchPolicy, backoff_s, fetch_all, fetch_one, is_read_failure
from georay.pipeline.output import PartWriter, conform
from georay.pipeline.settings import BulkSettings

BODY = b"\xff\xd8" + b"x" * 1000
LOOPBACK = ("127.0.0.0/8",)


class _Handler(BaseHTTPRequestHandler):
    flaky: dict[str, int] = {}
    active = 0
    peak = 0
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        if path.startswith("/img"):
            self._send(200, BODY)
        elif path.startswith("/flaky"):  # 503 for the first N requests of each path
            with self.lock:
                left = self.flaky.get(self.path, 2)
                self.flaky[self.path] = left - 1
            self._send(503 if left > 0 else 200, b"slow down" if left > 0 else BODY)
        elif path == "/missing":
            self._send(404, b"no")
        elif path == "/big":
            self._send(200, b"x" * 50_000)
        elif path == "/slow":
            time.sleep(2)
            self._send(200, BODY)
        elif path == "/to-metadata":
            self._send(302, headers={"Location": "http://169.254.169.254/latest/meta-data"})
        elif path.startswith("/busy"):  # records how many requests overlap
            with self.lock:
                type(self).active += 1
                type(self).peak = max(type(self).peak, type(self).active)
            time.sleep(0.1)
            with self.lock:
                type(self).active -= 1
            self._send(200, BODY)
        else:
            self._send(500, b"?")


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up on /slow


@pytest.fixture(scope="module")
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _policy(**kw) -> FetchPolicy:
    return FetchPolicy(**{"allow_networks": LOOPBACK, "backoff_s": 0.01, **kw})


def test_local_reads_keep_order_and_say_why(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"aaa")
    (tmp_path / "big.jpg").write_bytes(b"b" * 100)
    uris = [str(tmp_path / "a.jpg"), str(tmp_path / "gone.jpg"), f"file://{tmp_path}/big.jpg",
            str(tmp_path)]  # fmt: skip
    results, counts = fetch_all(uris, _policy(max_bytes=50, concurrency=3))
    assert results[0].data == b"aaa" and results[0].error is None
    assert results[1].error == f"missing file: {tmp_path}/gone.jpg"
    assert results[2].error == "file too large: 100 bytes > 50"
    assert results[3].error.startswith("read failed, permanent: IsADirectoryError")
    assert counts["objects"] == 4 and counts["bytes"] == 3
    assert (counts["failed_transient"], counts["failed_permanent"], counts["retries"]) == (0, 3, 0)


def test_transient_errors_are_retried_and_counted(server):
    results, counts = fetch_all([f"{server}/flaky/{i}" for i in range(5)], _policy(attempts=3))
    assert all(r.data == BODY and r.retries == 2 for r in results)
    assert (counts["retries"], counts["retried_ok"], counts["failed_transient"]) == (10, 5, 0)


def test_transient_errors_give_up_after_the_attempts(server):
    result = fetch_one(f"{server}/flaky/x", _policy(attempts=2))
    assert result.data is None and result.transient and result.retries == 1
    assert result.error == (
        "read failed, transient: image URL answered HTTP 503 (gave up after 2 attempts)"
    )


def test_url_rows_each_get_their_reason(server):
    uris = [f"{server}/img", f"{server}/missing", f"{server}/big", f"{server}/slow",
            f"{server}/to-metadata", "ftp://example.com/a.jpg"]  # fmt: skip
    results, counts = fetch_all(uris, _policy(max_bytes=10_000, timeout_s=0.5, attempts=2))
    ok, missing, big, slow, redirect, ftp = results
    assert ok.data == BODY
    assert missing.error == f"missing file: {server}/missing (HTTP 404)"
    assert big.error.startswith("file too large: image at URL is 50000 bytes")
    assert slow.error.startswith("read failed, transient: fetching the image URL took longer")
    assert redirect.error.startswith("read failed, permanent: URL host '169.254.169.254'")
    assert ftp.error.startswith("missing file")  # not a URL scheme we fetch: a local path
    assert counts["failed_transient"] == 1 and counts["failed_permanent"] == 4


def test_loopback_urls_are_refused_without_the_flag(server):
    result = fetch_one(f"{server}/img", FetchPolicy())
    assert result.error.startswith("read failed, permanent: URL host '127.0.0.1' resolves to a")


def test_reads_overlap_but_never_beyond_the_host_limit(server):
    _Handler.peak = 0
    results, _ = fetch_all([f"{server}/busy/{i}" for i in range(12)],
                           _policy(concurrency=12, host_concurrency=3))  # fmt: skip
    assert all(r.data == BODY for r in results)
    assert _Handler.peak == 3


def test_read_failures_are_what_retry_errors_rereads():
    assert is_read_failure("read failed, transient: S3 SlowDown (HTTP 503) (gave up ...)")
    assert is_read_failure("read failed: OSError: old runs wrote this")
    assert is_read_failure("missing file: s3://b/k.jpg")
    for reason in ("not an image (PIL: ...)", "file too large: 9 bytes > 1", "", None):
        assert not is_read_failure(reason)


def test_backoff_doubles_within_jitter_and_is_capped():
    policy = FetchPolicy(backoff_s=0.5)
    for retry, full in ((1, 0.5), (2, 1.0), (3, 2.0), (10, 10.0)):
        assert full / 2 <= backoff_s(policy, retry) <= full


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("fetch_concurrency", 0, "fetch_concurrency must be >= 1"),
        ("fetch_attempts", 0, "fetch_attempts must be >= 1"),
        ("fetch_timeout_s", 0, "fetch_timeout_s must be > 0"),
        ("url_allow_networks", ["10.0.0.0/33"], "url_allow_networks: "),
    ],
)
def test_fetch_flags_are_validated(field, value, message):
    with pytest.raises(ValueError, match=message):
        BulkSettings(input="in", output="out", **{field: value})


def test_drop_rows_rewrites_only_the_parts_that_hold_them(tmp_path):
    schema = pa.schema([("image_id", pa.string()), ("status", pa.string())])
    writer = PartWriter(str(tmp_path), tables=("scores", "embeddings")).open()
    for ids in (["a", "b"], ["c"], ["d", "e"]):
        t = conform(pa.table({"image_id": ids, "status": ["error"] * len(ids)}), schema)
        writer.write_part({"scores": t, "embeddings": t})
    before = {p: (tmp_path / "scores" / p).stat().st_mtime_ns for p in writer._names("scores")}
    assert writer.drop_rows(pa.array(["b", "d", "e", "zz"])) == 3
    assert sorted(writer.done_ids().to_pylist()) == ["a", "c"]
    assert sorted(writer.read(table="embeddings")["image_id"].to_pylist()) == ["a", "c"]
    after = {p: (tmp_path / "scores" / p).stat().st_mtime_ns for p in writer._names("scores")}
    assert sum(before[p] == after[p] for p in before) == 1  # the part of "c" is untouched
    assert not [p for p in (tmp_path / "scores").iterdir() if p.name.startswith(".")]
