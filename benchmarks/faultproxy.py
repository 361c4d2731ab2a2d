"""A loopback HTTP proxy in front of a test S3 endpoint that adds latency and faults.

What a moto server on loopback lacks to stand in for S3 over a network: every request takes
``delay_s`` longer (S3's 20-50 ms per GET), a share of GETs answer ``503 SlowDown`` or have their
connection reset, and the whole endpoint can stop for a while (connections refused) and come
back. The benchmarks (``benchmarks.fetch``) and the tests (``tests/conftest.py``: the suite's S3
endpoint is this proxy, passing everything through unless a test sets faults) use it.

One request per connection: the request head is read, faults applied, then the connection is
piped to the upstream with ``Connection: close`` both ways (bodies pass through untouched,
chunked or not). Run alone: ``python -m benchmarks.faultproxy --upstream http://127.0.0.1:PORT
--port 0 --delay-ms 30`` prints its URL.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>faultproxy</RequestId></Error>"
)
_HOP_HEADERS = (b"connection", b"keep-alive", b"proxy-connection", b"expect")


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(head up to and including the blank line, bytes read past it); head empty at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", data
        data += chunk
        if len(data) > 1 << 20:
            raise ValueError("request head too large")
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def _closing_head(head: bytes) -> tuple[bytes, bool]:
    """``head`` with hop-by-hop headers replaced by ``Connection: close``; and whether it
    carried ``Expect: 100-continue``."""
    lines = head[:-4].split(b"\r\n")
    expect = any(line.lower().startswith(b"expect:") for line in lines[1:])
    kept = [lines[0]] + [
        line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS
    ]
    return b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n", expect


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (what a dropped connection looks like to the client)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := src.recv(65536):
            dst.sendall(chunk)


class FaultProxy:
    """The proxy; set the attributes to change its behaviour while it runs.

    Attributes
    ----------
    delay_s
        Added before every request is answered.
    fail_rate, reset_rate
        Share of GETs answered ``503 SlowDown`` / reset without an answer.
    counts
        ``requests``, ``gets``, ``slowdown``, ``reset``, ``refused_s`` (seconds stopped).
    """

    def __init__(self, upstream: str, port: int = 0, host: str = "127.0.0.1", seed: int = 0):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.host, self.port = host, port
        self.delay_s = self.fail_rate = self.reset_rate = 0.0
        self.counts: Counter = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._down_until = 0.0
        self._outage_after: tuple[int, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(512)
        self.port = sock.getsockname()[1]
        self._listener = sock

    def start(self) -> FaultProxy:
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self._listener:
            self._listener.close()

    def reset_faults(self) -> None:
        """Back to a plain pass-through (no delay, no faults, up)."""
        with self._lock:
            self.delay_s = self.fail_rate = self.reset_rate = 0.0
            self._outage_after = None
            self._down_until = 0.0
            self.counts.clear()

    def outage(self, seconds: float) -> None:
        """Stop accepting connections (they are refused) for ``seconds``, starting now."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            self.counts["refused_s"] += seconds

    def outage_after(self, gets: int, seconds: float) -> None:
        """Start an :meth:`outage` of ``seconds`` when the ``gets``-th GET from now arrives."""
        with self._lock:
            self._outage_after = (self.counts["gets"] + gets, seconds)

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            if self.down:
                if self._listener is not None:  # stopped: new connections are refused
                    self._listener.close()
                    self._listener = None
                time.sleep(0.02)
                continue
            if self._listener is None:
                self._listen()
            ready, _, _ = select.select([self._listener], [], [], 0.05)
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _fault(self, method: bytes) -> str | None:
        with self._lock:
            self.counts["requests"] += 1
            if method != b"GET":
                return None
            self.counts["gets"] += 1
            if self._outage_after and self.counts["gets"] >= self._outage_after[0]:
                seconds = self._outage_after[1]
                self._outage_after = None
                self._down_until = time.monotonic() + seconds
                self.counts["refused_s"] += seconds
            draw = self._rng.random()
            if draw < self.reset_rate:
                self.counts["reset"] += 1
                return "reset"
            if draw < self.reset_rate + self.fail_rate:
                self.counts["slowdown"] += 1
                return "slowdown"
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            head, rest = _read_head(client)
            if not head:
                client.close()
                return
            fault = self._fault(head.split(b" ", 1)[0])
            if self.delay_s:
                time.sleep(self.delay_s)
            if fault == "reset":
                _reset(client)
                return
            if fault == "slowdown":
                client.sendall(
                    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                    + f"Content-Length: {len(SLOW_DOWN)}\r\nConnection: close\r\n\r\n".encode()
                    + SLOW_DOWN
                )
                client.close()
                return
            head, expect = _closing_head(head)
            if expect:  # we read the body for the upstream, so we say continue
                client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            upstream = socket.create_connection(self.upstream)
            upstream.sendall(head + rest)
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            reply, more = _read_head(upstream)
            if reply:
                reply = _closing_head(reply)[0]
            client.sendall(reply + more)
            _pump(upstream, client)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="URL of the endpoint behind it")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    proxy = FaultProxy(args.upstream, args.port).start()
    proxy.delay_s = args.delay_ms / 1000
    print(proxy.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
