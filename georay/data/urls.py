"""Fetch an image by URL without letting whoever wrote the URL reach our own network.

Used by the API (``image_url``) and by bulk jobs (``http(s)://`` rows of a manifest). A server
that fetches URLs for its callers is a classic server-side request forgery hole: a
caller asks for ``http://169.254.169.254/`` (cloud metadata) or ``http://10.0.0.5:6379/`` and
the server reaches what the caller cannot. So URL fetching is off unless the operator turns it
on, and then:

* only ``http``/``https`` URLs, without credentials in them;
* the host name is resolved once and **every** address must be public (not loopback, private,
  link-local, multicast, reserved, unspecified, carrier-grade NAT, or IPv4-mapped versions of
  those); the connection then goes to that checked address (the name is not resolved again,
  so a DNS answer that changes between check and use cannot redirect it), with the original
  host name in the ``Host`` header and for TLS (SNI and certificate check);
* redirects are followed by hand, a few hops at most, each hop checked the same way;
* the body is read in chunks up to ``max_bytes`` and the whole fetch has a deadline.

Standard library only (``http.client``), run in a thread by the async API and by the bulk
fetcher (:mod:`georay.data.fetch`). A bulk job may allow named networks (``--url-allow-networks
127.0.0.0/8``: a corpus on an internal mirror) through :func:`allowing_resolver`; everything else
stays refused.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

_REDIRECTS = (301, 302, 303, 307, 308)


# Upstream answers worth asking again: throttled, or a server (or its proxy) in trouble.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class FetchError(Exception):
    """A URL the API will not or could not fetch.

    Attributes
    ----------
    status
        The HTTP status for the API to answer (400, 403, 413, 504).
    upstream
        The status the URL's host answered, when it answered something other than 200.
    transient
        True when asking again later may succeed (a timeout, a dropped connection, an upstream
        5xx or 429); False for what will not change (refused host, 404, too large, bad URL).
    """

    def __init__(
        self,
        message: str,
        status: int = 400,
        *,
        transient: bool = False,
        upstream: int | None = None,
    ):
        super().__init__(message)
        self.status, self.transient, self.upstream = status, transient, upstream


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast IP address (what a public image host has)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve_public(host: str, port: int, allowed: tuple = ()) -> str:
    """Resolve ``host`` and return one of its addresses, if every address is public or in the
    ``allowed`` ``ipaddress`` networks.

    Raises
    ------
    FetchError
        The name does not resolve, or any address is not public (a name with one private
        address among public ones is refused too: which one a client would use is not ours to
        guess).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise FetchError(f"cannot resolve host {host!r}: {err}") from None
    addresses = sorted({info[4][0] for info in infos})
    if not addresses:
        raise FetchError(f"cannot resolve host {host!r}")
    blocked = [
        a
        for a in addresses
        if not is_public_address(a)
        and not any(ipaddress.ip_address(a.split("%")[0]) in net for net in allowed)
    ]
    if blocked:
        extra = " outside the allowed networks" if allowed else ""
        raise FetchError(
            f"URL host {host!r} resolves to a non-public address ({blocked[0]}){extra}", 403
        )
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to an already checked address; ``Host`` stays the URL's host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an already checked address; SNI and certificate check use the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def allowing_resolver(networks) -> Callable[[str, int], str]:
    """A ``resolve`` for :func:`fetch_url` that also accepts addresses in ``networks`` (CIDR
    strings such as ``"10.1.0.0/16"``; empty: public addresses only)."""
    allowed = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
    return functools.partial(resolve_public, allowed=allowed) if allowed else resolve_public


def _check_url(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http(s) image URLs are fetched, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise FetchError("image URL has no host")
    if parts.username or parts.password:
        raise FetchError("image URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("image URL has an invalid port") from None
    path = parts.path or "/"
    return parts.scheme, parts.hostname, port, path + (f"?{parts.query}" if parts.query else "")


def fetch_url(
    url: str,
    *,
    max_bytes: int = 10 << 20,
    timeout_s: float = 5.0,
    max_redirects: int = 3,
    resolve=resolve_public,
) -> bytes:
    """GET ``url`` under the rules in the module docstring and return the body.

    ``timeout_s`` bounds the whole fetch, redirects included; ``resolve`` is ``(host, port) ->
    address``, raising :class:`FetchError` for a refused host (:func:`allowing_resolver`).

    Raises
    ------
    FetchError
        With ``status`` 400 (bad URL, upstream error), 403 (non-public target), 413 (over
        ``max_bytes``) or 504 (over ``timeout_s``).
    """
    deadline = time.monotonic() + timeout_s
    for _ in range(max_redirects + 1):
        scheme, host, port, target = _check_url(url)
        address = resolve(host, port)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _too_slow(timeout_s)
        kind = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        conn = kind(host, port, address, timeout=remaining)
        try:
            conn.request("GET", target, headers={"User-Agent": "georay", "Accept": "image/*"})
            response = conn.getresponse()
            if response.status in _REDIRECTS and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location"))
                continue
            if response.status != 200:
                raise FetchError(
                    f"image URL answered HTTP {response.status}",
                    transient=response.status in TRANSIENT_STATUSES,
                    upstream=response.status,
                )
            return _read_limited(conn, response, max_bytes, deadline, timeout_s)
        except TimeoutError:
            raise _too_slow(timeout_s) from None
        except (OSError, http.client.HTTPException) as err:
            # A refused or reset connection, a truncated answer: the host may be back later.
            raise FetchError(
                f"cannot fetch image URL: {type(err).__name__}: {err}", transient=True
            ) from None
        finally:
            conn.close()
    raise FetchError(f"image URL redirected more than {max_redirects} times")


def _too_slow(timeout_s: float) -> FetchError:
    return FetchError(f"fetching the image URL took longer than {timeout_s} s", 504, transient=True)


def _read_limited(conn, response, max_bytes: int, deadline: float, timeout_s: float) -> bytes:
    """Read the body in chunks, each recv bounded by the time left (a slow drip cannot stall)."""
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise FetchError(f"image at URL is {length} bytes, over the {max_bytes}-byte limit", 413)
    chunks, size = [], 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _too_slow(timeout_s)
        if conn.sock is not None:
            conn.sock.settimeout(remaining)
        chunk = response.read1(64 << 10)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"image at URL is over the {max_bytes}-byte limit", 413)
        chunks.append(chunk)
    return b"".join(chunks)
