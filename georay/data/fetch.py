"""Read many images at once: local files, ``s3://`` objects and ``http(s)://`` URLs.

Object stores answer a GET in 20-50 ms whatever its size, so reading one object after another
leaves a task waiting on the network most of the time. :func:`fetch_all` keeps up to
``concurrency`` reads in flight (threads: the waiting releases the GIL), at most
``host_concurrency`` of them to any one http(s) host, and returns when all are done, so memory
stays what the caller asked for (a block of rows) and nothing runs behind its back.

Transient failures (a 503 SlowDown or 5xx, a throttle, a reset or refused connection, a timeout)
are retried ``attempts`` times in all, with exponential backoff and jitter; what will not change
(missing, refused, too large, access denied) is not. A row that still fails gets a reason that
says which it was:

* ``missing file: URI`` (local or S3 object absent, HTTP 404/410);
* ``file too large: ...`` (over ``max_bytes``; S3 and local sizes are checked before reading);
* ``read failed, transient: ... (gave up after N attempts)``;
* ``read failed, permanent: ...``.

S3 is read with boto3 (one GET per object; pyarrow's input stream sends a HEAD first), its own
retries off so every retry is counted here; http(s) with :func:`georay.data.urls.fetch_url`.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

from georay.config import at_least
from georay.data.storage import filesystem_for, is_s3, s3_endpoint_region
from georay.data.urls import FetchError, allowing_resolver, fetch_url

# S3 error codes worth asking again (besides any 5xx): throttling and server-side timeouts.
_S3_TRANSIENT_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                                 "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable",
                                 "TooManyRequests"})  # fmt: skip
_BACKOFF_CAP_S = 10.0
READ_FAILED = "read failed"
MISSING_FILE = "missing file"


@dataclass(frozen=True)
class FetchPolicy:
    """How :func:`fetch_all` reads (the bulk jobs' ``--fetch-*`` and ``--url-*`` flags).

    Attributes
    ----------
    concurrency, host_concurrency
        Reads in flight at once per call, and to one http(s) host.
    attempts
        Tries per object when the error is transient (1 = no retry).
    backoff_s
        Wait before the first retry: doubled for each further one (:func:`backoff_s`).
    timeout_s
        Deadline of one try (connect and read; for http(s) the whole fetch with redirects).
    max_bytes
        Larger objects fail as ``file too large``.
    allow_networks, max_redirects
        CIDR networks http(s) URLs may reach besides public ones; redirect hops followed.
    """

    concurrency: int = 32
    attempts: int = 4
    backoff_s: float = 0.2
    timeout_s: float = 30.0
    max_bytes: int = 64 << 20
    host_concurrency: int = 8
    allow_networks: tuple[str, ...] = ()
    max_redirects: int = 3

    def __post_init__(self) -> None:
        at_least(self, 1, "concurrency", "attempts", "max_bytes", "host_concurrency")
        at_least(self, 0, "backoff_s", "max_redirects")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        allowing_resolver(self.allow_networks)  # a bad CIDR fails here, not in a worker


@dataclass
class Fetched:
    """One object's outcome: ``data`` or an ``error`` reason; ``retries`` it took."""

    data: bytes | None
    error: str | None = None
    retries: int = 0
    transient: bool = False


class _Failed(Exception):
    """A read that failed; ``transient`` if asking again may help."""

    def __init__(self, detail: str, transient: bool):
        super().__init__(detail)
        self.transient = transient


class _TooLarge(Exception):
    pass


def is_read_failure(reason: str | None) -> bool:
    """True for an error reason :func:`fetch_all` gives a row it could not read (missing file
    or read failed), as opposed to one about the bytes themselves (too large, not an image)."""
    return bool(reason) and reason.startswith((READ_FAILED, MISSING_FILE))


# --- readers: one try each; raise FileNotFoundError, _TooLarge or _Failed ---------------------


def _read_local(uri: str, policy: FetchPolicy) -> bytes:
    path = filesystem_for(uri)[1]
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > policy.max_bytes:  # before reading it into memory
                raise _TooLarge(f"{size} bytes > {policy.max_bytes}")
            return f.read()
    except (FileNotFoundError, _TooLarge):
        raise
    except TimeoutError as err:  # a network filesystem
        raise _Failed(f"{type(err).__name__}: {err}", transient=True) from None
    except OSError as err:
        raise _Failed(f"{type(err).__name__}: {err}", transient=False) from None


_CLIENT_LOCK = threading.Lock()


def _s3_client(pool: int, timeout_s: float):
    """The process's boto3 S3 client (thread-safe), made once by the first reader thread (it
    takes a second), not by each of them at once."""
    with _CLIENT_LOCK:
        return _new_s3_client(pool, timeout_s)


@cache
def _new_s3_client(pool: int, timeout_s: float):
    import boto3
    from botocore.config import Config

    endpoint, region = s3_endpoint_region()
    config = Config(
        max_pool_connections=pool,
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"total_max_attempts": 1},  # fetch_all retries, and counts them
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=config
    )


