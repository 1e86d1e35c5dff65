"""Write every feed (and the index pages that advertise them) as static files.

Files follow the URL layout of :mod:`syndicate.feeds`, so ``out_dir`` can be
served as it is. Each file is written atomically (a temp file in the same
directory, then ``os.replace``) and only when its bytes changed, so readers
never see half a file and unchanged feeds keep their mtime (and their
``ETag`` under a static server).

:func:`publish_all` builds everything; :func:`publish_changed` rebuilds only
the site feed, the named categories' feeds, the feeds of every newsletter
list covering those categories and the archive months the change touched,
then pings the WebSub hub. The web app calls :func:`build_group`
for the same bytes.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2

from .config import Settings
from .errors import NotFound
from .feeds import (
    CONTENT_TYPES,
    FORMATS,
    SITE,
    FeedItem,
    FeedMeta,
    Scope,
    base,
    feed_items,
    feed_links,
    feed_updated,
    render_feeds,
)
from .models import Article, NewsList, from_iso, to_iso, utcnow
from .render import make_environment
from .store import Store

PUBLISHED_AT = "feeds.published_at"  # meta key: when feeds were last published
HUB_TIMEOUT = 10.0


@dataclass(frozen=True)
class FeedDocument:
    """One feed file: its URL path, format, bytes and newest item change."""

    path: str
    fmt: str
    body: bytes
    updated: datetime

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.fmt]


@dataclass
class PublishReport:
    """What a publish run did; paths are relative to ``out_dir``."""

    out_dir: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    pinged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "out_dir": self.out_dir,
            "written": self.written,
            "unchanged": len(self.unchanged),
            "removed": self.removed,
            "pinged": self.pinged,
            "errors": self.errors,
        }


# --- building: store -> bytes ----------------------------------------------------------


def list_scope(newslist: NewsList) -> Scope | None:
    """The feed scope of a newsletter list, or None when its slug cannot be a URL path."""
    try:
        return Scope.news_list(
            newslist.slug, newslist.name, newslist.description, newslist.language, newslist.categories
        )
    except ValueError:
        return None


def list_scopes(store: Store) -> list[Scope]:
    """Every newsletter list's feed scope."""
    return [scope for scope in (list_scope(nl) for nl in store.all_lists()) if scope is not None]


def resolve_scope(store: Store, scope: Scope) -> Scope | None:
    """The scope with its display name (and a list's categories), or None when there is no such feed."""
    if scope.kind == "list":
        try:
            return list_scope(store.get_list(scope.slug))
        except NotFound:
            return None
    if scope.kind != "category":
        return scope
    name = store.category_name(scope.slug)
    return None if name is None else Scope.category(scope.slug, name)


def all_scopes(store: Store) -> list[Scope]:
    """The site, every category in use and every newsletter list."""
    return [SITE] + [Scope.category(slug, name) for slug, name, _count in store.categories()] + list_scopes(store)


def _documents(meta: FeedMeta, items: list[FeedItem]) -> list[FeedDocument]:
    bodies = render_feeds(meta, items)
    out = []
    for fmt in FORMATS:
        path = meta.scope.archive_path(fmt, meta.month) if meta.month else meta.scope.feed_path(fmt)
        out.append(FeedDocument(path, fmt, bodies[fmt], meta.updated))
    return out


def build_current(
    store: Store, settings: Settings, scope: Scope, articles: list[Article] | None = None
) -> tuple[list[FeedDocument], list[FeedItem]]:
    """The subscription feeds of a scope: newest ``feeds_items`` articles (indexed LIMIT)."""
    if articles is None:
        articles = store.newest_in_categories(settings.feeds_items, scope.category_slugs)
    items = feed_items(articles, settings)
    newest_month = to_iso(articles[0].published)[:7] if articles else None
    meta = FeedMeta(settings, scope, feed_updated(items), prev_month=newest_month)
    return _documents(meta, items), items


