"""Feeds over HTTP the way feed readers expect: built once per store change, 304 cheap.

:class:`FeedCache` keeps every served document's bytes, gzip bytes, strong
``ETag`` and ``Last-Modified``, tagged with a *generation*. The generation
moves only when what the feeds show changes, which is one of three things:

* the store's change counter (bumped by triggers on every write to articles
  and lists, see ``store/changes.py``), read only when SQLite's
  ``PRAGMA data_version`` says another connection committed;
* the embargo horizon: the newest article whose ``published`` time has
  passed, re-read only once the clock reaches the next embargoed article;
* the month running on the site's calendar (a month that ends becomes an archive).

The ETag is derived from the bytes (a SHA-256 prefix), so one ETag never
names two bodies. ``Last-Modified`` is the time the bytes last changed, kept
per path in the store (``feed_state``) so it survives restarts; it never goes
back and never passes the clock that also writes ``Date`` (:class:`DateHeader`).
A conditional GET for a current document is answered by :class:`FeedEndpoint`,
a plain ASGI app, without touching Starlette's request machinery or a thread.

The clock is a plain ``() -> datetime`` (``FeedCache.clock``): ``serve`` uses the
real one; a test hands in its own clock, through :func:`with_clock`, to move time.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import anyio.to_thread
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..feed_build import FeedDocument, build_group, open_month
from ..feeds import CONTENT_TYPES, FeedPath, month_bounds, month_of, parse_path
from ..models import utcnow
from ..store import FeedState, Store, open_store
from .context import WebContext
from .guard import FEED_SECURITY_HEADERS, security_headers

CURRENT_MAX_AGE = 60  # seconds a reader may reuse a subscription feed without asking
ARCHIVE_MAX_AGE = 86400  # finished months rarely change
MAX_ENTRIES = 20000  # cached documents (and misses) before the cache starts afresh

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Entry:
    """One servable document, or a remembered miss (``body`` None)."""

    generation: int
    body: bytes | None = None
    gzipped: bytes = b""
    etag: bytes = b""
    etag_gz: bytes = b""
    last_modified: bytes = b""
    last_modified_ts: float = 0.0
    ambiguous: bool = False  # the bytes changed twice within the Last-Modified second
    content_type: bytes = b""
    cache_control: bytes = b""
    # the response headers, encoded once per body: (identity, gzip) for a 304, then for a 200
    not_modified: tuple[tuple[tuple[bytes, bytes], ...], tuple[tuple[bytes, bytes], ...]] = ((), ())
    ok: tuple[tuple[tuple[bytes, bytes], ...], tuple[tuple[bytes, bytes], ...]] = ((), ())


def _whole_second(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(microsecond=0)


def next_state(path: str, etag: str, previous: FeedState | None, updated: datetime, now: datetime) -> FeedState:
    """The (ETag, Last-Modified) of ``path`` now that its bytes hash to ``etag``.

    Unchanged bytes keep their Last-Modified. Changed bytes get ``now``, or,
    when the clock has not passed the previous Last-Modified (two changes in
    one second), keep it and are marked ambiguous so If-Modified-Since cannot
    hand out a 304 for either body. The first bytes ever seen are dated by
    their newest item, never later than ``now``.

    Example:
        >>> t = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
        >>> first = next_state("/a", "e1", None, t.replace(hour=9), t)
        >>> first.last_modified == t
        True
        >>> next_state("/a", "e2", first, t, t).ambiguous
        True
    """
    now = _whole_second(now)
    if previous is not None and previous.etag == etag:
        return previous
    if previous is None:
        return FeedState(path, etag, min(_whole_second(updated), now))
    if now > previous.last_modified:
        return FeedState(path, etag, now)
    return FeedState(path, etag, previous.last_modified, ambiguous=True)


Headers = tuple[tuple[bytes, bytes], ...]


def _entry(doc: FeedDocument, generation: int, state: FeedState, max_age: int, security: Headers = ()) -> Entry:
    """The cached answer for one body: its bytes, gzip bytes, validators and every header, encoded once."""
    gzipped = gzip.compress(doc.body, compresslevel=6, mtime=0)
    etag = state.etag.encode("ascii")
    etag_gz = (state.etag[:-1] + '-gz"').encode("ascii")
    last_modified = format_datetime(state.last_modified, usegmt=True).encode("ascii")
    cache_control = f"public, max-age={max_age}".encode("ascii")
    content_type = CONTENT_TYPES[doc.fmt].encode("ascii")

    def common(tag: bytes) -> Headers:
        return ((b"etag", tag), (b"last-modified", last_modified), (b"cache-control", cache_control),
                (b"vary", b"Accept-Encoding"), *security)

    plain, zipped = common(etag), common(etag_gz)
    return Entry(
        generation=generation,
        body=doc.body,
        gzipped=gzipped,
        etag=etag,
        etag_gz=etag_gz,
        last_modified=last_modified,
        last_modified_ts=state.last_modified.timestamp(),
        ambiguous=state.ambiguous,
        content_type=content_type,
        cache_control=cache_control,
        not_modified=(plain, zipped),
        ok=(
            (*plain, (b"content-type", content_type), (b"content-length", str(len(doc.body)).encode("ascii"))),
            (*zipped, (b"content-type", content_type), (b"content-length", str(len(gzipped)).encode("ascii")),
             (b"content-encoding", b"gzip")),
        ),
    )


def etag_of(body: bytes) -> str:
    """A strong ETag made from the bytes alone: the same body, the same tag; another body, another tag."""
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


class FeedCache:
    """Feed documents by URL path, rebuilt only when what they show changed."""

    def __init__(self, ctx: WebContext, clock: Clock = utcnow) -> None:
        self.ctx = ctx
        self.clock = clock
        self.generation = 0
        self._probe: Store | None = None
        self._version: int | None = None
        self._key: tuple[object, ...] | None = None
        self._month_ends: datetime | None = None
        self._next_embargo: datetime | None = None
        self._docs: dict[str, Entry] = {}
        self._key_lock: asyncio.Lock | None = None
        self._build_locks: dict[tuple[str, str | None], asyncio.Lock] = {}
        self.security: Headers = tuple(
            (k.encode(), v.encode()) for k, v in security_headers(ctx.settings.base_url, FEED_SECURITY_HEADERS).items()
        )

    @property
    def known(self) -> dict[str, Entry]:
        """Every feed path asked for so far (documents and remembered misses), by path."""
        return self._docs

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def _fresh(self, version: int, now: datetime) -> bool:
        """True while nothing the feeds show can have moved: no commit, no embargo ended, same month."""
        if version != self._version or self._month_ends is None or now >= self._month_ends:
            return False
        return self._next_embargo is None or now < self._next_embargo

    async def current_generation(self) -> int:
        """The generation now: one PRAGMA and a clock reading when nothing changed."""
        if self._probe is None:
            self._probe = open_store(self.ctx.settings.db)
        now = self.clock()
        if self._fresh(self._probe.data_version(), now):
            return self.generation
        if self._key_lock is None:
            self._key_lock = asyncio.Lock()
        async with self._key_lock:
            probe = self._probe
            version = probe.data_version()
            if not self._fresh(version, now):
                month = month_of(now, self.ctx.settings.tz)
                bounds = month_bounds(month, self.ctx.settings.tz)
                # counter first: a write landing in between moves it on the next request
                key = (probe.change_counter(), month, probe.latest_released(now))
                self._next_embargo = probe.next_embargo(now)
                self._month_ends = bounds[1] if bounds else None
                self._version = version
                if key != self._key:
                    self._key = key
                    self.generation += 1
        return self.generation

    async def get(self, path: str, feed: FeedPath) -> Entry:
        generation = await self.current_generation()
        entry = self._docs.get(path)
        if entry is not None and entry.generation == generation:
            return entry
        key = (feed.scope.key, feed.month)
        lock = self._build_locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._docs.get(path)
            if entry is not None and entry.generation == generation:
                return entry
            built = await anyio.to_thread.run_sync(self._build, feed, generation)
            if len(self._docs) > MAX_ENTRIES:
                self._docs.clear()
                self._build_locks.clear()
            if built is None:
                entry = Entry(generation)
                self._docs[path] = entry
                return entry
            self._docs.update(built)
            return self._docs.get(path) or Entry(generation)

    def _build(self, feed: FeedPath, generation: int) -> dict[str, Entry] | None:
        """Build one group (three formats) at the clock's now, and date each body (worker thread)."""
        store, settings = self.ctx.store(), self.ctx.settings
        now = self.clock()
        docs = build_group(store, settings, feed.scope, feed.month, now)
        if docs is None:
            return None
        max_age = ARCHIVE_MAX_AGE if feed.month is not None and feed.month < open_month(settings, now)[0] else CURRENT_MAX_AGE
        out: dict[str, Entry] = {}
        for doc in docs:
            previous = store.feed_state(doc.path)
            state = next_state(doc.path, etag_of(doc.body), previous, doc.updated, now)
            if state != previous:
                store.save_feed_state(state)
            out[doc.path] = _entry(doc, generation, state, max_age, self.security)
        return out


