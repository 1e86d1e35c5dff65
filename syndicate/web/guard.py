"""What guards every public page: security headers, a body-size cap, rate limits.

The security headers are one table here for pages (:data:`SECURITY_HEADERS`)
and one for feeds (:data:`FEED_SECURITY_HEADERS`), with HSTS added by
:func:`security_headers` when ``base_url`` is https; deploy/nginx.conf and
deploy/Caddyfile send the same.

:class:`PageGuard` wraps each page route (ASGI middleware): it adds the
security headers, answers 413 to bodies over ``MAX_BODY`` and turns any
unexpected exception into a plain 500 page. :class:`SlidingWindow` counts
subscribe attempts per IP and per address in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("syndicate.web")

MAX_BODY = 64 * 1024
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Archived digests carry their CSS inline (css-inline), so their pages allow inline styles, nothing more.
CSP_DIGEST = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # page URLs carry tokens: never leak them
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
# Feeds are data, never a page: a browser that opens one runs nothing and loads nothing but inline style.
CSP_FEED = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
FEED_SECURITY_HEADERS = {
    "content-security-policy": CSP_FEED,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
HSTS = "max-age=31536000"


def security_headers(base_url: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """``headers`` (the page set by default), plus HSTS when the site is served over https.

    HSTS only ever on https: sent over http a browser ignores it, and on a
    localhost demo it would pin the port to TLS for a year.

    Example:
        >>> security_headers("https://news.example.org")["strict-transport-security"]
        'max-age=31536000'
        >>> "strict-transport-security" in security_headers("http://127.0.0.1:8080")
        False
    """
    out = dict(SECURITY_HEADERS if headers is None else headers)
    if base_url.lower().startswith("https://"):
        out["strict-transport-security"] = HSTS
    return out

# --- rate limits ---------------------------------------------------------------------------------


class SlidingWindow:
    """At most ``limit`` hits per ``window`` seconds for each key, kept in memory.

    Example:
        >>> clock = iter([0.0, 1.0, 2.0, 61.0]).__next__
        >>> w = SlidingWindow(2, 60.0, clock=clock)
        >>> [w.hit("1.2.3.4") for _ in range(4)]
        [True, True, False, True]
    """

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> bool:
        """Count one hit for ``key``; False when it is over the limit (the hit is not counted)."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            if len(self._hits) > self.max_keys:
                self._prune(now)
            return True

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
            del self._hits[key]


@dataclass(frozen=True)
class RateLimits:
    """Subscribe attempts allowed per client IP and per address (the address is hashed)."""

    per_ip: int = 30
    ip_window: float = 600.0
    per_address: int = 5
    address_window: float = 3600.0


# --- the guard around every page -----------------------------------------------------------------


class TooLarge(Exception):
    """The request body passed the cap while a handler was reading it."""


class PageGuard:
    """ASGI middleware: security headers, a body-size cap (413) and no tracebacks (500).

    ``render_error(status, path)`` returns the HTML body of the error page to
    send (it may read the store, so it runs in the thread pool).
    """

    def __init__(
        self, app: ASGIApp, render_error: Callable[[int, str], bytes], max_body: int = MAX_BODY,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.app = app
        self.render_error = render_error
        self.max_body = max_body
        self.headers = [(k.encode(), v.encode()) for k, v in (SECURITY_HEADERS if headers is None else headers).items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._error(413, scope, send_with_headers)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except TooLarge:
            if started:
                raise
            await self._error(413, scope, send_with_headers)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await self._error(500, scope, send_with_headers)

    async def _error(self, status: int, scope: Scope, send: Send) -> None:
        body = await run_in_threadpool(self.render_error, status, str(scope.get("path", "")))
        response = Response(body, status_code=status, media_type="text/html", headers={"connection": "close"})
        await response(scope, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
