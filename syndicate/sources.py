"""Following sources: feeds and news pages fetched on a schedule, into the store.

``syndicate fetch`` (cron) calls :func:`run_fetch`: it takes the fetch lock,
fetches every due source in parallel (bounded) through the safe fetcher with
a conditional GET, and hands what changed to the same import path as
``article import`` (:func:`syndicate.ingest.import_paths`), so feeds, WebSub
pings and the next digests see a fetched article exactly as an imported one.

Kinds:

- ``feed``: RSS, Atom or JSON Feed, read by feedparser; identity is the
  entry's GUID, else its link; an item that leaves the feed stays in the store.
- ``page``: one article URL, extracted by trafilatura (``ingest/page.py``).
- ``index``: a section page; its same-host article links are followed one
  level, each read once (``source_links`` remembers them).

Scheduling: a success (a 304 included) is due again after its interval; a
failure backs off exponentially from the interval up to a day, or as long as
a ``Retry-After`` asked. One failing source never stops the others.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import feedparser

from . import fetcher
from .config import Settings
from .errors import InputError
from .fetcher import FetchError, FetchPolicy, FetchResult, FetchSession
from .ingest import ImportReport, Options, import_paths
from .ingest import feed as feed_format
from .ingest.common import Parsed, Undated
from .ingest.page import article_links, feed_links, parse_page
from .models import Article, utcnow
from .store import Store
from .store.sources import SOURCE_KINDS, FetchOutcome, Source

__all__ = ["Checked", "FetchRun", "SourceResult", "add_source", "backoff", "check_source", "check_url", "fetch_lock",
           "format_every", "parse_every", "run_fetch"]

MAX_BACKOFF = 86400  # a failing source is tried at least once a day
DEFAULT_EVERY = 1800
CONCURRENCY = 16  # requests in flight per run (sized in benchmarks/fetch.py: slow sources hold a slot each)
INDEX_LINKS = 30  # new article links read per index source per run
_EVERY = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$", re.I)
_UNITS = {"": 60, "s": 1, "m": 60, "h": 3600, "d": 86400}
FEED_ACCEPT = feed_format.ACCEPT
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"


def parse_every(value: str) -> int:
    """An interval such as ``30m``, ``2h``, ``1d`` (a bare number is minutes) in seconds; at least a minute.

    Example:
        >>> parse_every("30m"), parse_every("2h"), parse_every("90")
        (1800, 7200, 5400)
        >>> parse_every("soon")
        Traceback (most recent call last):
        ...
        syndicate.errors.InputError: --every 'soon' is not an interval; write e.g. 30m, 2h or 1d
    """
    m = _EVERY.match(value)
    if not m:
        raise InputError(f"--every {value!r} is not an interval; write e.g. 30m, 2h or 1d")
    seconds = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if seconds < 60:
        raise InputError(f"--every {value!r} is under a minute; sources are polite to the sites they follow")
    if seconds > 30 * 86400:
        raise InputError(f"--every {value!r} is over 30 days")
    return seconds


def format_every(seconds: int) -> str:
    """Example:
    >>> format_every(1800), format_every(7200), format_every(86400), format_every(90)
    ('30m', '2h', '1d', '90s')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def backoff(every_seconds: int, failures: int, retry_after: float | None = None) -> int:
    """Seconds until a source that failed ``failures`` times in a row is tried again.

    Example:
        >>> backoff(1800, 1), backoff(1800, 3), backoff(1800, 20), backoff(1800, 1, retry_after=7200)
        (3600, 14400, 86400, 7200)
    """
    wait = min(every_seconds * (2 ** min(failures, 20)), MAX_BACKOFF)
    if retry_after is not None:
        wait = max(wait, int(min(retry_after, MAX_BACKOFF)))
    return int(max(wait, 60))