def build_month(
    store: Store,
    settings: Settings,
    scope: Scope,
    month: str,
    neighbours: tuple[str | None, str | None] | None = None,
) -> list[FeedDocument] | None:
    """One RFC 5005 archive document per format for ``month``; None if the month is empty."""
    articles = store.articles_in_month_in(month, scope.category_slugs)
    if not articles:
        return None
    older, newer = neighbours if neighbours is not None else store.adjacent_months_in(month, scope.category_slugs)
    items = feed_items(articles, settings)
    meta = FeedMeta(settings, scope, feed_updated(items), month=month, prev_month=older, next_month=newer)
    return _documents(meta, items)


def build_group(store: Store, settings: Settings, scope: Scope, month: str | None = None) -> list[FeedDocument] | None:
    """The three documents (rss, atom, json) at one place in the URL layout, or None (404)."""
    resolved = resolve_scope(store, scope)
    if resolved is None:
        return None
    if month is None:
        return build_current(store, settings, resolved)[0]
    return build_month(store, settings, resolved, month)


def render_index(
    env: jinja2.Environment,
    settings: Settings,
    scope: Scope,
    items: list[FeedItem],
    categories: list[tuple[str, str, int]],
    lists: list[Scope] | None = None,
) -> bytes:
    """The static index page of a scope, advertising every feed for autodiscovery."""
    own = feed_links(settings, scope)
    discover = list(own) + (feed_links(settings, SITE) if scope.kind != "site" else [])
    cats = []
    for slug, name, count in categories:
        cat_scope = Scope.category(slug, name)
        links = feed_links(settings, cat_scope)
        discover += links
        cats.append({"name": name, "count": count, "page": base(settings) + cat_scope.page_path(), "feeds": links})
    news_lists = []
    for list_scope_ in lists or []:
        links = feed_links(settings, list_scope_)
        discover += links
        news_lists.append({"name": list_scope_.name, "description": list_scope_.description, "feeds": links})
    html = env.get_template("web/site-index.html").render(
        title=scope.title(settings),
        subtitle=settings.subtitle,
        language=settings.language,
        feeds=discover,
        own_feeds=own,
        categories=cats,
        lists=news_lists,
        items=items,
    )
    return html.encode("utf-8")


# --- writing: bytes -> files -------------------------------------------------------------


def write_if_changed(root: Path, rel: str, data: bytes) -> bool:
    """Atomically replace ``root/rel`` with ``data`` unless it already holds it.

    Returns True when the file was written. The temp file lives in the target's
    directory so ``os.replace`` is a same-filesystem rename.
    """
    target = root / rel.lstrip("/")
    try:
        if target.stat().st_size == len(data) and target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return True


class _Writer:
    def __init__(self, out_dir: Path, report: PublishReport) -> None:
        self.out_dir = out_dir
        self.report = report

    def put(self, rel: str, data: bytes) -> bool:
        rel = rel.lstrip("/")
        if write_if_changed(self.out_dir, rel, data):
            self.report.written.append(rel)
            return True
        self.report.unchanged.append(rel)
        return False

    def documents(self, docs: Iterable[FeedDocument]) -> list[str]:
        return [doc.path for doc in docs if self.put(doc.path, doc.body)]

    def remove(self, rel: str) -> None:
        target = self.out_dir / rel.lstrip("/")
        try:
            target.unlink()
            self.report.removed.append(rel.lstrip("/"))
        except FileNotFoundError:
            pass

    def exists(self, rel: str) -> bool:
        return (self.out_dir / rel.lstrip("/")).exists()


def _index_path(scope: Scope) -> str:
    return scope.page_path() + "index.html"