class DateHeader:
    """ASGI middleware: ``Date`` from the same clock that dates ``Last-Modified``.

    uvicorn's own Date lags the clock by up to a second (it is refreshed on a
    timer), which could put a fresh Last-Modified after it; ``serve`` turns
    uvicorn's off (``date_header=False``) and wraps the app in this.
    """

    def __init__(self, app: ASGIApp, clock: Clock = utcnow, feeds: FeedEndpoint | None = None) -> None:
        self.app = app
        self.clock = clock
        self.feeds = feeds
        self._last: tuple[datetime, bytes] | None = None

    def date(self) -> bytes:
        raw = self.clock()
        if self._last is not None and self._last[0] == raw:  # the clock's value repeats all second long
            return self._last[1]
        self._last = (raw, format_datetime(_whole_second(raw), usegmt=True).encode("ascii"))
        return self._last[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.feeds is not None and scope["path"] in self.feeds.cache.known:
            # A feed URL asked before: straight to its endpoint, past the router (a 304 is a dict
            # lookup and a header compare). Its header lists are fresh per response and hold no Date.
            async def send_feed(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"].append((b"date", self.date()))
                await send(message)

            await self.feeds(scope, receive, send_feed)
            return

        async def send_with_date(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                headers.append((b"date", self.date()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_date)


def with_clock(app: Any, clock: Clock = utcnow) -> DateHeader:
    """The app ``create_app`` made, run on ``clock``: its feed cache's now and every response's Date.

    Example:
        >>> from syndicate.config import Settings
        >>> from syndicate.web import create_app
        >>> served = with_clock(create_app(Settings()))
        >>> served.clock is served.app.state.feed_cache.clock
        True
    """
    app.state.feed_cache.clock = clock
    return DateHeader(app, clock, FeedEndpoint(app.state.feed_cache))


_GZIP_ANSWERS: dict[bytes | None, bool] = {}


def _wants_gzip(accept: bytes | None) -> bool:
    """True when Accept-Encoding allows gzip (``gzip`` or ``*`` with q > 0); each header value parsed once."""
    known = _GZIP_ANSWERS.get(accept)
    if known is None:
        if len(_GZIP_ANSWERS) > 1024:
            _GZIP_ANSWERS.clear()
        known = _GZIP_ANSWERS[accept] = _parse_gzip(accept)
    return known


def _parse_gzip(accept: bytes | None) -> bool:
    for part in (accept or b"").split(b","):
        coding, _, params = part.partition(b";")
        if coding.strip().lower() not in (b"gzip", b"*"):
            continue
        q = 1.0
        for param in params.split(b";"):
            key, _, value = param.strip().partition(b"=")
            if key.lower() == b"q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        return q > 0
    return False


def _etag_matches(header: bytes, entry: Entry) -> bool:
    for tag in header.split(b","):
        tag = tag.strip()
        if tag == b"*":
            return True
        if tag.startswith(b"W/"):
            tag = tag[2:]
        if tag in (entry.etag, entry.etag_gz):
            return True
    return False


def _not_modified(inm: bytes | None, ims: bytes | None, entry: Entry) -> bool:
    if inm is not None:
        return _etag_matches(inm, entry)
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims.decode("latin-1"))
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        stamp = since.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):  # not a date, or a year no calendar holds
        return False
    if entry.ambiguous and int(stamp) == int(entry.last_modified_ts):
        return False  # two bodies share this second: only the ETag can tell them apart
    return entry.last_modified_ts <= stamp


async def _plain(send: Send, status: int, text: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + extra})
    await send({"type": "http.response.body", "body": text})


class FeedEndpoint:
    """The ASGI app behind every feed URL: GET/HEAD, 200 or 304, gzip, strong ETag.

    Every answer (200, 304, 404, 405) carries the feed security headers
    (nosniff, a CSP that runs nothing, HSTS on https), encoded once here.
    """

    def __init__(self, cache: FeedCache) -> None:
        self.cache = cache
        self.security = list(cache.security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD"), *self.security])
            return
        path: str = scope["path"]
        generation = await self.cache.current_generation()
        entry = self.cache.known.get(path)
        if entry is None or entry.generation != generation:
            feed = parse_path(path)
            if feed is None:
                await _plain(send, 404, b"no such feed\n", self.security)
                return
            entry = await self.cache.get(path, feed)
        if entry.body is None:
            await _plain(send, 404, b"no such feed\n", self.security)
            return
        accept = inm = ims = None
        for key, value in scope["headers"]:
            if key == b"accept-encoding":
                accept = value
            elif key == b"if-none-match":
                inm = value
            elif key == b"if-modified-since":
                ims = value
        use_gzip = _wants_gzip(accept)
        if _not_modified(inm, ims, entry):
            await send({"type": "http.response.start", "status": 304, "headers": list(entry.not_modified[use_gzip])})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": list(entry.ok[use_gzip])})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else
                    entry.gzipped if use_gzip else entry.body})


FEED_ROUTE_PATHS = (
    "/rss.xml",
    "/atom.xml",
    "/feed.json",
    "/feeds/{fmt}/{file}",
    "/category/{slug}/rss.xml",
    "/category/{slug}/atom.xml",
    "/category/{slug}/feed.json",
    "/category/{slug}/feeds/{fmt}/{file}",
    "/list/{slug}/rss.xml",
    "/list/{slug}/atom.xml",
    "/list/{slug}/feed.json",
    "/list/{slug}/feeds/{fmt}/{file}",
)


def routes(ctx: WebContext, cache: FeedCache | None = None) -> list[BaseRoute]:
    """Every feed URL of :mod:`syndicate.feeds`, served by one :class:`FeedEndpoint`."""
    endpoint = FeedEndpoint(cache or FeedCache(ctx))
    return [Route(path, endpoint) for path in FEED_ROUTE_PATHS]