def check_url(url: str) -> str:
    """``url`` if it can be followed (absolute http(s) with a host), with its scheme and host in lower
    case, so one site's feed typed twice in different case is one source.

    Example:
        >>> check_url(" HTTPS://HaiPhong.gov.vn/RSS/Tin-Tuc.rss ")
        'https://haiphong.gov.vn/RSS/Tin-Tuc.rss'
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{url!r} is not an http:// or https:// URL")
    user, at, hostport = parts.netloc.rpartition("@")
    return urlunsplit((parts.scheme, f"{user}{at}{hostport.lower()}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Checked:
    """What ``source add`` found at a URL: the URL to follow, the page that advertised it (if the URL
    was a page linking to its feed), and a warning when it could not be checked right now."""

    url: str
    found_on: str = ""
    warning: str = ""


def check_source(url: str, kind: str, policy: FetchPolicy) -> Checked:
    """Look at ``url`` once before following it as ``kind``: a feed must be a feed, or a page that
    advertises one (``<link rel="alternate">``, then that feed is followed). A temporary failure
    (timeout, 5xx, 429) is a warning: the source is added and ``fetch`` tries it. Other kinds are
    not fetched here: a page's article is read (and judged) by ``fetch``.

    Example:
        >>> check_source("https://example.org/tin-tuc/", "feed", FetchPolicy())  # doctest: +SKIP
        Checked(url='https://example.org/rss/tin-tuc.xml', found_on='https://example.org/tin-tuc/', warning='')
    """
    url = check_url(url)
    if kind != "feed":
        return Checked(url)
    try:
        got = fetcher.fetch(url, policy, accept=FEED_ACCEPT)
    except FetchError as exc:
        if exc.temporary:
            return Checked(url, warning=f"could not check {url} now ({exc}); added it anyway: `syndicate fetch` will try it")
        raise InputError(f"cannot follow {url}: {exc}; nothing was added") from None
    ctype = got.content_type.split(";")[0].strip().lower()
    head = got.body[:2048].lstrip().lower()
    if "json" in ctype or head.startswith(b"{") or feedparser.parse(got.body).get("version"):
        return Checked(url)
    if "html" in ctype or head.startswith((b"<!doctype html", b"<html")):
        found = feed_links(got.body, got.url)
        if found:
            return Checked(check_url(found[0]), found_on=url)
        raise InputError(
            f"{url} is an HTML page, not a feed, and it links to no feed (no <link rel=\"alternate\">); "
            "follow it with --kind page (one article) or --kind index (a section page whose articles are read); "
            "nothing was added")
    what = f"the server sent {ctype}" if ctype else "the server did not say what it is"
    raise InputError(f"{url} is not a feed ({what}); nothing was added")


def add_source(store: Store, url: str, *, kind: str = "feed", every: str = "30m", name: str = "",
               category: str = "", now: datetime | None = None) -> Source:
    """Follow ``url`` (due at once).

    Example:
        >>> s = add_source(store, "https://example.org/feed.xml", every="1h")  # doctest: +SKIP
        >>> s.kind, s.every_seconds  # doctest: +SKIP
        ('feed', 3600)
    """
    if kind not in SOURCE_KINDS:
        raise InputError(f"--kind {kind!r}: choose one of {', '.join(SOURCE_KINDS)}")
    return store.add_source(check_url(url), kind, parse_every(every), name=name.strip(), category=category.strip(), now=now)


# -- one run ---------------------------------------------------------------------------


@dataclass
class SourceResult:
    """How one source's fetch went."""

    source: Source
    status: int | None = None
    not_modified: bool = False
    error: str = ""
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    next_due: datetime | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error

    def line(self) -> str:
        s = self.source
        head = f"source {s.id} {s.url}"
        if self.error:
            when = f" (next try {self.next_due:%Y-%m-%d %H:%M} UTC)" if self.next_due else ""
            return f"{head}: {self.error}{when}"
        if self.not_modified:
            return f"{head}: not modified"
        return f"{head}: {self.new} new, {self.updated} updated, {self.unchanged} unchanged"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.source.id, "url": self.source.url, "kind": self.source.kind, "status": self.status,
            "not_modified": self.not_modified, "error": self.error, "new": self.new, "updated": self.updated,
            "unchanged": self.unchanged, "next_due": self.next_due.isoformat() if self.next_due else None,
        }


