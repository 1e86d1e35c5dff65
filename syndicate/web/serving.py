"""Running the app in production: uvicorn's fast parser and loop, an access log, trusted proxies.

``syndicate serve`` calls :func:`uvicorn_config` and runs what it returns. The
ASGI stack, outermost first, is ``AccessLog`` (one line per request, tokens
redacted), uvicorn's ``ProxyHeadersMiddleware`` when ``--proxy-headers`` is on
(inside uvicorn, so the access log and the rate limits see the client that the
trusted proxy names), then :class:`~syndicate.web.feeds.DateHeader` and the app.

Only peers in ``forwarded_allow_ips`` are believed about ``X-Forwarded-For``
and ``X-Forwarded-Proto``; anyone else keeps their own socket address.
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..errors import InputError
from ..models import utcnow

LOG_FORMATS = ("clf", "json", "off")
REDACTED = "[redacted]"
# Path segments that are capabilities: whoever holds the URL can act as the subscriber.
# Everything after the prefix goes: a token may one day span segments, and nothing after it is worth a leak.
_TOKEN_PATH = re.compile(r"(?is)^(/(?:confirm|unsubscribe|preferences|r)/).+")
_SECRET_PARAMS = frozenset({"token", "t", "key", "sig", "signature", "code", "secret", "access_token"})
_SAFE = "/:@!$&'()*+,;=-._~%[]"  # kept as is; anything else (spaces, quotes, control, non-ASCII) %-encoded
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.lru_cache(maxsize=2048)  # feed readers ask for the same few URLs: format each once
def redact(path: str, query: str = "") -> str:
    """The request target as it may be logged: tokens in the path and the query replaced.

    Works on the decoded path (the one routes match), so ``/%75nsubscribe/…``
    is caught too, and %-encodes anything that could break a log line.

    Example:
        >>> redact("/unsubscribe/eyJ1Ijo1fQ.abc", "")
        '/unsubscribe/[redacted]'
        >>> redact("/r/AbC123/2", "token=s3cret&utm_source=mail")
        '/r/[redacted]?token=[redacted]&utm_source=mail'
        >>> redact('/tin tức"', "")
        '/tin%20t%E1%BB%A9c%22'
    """
    path = _TOKEN_PATH.sub(lambda m: m.group(1) + REDACTED, path, count=1)
    target = quote(path, safe=_SAFE)
    if query:
        parts = []
        for part in query.split("&"):
            name, eq, _ = part.partition("=")
            if eq and unquote_plus(name).strip().lower() in _SECRET_PARAMS:
                part = f"{name}={REDACTED}"
            parts.append(quote(part, safe=_SAFE))
        target += "?" + "&".join(parts)
    return target


@functools.lru_cache(maxsize=4)
def clf_time(moment: datetime) -> str:
    """``[01/Dec/2026:12:19:51 +0000]`` as Common Log Format writes it (UTC, English month names)."""
    m = moment.astimezone(UTC)
    return f"[{m.day:02d}/{_MONTHS[m.month - 1]}/{m.year}:{m:%H:%M:%S} +0000]"


@dataclass(slots=True)
class Hit:
    """One finished request, as the access log sees it."""

    client: str
    method: str
    target: str
    http_version: str
    status: int
    size: int
    seconds: float
    user_agent: str
    at: datetime


def format_clf(hit: Hit) -> str:
    """Common Log Format: ``host ident user [time] "request" status bytes``.

    Example:
        >>> from datetime import UTC
        >>> at = datetime(2026, 12, 1, 12, 19, 51, tzinfo=UTC)
        >>> format_clf(Hit("10.0.0.7", "GET", "/atom.xml", "1.1", 304, 0, 0.001, "curl", at))
        '10.0.0.7 - - [01/Dec/2026:12:19:51 +0000] "GET /atom.xml HTTP/1.1" 304 -'
    """
    size = str(hit.size) if hit.size else "-"
    return f'{hit.client} - - {clf_time(hit.at)} "{hit.method} {hit.target} HTTP/{hit.http_version}" {hit.status} {size}'


def format_json(hit: Hit) -> str:
    """One JSON object per line: time, client, method, path (redacted), status, bytes, ms, user agent."""
    return json.dumps({
        "time": hit.at.isoformat(), "client": hit.client, "method": hit.method, "path": hit.target,
        "protocol": f"HTTP/{hit.http_version}", "status": hit.status, "bytes": hit.size,
        "duration_ms": round(hit.seconds * 1000, 3), "user_agent": hit.user_agent,
    }, ensure_ascii=False)


class AccessLog:
    """ASGI middleware: one line per HTTP request, written by ``write`` once the response is finished.

    The Authorization and Cookie headers are never read; the path and query
    go through :func:`redact`. A request the app fails on is logged as 500.
    """

    def __init__(self, app: ASGIApp, write: Callable[[str], None], fmt: str = "clf",
                 clock: Callable[[], datetime] = utcnow) -> None:
        if fmt not in ("clf", "json"):
            raise ValueError(fmt)
        self.app = app
        self.write = write
        self.format = format_clf if fmt == "clf" else format_json
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        size = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self._log(scope, status, size, time.perf_counter() - started)

    def _log(self, scope: Scope, status: int, size: int, seconds: float) -> None:
        # read after the app ran: ProxyHeadersMiddleware (inside) may have replaced the client
        client = scope.get("client")
        agent = ""
        for key, value in scope.get("headers", ()):
            if key == b"user-agent":
                agent = value.decode("latin-1")
                break
        query = scope.get("query_string", b"").decode("latin-1")
        hit = Hit(
            client=client[0] if client else "-", method=scope.get("method", "-"),
            target=redact(scope.get("path", "/"), query), http_version=scope.get("http_version", "1.1"),
            status=status, size=size, seconds=seconds, user_agent=agent, at=self.clock(),
        )
        self.write(self.format(hit))


@dataclass(frozen=True)
class ServeOptions:
    """How ``syndicate serve`` runs: address, log, proxies. Defaults come from ``[serve]``."""

    host: str = "127.0.0.1"
    port: int = 8080
    access_log: str = "clf"  # clf | json | off
    proxy_headers: bool = False
    forwarded_allow_ips: str = "127.0.0.1"

    @classmethod
    def from_settings(cls, settings: Settings, **given: Any) -> ServeOptions:
        """``[serve]`` values, overridden by the command-line ones that were given (not None)."""
        values: dict[str, Any] = {
            "access_log": settings.serve_access_log, "proxy_headers": settings.serve_proxy_headers,
            "forwarded_allow_ips": settings.serve_forwarded_allow_ips,
        }
        values.update({k: v for k, v in given.items() if v is not None})
        options = cls(**values)
        if options.access_log not in LOG_FORMATS:
            raise InputError(f"--access-log is {options.access_log!r}; choose one of {', '.join(LOG_FORMATS)} "
                             "(nothing was started)")
        for item in options.forwarded_allow_ips.split(","):
            item = item.strip()
            try:
                if item != "*":
                    ipaddress.ip_network(item, strict=False)
            except ValueError:
                where = ("--forwarded-allow-ips" if given.get("forwarded_allow_ips") is not None
                         else f"{settings.source}: [serve] forwarded_allow_ips")
                raise InputError(
                    f"{where}: {item!r} is not an IP address or network such as 127.0.0.1 or "
                    "10.0.0.0/8 (nothing was started)"
                ) from None
        return options


def fast_parts() -> tuple[str, str]:
    """uvicorn's (http, loop): httptools and uvloop when importable (``uvicorn[standard]``), else the pure ones."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return http, loop


def uvicorn_config(settings: Settings, options: ServeOptions, write_log: Callable[[str], None] | None,
                   clock: Callable[[], datetime] = utcnow) -> Any:
    """The ``uvicorn.Config`` that ``syndicate serve`` runs (``write_log`` None: no access log).

    uvicorn's own access log and Date header are off: ours redacts tokens,
    and Date comes from the clock that dates Last-Modified.
    """
    import uvicorn

    from . import create_app
    from .feeds import with_clock

    app: ASGIApp = with_clock(create_app(settings), clock)
    if options.proxy_headers:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app = ProxyHeadersMiddleware(app, trusted_hosts=options.forwarded_allow_ips)  # type: ignore[arg-type,assignment]
    if write_log is not None and options.access_log != "off":
        app = AccessLog(app, write_log, options.access_log, clock)
    http, loop = fast_parts()
    return uvicorn.Config(
        app, host=options.host, port=options.port, http=http, loop=loop, ws="none", lifespan="on",
        log_level="warning", access_log=False, proxy_headers=False, server_header=False, date_header=False,
    )
