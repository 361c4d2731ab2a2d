"""URL fetching for the API: the SSRF guard, redirects, size and time limits (loopback only)."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from georay.data.urls import FetchError, fetch_url, is_public_address, resolve_public

BODY = b"\xff\xd8" + b"x" * 5000


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        if self.path == "/img":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/big-chunked":  # no Content-Length: the limit must hold while reading
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"y" * 1000)
        elif self.path == "/slow":
            self.send_response(200)
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"z")
                self.wfile.flush()
                time.sleep(0.05)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/img")
            self.end_headers()
        elif self.path == "/redirect-by-name":  # same server, but reached through a host name
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/img")
            self.end_headers()
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _loopback_ok(host, port):
    # Tests can only reach loopback; the real resolver (which refuses it) is tested below.
    return "127.0.0.1"


@pytest.mark.parametrize(
    "address, public",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_public_address_classification(address, public):
    assert is_public_address(address) is public


def test_default_resolver_refuses_loopback_names_and_literals(server):
    for host in ("localhost", "127.0.0.1", "[::1]"):
        with pytest.raises(FetchError) as err:
            fetch_url(f"http://{host}:1/img")
        assert err.value.status == 403
    with pytest.raises(FetchError) as err:
        resolve_public("169.254.169.254", 80)
    assert err.value.status == 403


def test_unresolvable_host_is_a_400():
    with pytest.raises(FetchError) as err:
        resolve_public("no-such-host.invalid", 80)
    assert err.value.status == 400


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x.jpg",
        "gopher://x",
        "http:///nohost",
        "http://user:pw@example.com/x.jpg",
        "//example.com/x.jpg",
        "http://example.com:99999/",
    ],
)
def test_bad_urls_refused_before_any_connection(url):
    calls = []
    with pytest.raises(FetchError) as err:
        fetch_url(url, resolve=lambda h, p: calls.append(h) or "127.0.0.1")
    assert err.value.status == 400
    assert calls == []


def test_fetch_ok_and_redirect_followed(server):
    assert fetch_url(server + "/img", resolve=_loopback_ok) == BODY
    assert fetch_url(server + "/redirect", resolve=_loopback_ok) == BODY


def test_every_redirect_hop_is_checked(server):
    seen = []

    def resolver(host, port):
        seen.append(host)
        if host != "127.0.0.1":
            raise FetchError("blocked", 403)
        return "127.0.0.1"

    # The redirect goes to a name the resolver refuses: the second hop must be checked too.
    with pytest.raises(FetchError) as err:
        fetch_url(server + "/redirect-by-name", resolve=resolver)
    assert err.value.status == 403
    assert seen == ["127.0.0.1", "localhost"]


def test_redirect_loop_stops(server):
    with pytest.raises(FetchError, match="redirected more than"):
        fetch_url(server + "/loop", resolve=_loopback_ok, max_redirects=2)


def test_size_limit_with_and_without_content_length(server):
    with pytest.raises(FetchError) as err:
        fetch_url(server + "/img", resolve=_loopback_ok, max_bytes=100)
    assert err.value.status == 413
    with pytest.raises(FetchError) as err:
        fetch_url(server + "/big-chunked", resolve=_loopback_ok, max_bytes=10_000)
    assert err.value.status == 413


def test_deadline_covers_a_slow_drip(server):
    # /slow sends a byte every 50 ms for 2 s, then ends: a deadline per read would let it
    # through (status 200); only a deadline over the whole fetch gives 504.
    with pytest.raises(FetchError) as err:
        fetch_url(server + "/slow", resolve=_loopback_ok, timeout_s=0.5)
    assert err.value.status == 504


def test_http_errors_are_400(server):
    with pytest.raises(FetchError, match="HTTP 404") as err:
        fetch_url(server + "/missing", resolve=_loopback_ok)
    assert err.value.status == 400
