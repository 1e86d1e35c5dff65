"""The safe fetcher: one HTTP GET (or POST) of an untrusted URL, bounded in every way.

Used by ``article import URL``, by feed sources, and (``post_async``) by
webhook deliveries. Every request has:

- a TOTAL deadline (connect, every redirect hop and the whole body): a server
  dripping one byte every two seconds is cut off, not waited on forever;
- a size cap on the decoded body (a gzip bomb is cut off too);
- ``http://`` and ``https://`` only, at every hop;
- at most ``max_redirects`` redirects, each to the same scheme, host and port
  (or an upgrade from ``http`` to ``https`` on the same host and default ports)
  unless ``redirects = "any"``;
- no loopback, private, link-local or otherwise non-public address unless
  ``allow_private`` (``[fetch] allow_private = true``; the tests set it);
- a User-Agent naming syndicate and its version, gzip, and conditional GET:
  pass the ``etag``/``last_modified`` of the last answer and a ``304`` comes
  back as ``FetchResult.status == 304`` with an empty body.

Anything else is a :class:`FetchError` whose message is the reason only (the
caller names the URL), e.g. ``HTTP 404 Not Found`` or ``the server at
127.0.0.1:2525 does not speak HTTP``.

The address check sits in the network backend httpx connects through: the
host is resolved once, every address it has is checked, and the connection is
made to a checked address, so a DNS answer that changes between a check and
the connection (rebinding) cannot reach a private host.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from . import __version__
from .errors import InputError
from .models import utcnow

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["FetchError", "FetchPolicy", "FetchResult", "FetchSession", "default_user_agent", "fetch", "fetch_async",
           "post_async"]

MB = 1_000_000
REDIRECTS = (301, 302, 303, 307, 308)
TEMPORARY = (408, 425, 429, 500, 502, 503, 504)
DEFAULT_PORTS = {"http": 80, "https": 443}


def default_user_agent(base_url: str = "") -> str:
    """``syndicate/0.1.0 (+https://news.example.org)``: who is fetching, and where to ask.

    Example:
        >>> default_user_agent("https://news.example.org")
        'syndicate/0.1.0 (+https://news.example.org)'
    """
    return f"syndicate/{__version__}" + (f" (+{base_url})" if base_url else "")


@dataclass(frozen=True)
class FetchPolicy:
    """The limits of one fetch (``[fetch]`` in the config)."""

    timeout: float = 30.0  # total seconds for the whole request
    max_bytes: int = 20 * MB
    max_redirects: int = 5
    redirects: str = "same-host"  # same-host | any
    allow_private: bool = False
    user_agent: str = field(default_factory=default_user_agent)

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            timeout=settings.fetch_timeout,
            max_bytes=int(settings.fetch_max_mb * MB),
            max_redirects=settings.fetch_max_redirects,
            redirects=settings.fetch_redirects,
            allow_private=settings.fetch_allow_private,
            user_agent=settings.fetch_user_agent or default_user_agent(settings.base_url),
        )


@dataclass(frozen=True)
class FetchResult:
    """What a fetch brought back. ``status`` is 2xx, or 304 (not modified: ``body`` is empty)."""

    url: str  # the final URL, after redirects
    status: int
    body: bytes = b""
    content_type: str = ""
    etag: str = ""
    last_modified: str = ""
    retry_after: float | None = None  # seconds a 429/503 answer to a POST asked to wait

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class FetchError(InputError):
    """A URL that could not be fetched. ``temporary`` says whether a later try may succeed;
    ``retry_after`` is the seconds a 429/503 asked to wait (None if it did not say)."""

    def __init__(self, message: str, *, status: int | None = None, temporary: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.temporary = temporary
        self.retry_after = retry_after


def fetch(url: str, policy: FetchPolicy | None = None, *, etag: str = "", last_modified: str = "",
          accept: str = "*/*") -> FetchResult:
    """:func:`fetch_async` for synchronous callers (runs its own event loop).

    Example:
        >>> fetch("file:///etc/passwd")
        Traceback (most recent call last):
        ...
        syndicate.fetcher.FetchError: only http:// and https:// URLs can be fetched, not file://
    """
    return asyncio.run(fetch_async(url, policy, etag=etag, last_modified=last_modified, accept=accept))


async def fetch_async(url: str, policy: FetchPolicy | None = None, *, etag: str = "", last_modified: str = "",
                      accept: str = "*/*", session: FetchSession | None = None) -> FetchResult:
    """GET ``url`` within ``policy``; FetchError saying why not. Many fetches share one
    :class:`FetchSession` (pass ``session``); without one, a session lives for this request."""
    if session is not None:
        return await session.get(url, etag=etag, last_modified=last_modified, accept=accept)
    async with FetchSession(policy or FetchPolicy(), connections=1) as own:
        return await own.get(url, etag=etag, last_modified=last_modified, accept=accept)


async def post_async(url: str, body: bytes, policy: FetchPolicy | None = None, *,
                     headers: dict[str, str] | None = None) -> FetchResult:
    """POST ``body`` to ``url`` within ``policy`` (the same deadline and address rules as a GET).

    Unlike a GET, every HTTP answer comes back as a FetchResult whatever its
    status (the caller decides what a status means), redirects are not
    followed, and the answer's body is read only up to ``policy.max_bytes``
    (the rest is dropped, not an error). FetchError for anything that is not
    an HTTP answer: a refused address, no connection, the deadline.
    """
    policy = policy or FetchPolicy()
    _check_url(url)
    _check_scheme(url)
    if not _origin(url)[1]:
        raise FetchError("the URL has no host")
    sent = {"User-Agent": policy.user_agent, "Accept": "*/*", **(headers or {})}
    async with httpx.AsyncClient(headers=sent, follow_redirects=False, trust_env=False, timeout=policy.timeout,
                                 transport=_transport(policy)) as client:
        with _http_errors(url, policy):
            async with asyncio.timeout(policy.timeout):
                async with client.stream("POST", url, content=body) as response:
                    answer = bytearray()
                    async for chunk in response.aiter_bytes():
                        answer += chunk[: policy.max_bytes - len(answer)]
                        if len(answer) >= policy.max_bytes:
                            break
                    return FetchResult(url=url, status=response.status_code, body=bytes(answer),
                                       content_type=response.headers.get("content-type", ""),
                                       retry_after=_retry_after(response.headers.get("retry-after", "")))


class FetchSession:
    """Many fetches under one policy, at most ``connections`` at a time, over kept-alive connections.

    The session has ``connections`` lanes, each an httpx client with a one-connection pool; a
    request takes a free lane (one that last spoke to the same host if there is one), so a round
    of conditional GETs to the same sites costs one TCP connection per lane, not one per request.
    (One client with a pool of N connections costs twice the CPU per request: httpcore checks every
    pooled connection on each request and response; see benchmarks/fetch.py.) Waiting for a lane
    is the session's bound on concurrency and does not count against a request's deadline.

    Every request still gets the whole policy: the total deadline, the size cap, the redirect rules
    and, when a connection is made, the address check (a kept connection was checked when opened).

    Example:
        >>> async def two():  # doctest: +SKIP
        ...     async with FetchSession(FetchPolicy(), connections=8) as session:
        ...         return [await session.get(u) for u in ("https://example.org/a", "https://example.org/b")]
    """

    def __init__(self, policy: FetchPolicy, *, connections: int = 16) -> None:
        self.policy = policy
        self.connections = max(1, connections)
        self._free: list[tuple[str, httpx.AsyncClient]] = []  # (origin it last spoke to, client)
        self._slots = asyncio.Semaphore(self.connections)
        self._open = False

    async def __aenter__(self) -> FetchSession:
        self._free = [("", self._client()) for _ in range(self.connections)]
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = False
        clients, self._free = [c for _, c in self._free], []
        for client in clients:
            await client.aclose()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            headers={"User-Agent": self.policy.user_agent, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=False, trust_env=False, timeout=self.policy.timeout, transport=_transport(self.policy),
        )

    def _take(self, origin: str) -> httpx.AsyncClient:
        for i, (last, _client) in enumerate(self._free):
            if last == origin:
                return self._free.pop(i)[1]
        return self._free.pop()[1]

    async def get(self, url: str, *, etag: str = "", last_modified: str = "", accept: str = "*/*") -> FetchResult:
        """GET ``url``: a FetchResult (2xx, or 304 to a conditional request) or FetchError saying why not."""
        _check_url(url)
        _check_scheme(url)
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        async with self._slots:
            if not self._open:
                raise RuntimeError("FetchSession.get outside `async with FetchSession(...)`")
            origin = "{}://{}:{}".format(*_origin(url))
            client = self._take(origin)
            try:
                return await self._get(client, url, headers)
            finally:
                self._free.append((origin, client))  # its kept connection (if any) leads there

    async def _get(self, client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> FetchResult:
        policy = self.policy
        with _http_errors(url, policy):
            async with asyncio.timeout(policy.timeout):
                return await _follow(client, url, policy, headers)
        raise AssertionError("unreachable")  # pragma: no cover (the block returns or raises)


@contextlib.contextmanager
def _http_errors(url: str, policy: FetchPolicy) -> Iterator[None]:
    """Turn what httpx (and the total deadline) raise into a FetchError giving the reason."""
    try:
        yield
    except (TimeoutError, httpx.TimeoutException):
        raise FetchError(f"no complete answer within {policy.timeout:g} s (the total deadline)",
                         temporary=True) from None
    except httpx.RemoteProtocolError as exc:
        if "location header" in str(exc).lower():  # httpx parses a 3xx Location even when not following it
            raise FetchError("refused a redirect: its Location header is not a valid URL") from None
        where = urlsplit(url)
        raise FetchError(f"the server at {where.netloc} does not speak HTTP (or broke off its answer)",
                         temporary=True) from None
    except httpx.ConnectError as exc:
        raise FetchError(f"cannot connect: {_reason(exc)}", temporary=True) from None
    except httpx.DecodingError:
        raise FetchError("the body's gzip/deflate encoding is corrupt") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"cannot fetch: {_reason(exc)}", temporary=True) from None


async def _follow(client: httpx.AsyncClient, url: str, policy: FetchPolicy, headers: dict[str, str]) -> FetchResult:
    current = url
    conditional = "If-None-Match" in headers or "If-Modified-Since" in headers
    for _hop in range(policy.max_redirects + 1):
        if not _origin(current)[1]:
            raise FetchError("the URL has no host")
        async with client.stream("GET", current, headers=headers) as response:
            status = response.status_code
            if status in REDIRECTS:
                location = response.headers.get("location", "").strip()
                if not location:
                    raise FetchError(f"HTTP {status} redirect without a Location header", status=status)
                try:
                    target = urljoin(current, location)
                except ValueError:
                    raise FetchError(f"refused a redirect to {location!r}: not a valid URL") from None
                _check_redirect(current, target, policy)
                _check_url(target)
                current = target
                continue
            if status == 304:
                if not conditional:
                    raise FetchError("HTTP 304 Not Modified to a request that was not conditional", status=304)
                # A 304 has no body; reading its (empty) end lets the connection serve the next request.
                await response.aread()
                return FetchResult(url=current, status=304, etag=response.headers.get("etag", ""),
                                   last_modified=response.headers.get("last-modified", ""))
            if not 200 <= status < 300:
                raise FetchError(
                    f"HTTP {status} {response.reason_phrase}".rstrip(), status=status, temporary=status in TEMPORARY,
                    retry_after=_retry_after(response.headers.get("retry-after", "")),
                )
            body = await _read_capped(response, policy.max_bytes)
            return FetchResult(
                url=current, status=status, body=body, content_type=response.headers.get("content-type", ""),
                etag=response.headers.get("etag", ""), last_modified=response.headers.get("last-modified", ""),
            )
    raise FetchError(f"more than {policy.max_redirects} redirects")


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    too_big = f"the body is larger than {limit / MB:g} MB (the [fetch] max_mb cap)"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FetchError(too_big)
    body = bytearray()
    async for chunk in response.aiter_bytes():  # decoded: a gzip bomb counts at its real size
        body += chunk
        if len(body) > limit:
            raise FetchError(too_big)
    return bytes(body)


def _check_url(url: str) -> None:
    """A URL httpx can request, or FetchError naming it (bad IPv6 brackets, IDNA, control characters...)."""
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError on a bad port or IPv6 literal
        httpx.URL(url).host  # noqa: B018 - decoding the host raises on bad IDNA
    except (httpx.InvalidURL, UnicodeError):  # UnicodeError (IDNA) before its base class ValueError
        raise FetchError(f"{url!r} is not a valid URL") from None
    except ValueError:
        if _bad_port(url):
            raise FetchError(f"{url!r} has an invalid port") from None
        raise FetchError(f"{url!r} is not a valid URL") from None


def _bad_port(url: str) -> bool:
    try:
        urlsplit(url)
    except ValueError:
        return False  # not the port: the brackets of an IPv6 literal
    return True


def _check_scheme(url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in DEFAULT_PORTS:
        what = f"{scheme}://" if scheme else "a relative URL"
        raise FetchError(f"only http:// and https:// URLs can be fetched, not {what}")


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        raise FetchError(f"{url!r} has an invalid port") from None
    return scheme, (parts.hostname or "").lower(), port


def _check_redirect(current: str, target: str, policy: FetchPolicy) -> None:
    scheme = urlsplit(target).scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise FetchError(f"refused a redirect to {target} (only http:// and https:// are followed)")
    if policy.redirects == "any":
        return
    here, there = _origin(current), _origin(target)
    upgrade = here == ("http", there[1], 80) and there == ("https", here[1], 443)
    if here != there and not upgrade:
        raise FetchError(
            f"refused a redirect to {target}: another host or port than {here[0]}://{here[1]}:{here[2]} "
            '(set [fetch] redirects = "any" to follow it)'
        )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building one loads the CA bundle (~20 ms of CPU),
    which was most of what a 304 cost when each fetch built two."""
    return httpx.create_ssl_context()


def _transport(policy: FetchPolicy) -> httpx.AsyncHTTPTransport:
    """httpx's transport, connecting through :class:`_GuardedBackend` (httpx has no public
    hook for the network backend; the pool is rebuilt with the same public arguments).
    One connection, kept idle for 5 s: long enough for the next request of a round to reuse it."""
    transport = httpx.AsyncHTTPTransport(verify=_ssl_context(), trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=_ssl_context(), max_connections=1, max_keepalive_connections=1,
        keepalive_expiry=5.0, network_backend=_GuardedBackend(policy),
    )
    return transport


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves each host once, refuses non-public addresses (unless allowed), connects to a checked one."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in await _checked_addresses(host, port, self._policy):  # e.g. ::1 then 127.0.0.1
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # _checked_addresses never returns an empty list
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise FetchError("unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _checked_addresses(host: str, port: int, policy: FetchPolicy) -> list[str]:
    """The addresses to connect to for ``host``, in the resolver's order; all must be public."""
    host = host.strip("[]")
    literal = True
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        literal = False
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError(f"cannot resolve the host {host!r} ({exc})", temporary=True) from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise FetchError(f"cannot resolve the host {host!r}", temporary=True)
    if not policy.allow_private:
        for address in sorted(addresses, key=str):
            kind = _non_public(address)
            if kind:
                shown = host if literal else f"{host} ({address})"
                raise FetchError(
                    f"refused: {shown} is a {kind} address (set [fetch] allow_private = true to allow it)"
                )
    return [str(a) for a in addresses]


def _non_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, test in (
        ("loopback", address.is_loopback), ("link-local", address.is_link_local),
        ("private", address.is_private), ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified), ("reserved", address.is_reserved),
    ):
        if test:
            return kind
    return ""


def _retry_after(value: str) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None when absent or absurd."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(min(int(value), 86_400 * 7))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    try:
        return max(0.0, min((when - utcnow()).total_seconds(), 86_400 * 7))
    except OverflowError:
        return None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