@dataclass
class FetchRun:
    """What one ``syndicate fetch`` did."""

    results: list[SourceResult] = field(default_factory=list)
    changed_categories: set[str] = field(default_factory=set)
    changed_guids: list[str] = field(default_factory=list)
    publish_errors: list[str] = field(default_factory=list)
    feeds_refreshed: int = 0

    @property
    def failed(self) -> list[SourceResult]:
        return [r for r in self.results if r.error]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.publish_errors

    def summary(self) -> str:
        """Example:
        >>> FetchRun().summary()
        'fetched 0 sources: nothing was due'
        """
        n = len(self.results)
        if not n:
            return "fetched 0 sources: nothing was due"
        new = sum(r.new for r in self.results)
        updated = sum(r.updated for r in self.results)
        same = sum(r.not_modified for r in self.results)
        line = (f"fetched {n} source{'s' * (n != 1)}: {new} new, {updated} updated article{'s' * (updated != 1)}; "
                f"{same} not modified; {len(self.failed)} failed")
        return line + (f"; {self.feeds_refreshed} feed files refreshed" if self.feeds_refreshed else "")

    def as_dict(self) -> dict[str, object]:
        return {"sources": [r.as_dict() for r in self.results], "failed": len(self.failed),
                "feeds_refreshed": self.feeds_refreshed, "errors": self.publish_errors}


def fetch_lock(settings: Settings) -> AbstractContextManager[None]:
    """One ``syndicate fetch`` at a time per database (its own lock, not send's)."""
    from .sender.lock import run_lock

    return run_lock(settings, "fetch")


@dataclass
class _Fetched:
    """What the network part brought for one source, before anything is imported."""

    source: Source
    main: FetchResult | None = None
    error: FetchError | None = None
    pages: dict[str, FetchResult] = field(default_factory=dict)  # index: article URL -> page
    page_errors: dict[str, str] = field(default_factory=dict)


async def _fetch_one(store: Store, source: Source, session: FetchSession) -> _Fetched:
    out = _Fetched(source)
    accept = FEED_ACCEPT if source.kind == "feed" else PAGE_ACCEPT
    try:
        out.main = await session.get(source.url, etag=source.etag, last_modified=source.last_modified, accept=accept)
    except FetchError as exc:
        out.error = exc
        return out
    if source.kind == "index" and not out.main.not_modified:
        links = article_links(out.main.body, out.main.url, limit=200)
        seen = store.seen_links(source.id, links)
        fresh = [u for u in links if u not in seen][:INDEX_LINKS]

        async def one(url: str) -> None:
            try:
                out.pages[url] = await session.get(url, accept=PAGE_ACCEPT)
            except FetchError as exc:
                out.page_errors[url] = str(exc)

        await asyncio.gather(*(one(u) for u in fresh))
    return out


async def _fetch_all(store: Store, sources: list[Source], policy: FetchPolicy, concurrency: int,
                     fetched: Callable[[], None]) -> list[_Fetched]:
    """Every source's GETs through one session: at most ``concurrency`` in flight, each over a kept-alive
    connection; a request's deadline starts when it has its connection slot, not while it waits for one.
    ``fetched()`` is called as each source's answers are in."""
    async def one(s: Source) -> _Fetched:
        out = await _fetch_one(store, s, session)
        fetched()
        return out

    async with FetchSession(policy, connections=max(1, concurrency)) as session:
        return list(await asyncio.gather(*(one(s) for s in sources)))


def _parser(f: _Fetched, settings: Settings, now: datetime, opts: Options) -> tuple[list[str], dict[str, Parsed]]:
    """The sources to import (names) and, for each, how to read it from the bytes already fetched."""
    s = f.source
    assert f.main is not None
    parsed: dict[str, Parsed] = {}
    if s.kind == "feed":
        parsed[s.url] = _with_category(feed_format.parse_bytes(f.main.body, s.url, opts, base=f.main.url), s.category)
    elif s.kind == "page":
        parsed[s.url] = _page(f.main.body, f.main.url, s, now)
    else:
        for url, page in f.pages.items():
            parsed[url] = _page(page.body, page.url, s, now)
    return list(parsed), parsed


def _with_category(items: Parsed, category: str) -> Parsed:
    """A source's ``--category`` for the entries that name none."""
    for item in items:
        article = item.article if isinstance(item, Undated) else item
        if category and isinstance(article, Article) and not article.category:
            article.category = category
        yield item


def _page(body: bytes, url: str, source: Source, now: datetime) -> Parsed:
    yield parse_page(body, url, category=source.category, fallback_published=now)