def _publish_scope_current(
    writer: _Writer, store: Store, settings: Settings, env: jinja2.Environment,
    scope: Scope, categories: list[tuple[str, str, int]], lists: list[Scope],
) -> list[str]:
    docs, items = build_current(store, settings, scope)
    changed = writer.documents(docs)
    site = scope.kind == "site"
    writer.put(
        _index_path(scope), render_index(env, settings, scope, items, categories if site else [], lists if site else [])
    )
    return changed


def publish_all(store: Store, settings: Settings, out_dir: str | Path | None = None) -> PublishReport:
    """Write every feed, every archive month and the index pages under ``out_dir``.

    Example:
        >>> report = publish_all(store, settings, "site")  # doctest: +SKIP
        >>> report.written[:3]  # doctest: +SKIP
        ['rss.xml', 'atom.xml', 'feed.json']
    """
    root = Path(out_dir or settings.feeds_out)
    report = PublishReport(str(root))
    writer = _Writer(root, report)
    env = make_environment(settings)
    started = utcnow()
    categories = store.categories()
    lists = list_scopes(store)
    for scope in all_scopes(store):
        _publish_scope_current(writer, store, settings, env, scope, categories, lists)
        months = store.article_months_in(scope.category_slugs)
        for i, month in enumerate(months):
            older = months[i - 1] if i > 0 else None
            newer = months[i + 1] if i + 1 < len(months) else None
            docs = build_month(store, settings, scope, month, (older, newer))
            if docs:
                writer.documents(docs)
    _prune(writer, set(report.written) | set(report.unchanged))
    store.set_meta(PUBLISHED_AT, to_iso(started))
    return report