def _read_s3(uri: str, policy: FetchPolicy) -> bytes:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
        ResponseStreamingError,
    )

    bucket, _, key = uri.split("://", 1)[1].partition("/")
    client = _s3_client(policy.concurrency, policy.timeout_s)
    transient_errors = (ConnectionError, HTTPClientError, IncompleteReadError,
                        ResponseStreamingError)  # fmt: skip
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        size = response.get("ContentLength")
        if size is not None and size > policy.max_bytes:
            body.close()  # never pull an oversized object into memory
            raise _TooLarge(f"{size} bytes > {policy.max_bytes}")
        return body.read()
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in ("NoSuchKey", "NotFound", "404") or status == 404:
            raise FileNotFoundError(uri) from None
        transient = status >= 500 or status == 429 or code in _S3_TRANSIENT_CODES
        raise _Failed(f"S3 {code or 'error'} (HTTP {status})", transient) from None
    except transient_errors as err:
        raise _Failed(f"{type(err).__name__}: {err}", transient=True) from None
    except BotoCoreError as err:  # credentials, bad parameters: asking again will not help
        raise _Failed(f"{type(err).__name__}: {err}", transient=False) from None


def _read_http(uri: str, policy: FetchPolicy) -> bytes:
    try:
        return fetch_url(
            uri,
            max_bytes=policy.max_bytes,
            timeout_s=policy.timeout_s,
            max_redirects=policy.max_redirects,
            resolve=allowing_resolver(policy.allow_networks),
        )
    except FetchError as err:
        if err.upstream in (404, 410):
            raise FileNotFoundError(f"{uri} (HTTP {err.upstream})") from None
        if err.status == 413:
            raise _TooLarge(str(err)) from None
        raise _Failed(str(err), err.transient) from None


def is_http(uri: str) -> bool:
    """True for ``http://`` and ``https://`` URLs."""
    return str(uri).lower().startswith(("http://", "https://"))


def _reader(uri: str) -> Callable[[str, FetchPolicy], bytes]:
    if is_s3(uri):
        return _read_s3
    if is_http(uri):
        return _read_http
    return _read_local


# --- one object, with retries --------------------------------------------------------------


def backoff_s(policy: FetchPolicy, retry: int) -> float:
    """The wait before retry number ``retry`` (1-based): exponential, capped, jittered."""
    full = min(_BACKOFF_CAP_S, policy.backoff_s * 2 ** (retry - 1))
    return random.uniform(full / 2, full)