def run_fetch(store: Store, settings: Settings, *, now: datetime | None = None, source_id: int | None = None,
              concurrency: int = CONCURRENCY, publish: bool = True,
              on_progress: Callable[[int, int], None] | None = None) -> FetchRun:
    """Fetch what is due (or the one source asked for, due or not), import, record, refresh feeds.

    ``on_progress(done, total)`` is told of each source fetched and each imported (total: twice the sources).

    Example:
        >>> run_fetch(store, settings).summary()  # doctest: +SKIP
        'fetched 3 sources: 2 new, 0 updated articles; 1 not modified; 0 failed'
    """
    now = now or utcnow()
    run = FetchRun()
    with fetch_lock(settings):
        sources = [store.get_source(source_id)] if source_id is not None else store.due_sources(now)
        if not sources:
            return run
        policy = FetchPolicy.from_settings(settings)
        opts = Options(published=now, default_tz=settings.tz, fetch=policy,  # undated items: when first seen
                       max_article_bytes=int(settings.ingest_max_article_mb * 1_000_000))
        total, done = 2 * len(sources), [0]

        def step() -> None:
            done[0] += 1
            if on_progress is not None:
                on_progress(done[0], total)

        fetched = asyncio.run(_fetch_all(store, sources, policy, concurrency, step))
        unchanged: list[tuple[int, FetchOutcome]] = []  # 304s and failures: recorded in one transaction
        try:
            for f in fetched:
                run.results.append(_import_one(store, settings, f, now, opts, run, unchanged))
                step()
        finally:
            store.record_fetches(unchanged)
    if publish and run.changed_guids:
        from .publish import refresh_published

        refreshed = refresh_published(store, settings, run.changed_categories, guids=run.changed_guids)
        if refreshed is not None:
            run.feeds_refreshed = len(refreshed.written)
            run.publish_errors += refreshed.errors
    return run


def _import_one(store: Store, settings: Settings, f: _Fetched, now: datetime, opts: Options, run: FetchRun,
                unchanged: list[tuple[int, FetchOutcome]]) -> SourceResult:
    """Import one source's answer; an answer that imports nothing (a failure, a 304) goes to
    ``unchanged`` for the caller to record with the others in one transaction."""
    s = f.source
    result = SourceResult(s)
    if f.error is not None:
        result.status = f.error.status
        result.error = str(f.error)
        result.next_due = now + timedelta(seconds=backoff(s.every_seconds, s.failures + 1, f.error.retry_after))
        unchanged.append((s.id, FetchOutcome(now, result.next_due, f.error.status, ok=False, error=result.error)))
        return result
    assert f.main is not None
    result.status = f.main.status
    result.next_due = now + timedelta(seconds=s.every_seconds)
    if f.main.not_modified:
        result.not_modified = True
        unchanged.append((s.id, FetchOutcome(now, result.next_due, 304, ok=True)))
        return result
    names, parsed = _parser(f, settings, now, opts)
    report: ImportReport = import_paths(
        store, names, parsed_by=lambda name: parsed[name], default_tz=settings.tz,
        max_article_bytes=opts.max_article_bytes, fetch=opts.fetch,
    )
    result.new, result.updated, result.unchanged = report.inserted, report.updated, report.unchanged
    run.changed_categories |= report.changed_categories
    run.changed_guids += report.changed_guids
    errors = list(report.errors) + [f"{url}: {why}" for url, why in f.page_errors.items()]
    if s.kind == "index":
        # A link read (article or not) is not read again; one that could not be fetched is tried next run.
        store.mark_links_seen(s.id, [u for u in f.pages], now)
        result.notes += errors
        ok = True  # the index itself answered: one bad article link is a note, not a failing source
    else:
        ok = not errors
    if ok:
        store.record_fetch(s.id, FetchOutcome(now, result.next_due, f.main.status, ok=True, etag=f.main.etag,
                                              last_modified=f.main.last_modified, new_items=report.inserted))
    else:
        result.error = "; ".join(e.removeprefix(f"{s.url}: ") for e in errors)
        if f.main.url != s.url:  # what it read is not what was asked for: say where it ended up
            result.error = f"redirected to {f.main.url}: {result.error}"
        result.next_due = now + timedelta(seconds=backoff(s.every_seconds, s.failures + 1))
        # Keep the old validators: the next fetch must read the body again, not get a 304 for it.
        store.record_fetch(s.id, FetchOutcome(now, result.next_due, f.main.status, ok=False, error=result.error))
    return result

