"""Feeds over HTTP the way feed readers expect: built once per store change, 304 cheap.

:class:`FeedCache` keeps every served document's bytes, gzip bytes, strong
``ETag`` and ``Last-Modified``, tagged with a *generation*. The generation
moves only when the articles or the newsletter lists change: each request
asks SQLite for ``PRAGMA data_version`` (microseconds; it moves when any other
connection commits) and only then compares a content stamp (count, max id,
max updated, and what each list's feed shows) computed in a worker thread. A conditional GET for a current document is answered by
:class:`FeedEndpoint`, a plain ASGI app, without touching Starlette's
request machinery or a thread.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

import anyio.to_thread
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..feeds import CONTENT_TYPES, FeedPath, parse_path
from ..publish import FeedDocument, build_group, list_scopes
from ..store import Store, open_store
from .context import WebContext

CURRENT_MAX_AGE = 60  # seconds a reader may reuse a subscription feed without asking
ARCHIVE_MAX_AGE = 86400  # past months rarely change
MAX_ENTRIES = 20000  # cached documents (and misses) before the cache starts afresh


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
    content_type: bytes = b""
    cache_control: bytes = b""


def _entry(doc: FeedDocument, generation: int, previous: Entry | None, month: str | None) -> Entry:
    digest = hashlib.sha256(doc.body).hexdigest()[:32]
    modified = doc.updated.astimezone(UTC).replace(microsecond=0)
    if previous is not None and previous.body is not None and previous.body != doc.body:
        # Bytes changed but the newest item did not move (a removal): Last-Modified must still advance.
        if modified.timestamp() <= previous.last_modified_ts:
            modified = datetime.now(UTC).replace(microsecond=0)
    elif previous is not None and previous.body == doc.body:
        modified = datetime.fromtimestamp(previous.last_modified_ts, UTC)
    this_month = datetime.now(UTC).strftime("%Y-%m")
    max_age = ARCHIVE_MAX_AGE if month is not None and month < this_month else CURRENT_MAX_AGE
    return Entry(
        generation=generation,
        body=doc.body,
        gzipped=gzip.compress(doc.body, compresslevel=6, mtime=0),
        etag=f'"{digest}"'.encode("ascii"),
        etag_gz=f'"{digest}-gz"'.encode("ascii"),
        last_modified=format_datetime(modified, usegmt=True).encode("ascii"),
        last_modified_ts=modified.timestamp(),
        content_type=CONTENT_TYPES[doc.fmt].encode("ascii"),
        cache_control=f"public, max-age={max_age}".encode("ascii"),
    )


class FeedCache:
    """Feed documents by URL path, rebuilt only when the articles changed."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.generation = 0
        self._probe: Store | None = None
        self._version: int | None = None
        self._stamp: tuple[object, ...] | None = None
        self._docs: dict[str, Entry] = {}
        self._stamp_lock: asyncio.Lock | None = None
        self._build_locks: dict[tuple[str, str | None], asyncio.Lock] = {}

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    async def current_generation(self) -> int:
        """The generation now: one PRAGMA when nothing changed."""
        if self._probe is None:
            self._probe = open_store(self.ctx.settings.db)
        version = self._probe.data_version()
        if version == self._version:
            return self.generation
        if self._stamp_lock is None:
            self._stamp_lock = asyncio.Lock()
        async with self._stamp_lock:
            version = self._probe.data_version()
            if version != self._version:
                stamp = await anyio.to_thread.run_sync(self._content_stamp)
                if stamp != self._stamp:
                    self._stamp = stamp
                    self.generation += 1
                self._version = version
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
            docs = await anyio.to_thread.run_sync(self._build, feed)
            if len(self._docs) > MAX_ENTRIES:
                self._docs.clear()
                self._build_locks.clear()
            if docs is None:
                entry = Entry(generation)
                self._docs[path] = entry
                return entry
            for doc in docs:
                self._docs[doc.path] = _entry(doc, generation, self._docs.get(doc.path), feed.month)
            return self._docs.get(path) or Entry(generation)

    def _content_stamp(self) -> tuple[object, ...]:
        """What the feeds are made of: the articles' stamp and every list's feed scope (few rows)."""
        store = self.ctx.store()
        return (store.articles_stamp(), tuple(list_scopes(store)))

    def _build(self, feed: FeedPath) -> list[FeedDocument] | None:
        return build_group(self.ctx.store(), self.ctx.settings, feed.scope, feed.month)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _wants_gzip(accept: bytes | None) -> bool:
    """True when Accept-Encoding allows gzip (``gzip`` or ``*`` with q > 0)."""
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


def _not_modified(scope: Scope, entry: Entry) -> bool:
    inm = _header(scope, b"if-none-match")
    if inm is not None:
        return _etag_matches(inm, entry)
    ims = _header(scope, b"if-modified-since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return entry.last_modified_ts <= since.timestamp()


async def _plain(send: Send, status: int, text: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": text})


class FeedEndpoint:
    """The ASGI app behind every feed URL: GET/HEAD, 200 or 304, gzip, strong ETag."""

    def __init__(self, cache: FeedCache) -> None:
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        path: str = scope["path"]
        feed = parse_path(path)
        if feed is None:
            await _plain(send, 404, b"no such feed\n")
            return
        entry = await self.cache.get(path, feed)
        if entry.body is None:
            await _plain(send, 404, b"no such feed\n")
            return
        use_gzip = _wants_gzip(_header(scope, b"accept-encoding"))
        headers = [
            (b"etag", entry.etag_gz if use_gzip else entry.etag),
            (b"last-modified", entry.last_modified),
            (b"cache-control", entry.cache_control),
            (b"vary", b"Accept-Encoding"),
        ]
        if _not_modified(scope, entry):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = entry.gzipped if use_gzip else entry.body
        headers += [(b"content-type", entry.content_type), (b"content-length", str(len(body)).encode("ascii"))]
        if use_gzip:
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


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