def _prune(writer: _Writer, kept: set[str]) -> None:
    """Remove feeds and pages syndicate published before but no longer makes
    (a deleted list or category, a month that emptied). Only syndicate's own
    URL layout is touched: other files in the output directory stay."""
    root = writer.out_dir
    candidates: list[Path] = []
    for pattern in ("feeds/*/*", "category/*/*", "category/*/feeds/*/*", "list/*/*", "list/*/feeds/*/*"):
        candidates += [p for p in root.glob(pattern) if p.is_file()]
    for path in candidates:
        rel = path.relative_to(root).as_posix()
        if rel not in kept and not path.name.startswith("."):
            writer.remove(rel)
    for pattern in ("category/*/feeds/*", "category/*/feeds", "category/*", "list/*/feeds/*", "list/*/feeds",
                    "list/*", "feeds/*"):
        for folder in sorted(root.glob(pattern), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def publish_changed(
    store: Store,
    settings: Settings,
    out_dir: str | Path | None,
    changed_categories: set[str],
    *,
    guids: Iterable[str] | None = None,
    removed: Iterable[Article] = (),
    ping: bool = True,
) -> PublishReport:
    """Rebuild after an import: the site feed, the named categories' feeds, their lists' and touched months.

    ``guids`` (e.g. ``UpsertResult.inserted + UpsertResult.updated``) name the
    changed articles exactly; without them, articles whose ``updated`` is at or
    after the last publish are taken as changed. ``removed`` names articles
    just deleted, whose feeds and archive months must drop them. Cost grows with the feeds'
    size, not the store's. With ``feeds_hub_url`` set, the hub is pinged for
    every subscription feed whose bytes changed.

    Example:
        >>> result = store.upsert_articles(articles)  # doctest: +SKIP
        >>> publish_changed(store, settings, "site", result.changed_categories,
        ...                 guids=result.inserted + result.updated)  # doctest: +SKIP
    """
    root = Path(out_dir or settings.feeds_out)
    last = store.get_meta(PUBLISHED_AT)
    if last is None and guids is None:
        report = publish_all(store, settings, root)
        if ping:
            _ping_changed(settings, report, all_scopes(store))
        return report
    report = PublishReport(str(root))
    writer = _Writer(root, report)
    env = make_environment(settings)
    started = utcnow()
    touched = store.article_months_for(guids) if guids is not None else store.months_changed_since(from_iso(last or ""))
    touched |= {(to_iso(a.published)[:7], a.category_slug) for a in removed}
    months = {m for m, _ in touched}
    cat_slugs = {c for c in changed_categories if c} | {c for _, c in touched if c}
    scopes = [SITE]
    for slug in sorted(cat_slugs):
        scope = resolve_scope(store, Scope.category(slug))
        if scope is not None:
            scopes.append(scope)
        else:  # the category emptied: its feeds go away
            for fmt in FORMATS:
                writer.remove(Scope.category(slug).feed_path(fmt))
    lists = list_scopes(store)
    # A list covering every category, or any changed one, carries the change.
    scopes += [scope for scope in lists if any(scope.covers(c) for c in cat_slugs) or scope.category_slugs is None]
    categories = store.categories()
    for scope in scopes:
        _publish_scope_current(writer, store, settings, env, scope, categories, lists)
        for month in sorted(months):
            _publish_month(writer, store, settings, scope, month)
    store.set_meta(PUBLISHED_AT, to_iso(started))
    if ping:
        _ping_changed(settings, report, scopes)
    return report


def refresh_published(
    store: Store,
    settings: Settings,
    changed_categories: set[str],
    *,
    guids: Iterable[str],
    removed: Iterable[Article] = (),
) -> PublishReport | None:
    """After articles changed: refresh the feeds in ``[feeds] out`` that hold them.

    Nothing is written until ``syndicate feed build`` has published once (the
    directory exists); then returns None.
    """
    if not Path(settings.feeds_out).is_dir():
        return None
    return publish_changed(store, settings, settings.feeds_out, changed_categories, guids=guids, removed=removed)


def _publish_month(writer: _Writer, store: Store, settings: Settings, scope: Scope, month: str) -> None:
    """Rewrite one archive month; relink its neighbours when it appeared or vanished."""
    existed = writer.exists(scope.archive_path("atom", month))
    neighbours = store.adjacent_months_in(month, scope.category_slugs)
    docs = build_month(store, settings, scope, month, neighbours)
    if docs is None:
        if not existed:
            return
        for fmt in FORMATS:
            writer.remove(scope.archive_path(fmt, month))
    else:
        writer.documents(docs)
        if existed:
            return
    for other in neighbours:
        if other is not None:
            more = build_month(store, settings, scope, other)
            if more:
                writer.documents(more)


# --- WebSub ----------------------------------------------------------------------------


def _ping_changed(settings: Settings, report: PublishReport, scopes: list[Scope]) -> None:
    if not settings.feeds_hub_url:
        return
    written = set(report.written)
    urls = [
        base(settings) + scope.feed_path(fmt)
        for scope in scopes
        for fmt in FORMATS
        if scope.feed_path(fmt).lstrip("/") in written
    ]
    pinged, errors = ping_hub(settings, urls)
    report.pinged += pinged
    report.errors += errors


def ping_hub(settings: Settings, urls: Iterable[str]) -> tuple[list[str], list[str]]:
    """WebSub publish: POST ``hub.mode=publish&hub.url=<feed>`` to the hub, once per feed.

    Returns (pinged urls, error messages); a failing hub never undoes a publish.
    """
    hub = settings.feeds_hub_url
    pinged: list[str] = []
    errors: list[str] = []
    if not hub:
        return pinged, errors
    for url in urls:
        body = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": url}).encode("ascii")
        request = urllib.request.Request(
            hub, data=body, method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "syndicate"},
        )
        try:
            with urllib.request.urlopen(request, timeout=HUB_TIMEOUT) as response:  # noqa: S310 - admin-set URL
                response.read()
            pinged.append(url)
        except urllib.error.HTTPError as exc:
            errors.append(f"hub {hub} refused the ping for {url}: HTTP {exc.code} (check [feeds] hub_url)")
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            errors.append(f"hub {hub} unreachable for {url}: {reason} (check [feeds] hub_url)")
    return pinged, errors