def fetch_one(
    uri: str, policy: FetchPolicy, sleep: Callable[[float], None] = time.sleep
) -> Fetched:
    """Read ``uri`` under ``policy`` (retrying transient errors); never raises."""
    read = _reader(uri)
    detail = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            return Fetched(read(uri, policy), retries=attempt - 1)
        except FileNotFoundError as err:
            where = str(err) if is_http(uri) else uri
            return Fetched(None, f"{MISSING_FILE}: {where}", attempt - 1)
        except _TooLarge as err:
            return Fetched(None, f"file too large: {err}", attempt - 1)
        except _Failed as err:
            if not err.transient:
                return Fetched(None, f"{READ_FAILED}, permanent: {err}", attempt - 1)
            detail = str(err)
        except Exception as err:  # a reader bug must cost one row, not the block
            return Fetched(None, f"{READ_FAILED}, permanent: {type(err).__name__}: {err}",
                           attempt - 1)  # fmt: skip
        if attempt < policy.attempts:
            sleep(backoff_s(policy, attempt))
    reason = f"{READ_FAILED}, transient: {detail} (gave up after {policy.attempts} attempts)"
    return Fetched(None, reason, policy.attempts - 1, transient=True)


# --- many objects ----------------------------------------------------------------------------


def _host(uri: str) -> str | None:
    """The host an http(s) URI is limited by; None for S3 and local reads (no per-host cap)."""
    return (urlsplit(uri).hostname or "") if is_http(uri) else None


class _Queue:
    """Work handed to the reader threads: any pending object whose host has a free slot."""

    def __init__(self, items: list[tuple[int, str]], per_host: int):
        self.pending: dict[str | None, deque] = {}
        for i, uri in items:
            self.pending.setdefault(_host(uri), deque()).append((i, uri))
        self.inflight: Counter = Counter()
        self.per_host = per_host
        self.cond = threading.Condition()

    def take(self) -> tuple[str | None, int, str] | None:
        with self.cond:
            while True:
                if not any(self.pending.values()):
                    return None
                for host, queue in self.pending.items():
                    if queue and (host is None or self.inflight[host] < self.per_host):
                        self.inflight[host] += 1
                        return (host, *queue.popleft())
                self.cond.wait()  # every pending host is at its limit

    def done(self, host: str | None) -> None:
        with self.cond:
            self.inflight[host] -= 1
            self.cond.notify_all()


def fetch_all(uris: Sequence[str], policy: FetchPolicy) -> tuple[list[Fetched], dict]:
    """Read every URI of ``uris`` (local, ``s3://``, ``http(s)://``, mixed freely) with up to
    ``policy.concurrency`` reads in flight.

    Returns
    -------
    (list of Fetched, dict)
        One result per URI, in order; and counts: ``objects``, ``bytes``, ``retries`` (tries
        beyond the first, all objects), ``retried_ok`` (objects read after a retry),
        ``failed_transient`` and ``failed_permanent`` (objects that still failed), ``seconds``.
    """
    start = time.perf_counter()
    results: list[Fetched | None] = [None] * len(uris)
    queue = _Queue(list(enumerate(uris)), policy.host_concurrency)

    def work() -> None:
        while (item := queue.take()) is not None:
            host, i, uri = item
            try:
                results[i] = fetch_one(uri, policy)
            finally:
                queue.done(host)

    threads = [threading.Thread(target=work, daemon=True)
               for _ in range(min(policy.concurrency, len(uris)))]  # fmt: skip
    if len(threads) == 1:
        work()  # no thread for a single reader
    else:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    done = [r for r in results if r is not None]
    return done, _counts(done, time.perf_counter() - start)


def _counts(results: list[Fetched], seconds: float) -> dict:
    failed = [r for r in results if r.data is None]
    return {
        "objects": len(results),
        "bytes": sum(len(r.data) for r in results if r.data is not None),
        "retries": sum(r.retries for r in results),
        "retried_ok": sum(r.retries > 0 for r in results if r.data is not None),
        "failed_transient": sum(r.transient for r in failed),
        "failed_permanent": sum(not r.transient for r in failed),
        "seconds": round(seconds, 3),
    }
