"""Write every feed (and the index pages that advertise them) as static files.

Files follow the URL layout of :mod:`syndicate.feeds`, so ``out_dir`` can be
served as it is. Each file is written atomically (a temp file in the same
directory, then ``os.replace``) and only when its bytes changed, so readers
never see half a file and unchanged feeds keep their mtime (and their
``ETag`` under a static server).

:func:`publish_all` builds everything; :func:`publish_changed` rebuilds only
the site feed, the named categories' feeds, the feeds of every newsletter
list covering those categories and the archive months the change touched,
then pings the WebSub hub; :func:`publish_due` (the cron tick) publishes
what came due since the last run. The web app calls :func:`build_group`
for the same bytes.

What is public is decided by ``now``: an article is in no feed before its
``published`` time (the embargo), and only months that have ended on the
site's calendar are archive documents (RFC 5005 archives never change
because time passed).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2
from markupsafe import Markup

from .config import Settings
from .feed_build import (
    FeedDocument,
    all_scopes,
    archive_months,
    build_current,
    build_group,
    build_month,
    list_scope,
    list_scopes,
    month_documents,
    month_neighbours,
    open_month,
    resolve_scope,
    scoped_items,
)
from .feeds import (
    FORMATS,
    SITE,
    EntryCache,
    FeedItem,
    FeedLink,
    Scope,
    base,
    feed_item,
    feed_items,
    feed_links,
    month_bounds,
    month_of,
)
from .models import Article, from_iso, to_iso, utcnow
from .render import make_environment
from .store import Store
from .websub import HUB_DEADLINE, ping_hub

__all__ = [  # the building half lives in feed_build; publish is where callers find both
    "FeedDocument", "PublishReport", "all_scopes", "archive_months", "build_current", "build_group",
    "build_month", "list_scope", "list_scopes", "month_neighbours", "open_month", "resolve_scope",
    "publish_all", "publish_changed", "publish_due", "publish_due_note", "refresh_published",
    "render_index", "render_article", "write_if_changed", "ping_hub", "HUB_DEADLINE",
]

PUBLISHED_AT = "feeds.published_at"  # meta key: when feeds were last published (the clock)
HORIZON = "feeds.horizon"  # meta key: the ``now`` the last publish made public what was due by


@dataclass
class PublishReport:
    """What a publish run did; paths are relative to ``out_dir``."""

    out_dir: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    pinged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a hub that did not take a ping

    def as_dict(self) -> dict[str, object]:
        return {
            "out_dir": self.out_dir,
            "written": self.written,
            "unchanged": len(self.unchanged),
            "removed": self.removed,
            "pinged": self.pinged,
            "errors": self.errors,
            "warnings": self.warnings,
        }


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


_PAGE_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,199}$")


def article_page_file(article: Article) -> str | None:
    """Where the static site keeps an article's page (``articles/<slug>/index.html``), or None for a
    slug no file name can carry."""
    return f"articles/{article.slug}/index.html" if _PAGE_SLUG.match(article.slug) else None


def render_article(
    env: jinja2.Environment, settings: Settings, article: Article | None, item: FeedItem | None = None,
    links: dict[str, list[FeedLink]] | None = None,
) -> bytes:
    """The static page of one article: what ``/articles/<slug>/`` links in the feeds resolve to.

    ``item`` is the article's :func:`feed_item` when the caller already made it (a build makes each
    once for feeds and page alike); ``links`` caches the autodiscovery links per category slug."""
    if item is None:
        if article is None:
            raise ValueError("render_article needs the article or its feed item")
        item = feed_item(article, settings)
    slug = item.category_term
    category = Scope.category(slug) if slug else None
    feeds = links.get(slug) if links is not None else None
    if feeds is None:
        feeds = feed_links(settings) + (feed_links(settings, category) if category else [])
        if links is not None:
            links[slug] = feeds
    html = env.get_template("web/site-article.html").render(
        item=item,
        body=Markup(item.content_html),  # cleaned by nh3 in feed_item
        language=item.language or settings.language,
        site_title=settings.title,
        home=base(settings) + "/",
        category_page=base(settings) + category.page_path() if category else "",
        feeds=feeds,
    )
    return html.encode("utf-8")


def _put_article_pages(writer: _Writer, env: jinja2.Environment, settings: Settings, articles: Iterable[Article],
                       now: datetime) -> None:
    """Write (or, while embargoed, remove) each article's page."""
    links: dict[str, list[FeedLink]] = {}
    for article in articles:
        rel = article_page_file(article)
        if rel is None:
            continue
        if article.published <= now:
            writer.put(rel, render_article(env, settings, article, links=links), durable=False)
        else:  # embargoed (perhaps just re-dated into the future): no page yet
            writer.remove(rel)


# --- writing: bytes -> files -------------------------------------------------------------


def write_if_changed(root: Path, rel: str, data: bytes, durable: bool = True) -> bool:
    """Atomically replace ``root/rel`` with ``data`` unless it already holds it.

    Returns True when the file was written. The temp file lives in the target's
    directory so ``os.replace`` is a same-filesystem rename. ``durable`` fsyncs
    before the rename (feeds); article pages skip it, since there can be one per
    article and the next build rewrites any page a crash left short.
    """
    target = root / rel.lstrip("/")
    try:
        if target.stat().st_size == len(data) and target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except FileNotFoundError:  # the first file of its directory: make it (one syscall less for every other)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
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

    def put(self, rel: str, data: bytes, durable: bool = True) -> bool:
        rel = rel.lstrip("/")
        if write_if_changed(self.out_dir, rel, data, durable):
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
    scope: Scope, categories: list[tuple[str, str, int]], lists: list[Scope], now: datetime,
) -> list[str]:
    docs, items = build_current(store, settings, scope, now)
    changed = writer.documents(docs)
    site = scope.kind == "site"
    writer.put(
        _index_path(scope), render_index(env, settings, scope, items, categories if site else [], lists if site else [])
    )
    return changed


def _stamp(store: Store, started: datetime, now: datetime) -> None:
    store.set_meta(PUBLISHED_AT, to_iso(started))
    store.set_meta(HORIZON, to_iso(now))


Progress = Callable[[int, int], None]  # (articles done, articles in all) as a full build goes


def publish_all(
    store: Store, settings: Settings, out_dir: str | Path | None = None, *, now: datetime | None = None,
    ping: bool = True, progress: Progress | None = None,
) -> PublishReport:
    """Write every feed, every finished month's archive and the index pages under ``out_dir``.

    ``now`` (default: the clock) decides what is public: articles published
    later are left out until a build after their time. With ``feeds_hub_url``
    set, the hub is pinged for every subscription feed whose bytes changed.

    Archives are streamed month by month: one query per month reads its
    articles, each is cleaned once for every scope's archive and its own
    page, and all is dropped before the next month, so memory follows the
    largest month, not the store. ``progress`` is called after each month
    with the articles done so far and the total.

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
    now = now or started
    categories = store.public_categories(now)
    lists = list_scopes(store)
    scopes = all_scopes(store, now, categories)
    total = store.count_public(now) if progress is not None else 0
    done = 0
    for scope in scopes:
        _publish_scope_current(writer, store, settings, env, scope, categories, lists, now)
    # Every scope's archive months are among the site's: each site month is read once and shared.
    plans: list[tuple[Scope, dict[str, tuple[str | None, str | None]]]] = []
    for scope in scopes:
        months = archive_months(store, settings, scope, now)
        plans.append((scope, {
            month: (months[i - 1] if i > 0 else None, months[i + 1] if i + 1 < len(months) else None)
            for i, month in enumerate(months)
        }))
    for month in archive_months(store, settings, SITE, now):
        bounds = month_bounds(month, settings.tz)
        if bounds is None:
            continue
        articles = store.public_between(bounds[0], bounds[1], None)
        items = feed_items(articles, settings)
        pages = [article_page_file(a) for a in articles]  # all public: the month has ended
        del articles  # the items carry everything from here on: hold one copy of the month, not two
        # Each article's feed entry is made once and serves every scope; each format's rendered
        # elements are dropped before the next format, so one month's entries are held once.
        cache = EntryCache()
        held = [(scope, neighbours[month], scoped_items(scope, items)) for scope, neighbours in plans if month in neighbours]
        for fmt in FORMATS:
            for scope, around, scoped in held:
                if scoped:  # one body at a time
                    writer.documents(month_documents(settings, scope, month, scoped, around, (fmt,), cache))
            cache.drop_elements()
        del cache, held
        links: dict[str, list[FeedLink]] = {}
        for rel, item in zip(pages, items, strict=True):
            if rel is not None:
                writer.put(rel, render_article(env, settings, None, item, links), durable=False)
        done += len(items)
        if progress is not None:
            progress(done, total)
        del items, pages
    current = store.public_from(open_month(settings, now)[1], now)
    _put_article_pages(writer, env, settings, current, now)
    if progress is not None:
        progress(done + len(current), total)
    del current
    _prune(writer, set(report.written) | set(report.unchanged))
    _stamp(store, started, now)
    if ping:
        _ping_changed(settings, report, scopes)
    return report


def _prune(writer: _Writer, kept: set[str]) -> None:
    """Remove feeds and pages syndicate published before but no longer makes
    (a deleted list or category, a month that emptied). Only syndicate's own
    URL layout is touched: other files in the output directory stay."""
    root = writer.out_dir
    candidates: list[str] = []
    for pattern in ("feeds/*/*", "category/*/*", "category/*/feeds/*/*", "list/*/*", "list/*/feeds/*/*"):
        candidates += [p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file()]
    pages = root / "articles"
    if pages.is_dir():  # one directory per article: read it once instead of globbing into each
        with os.scandir(pages) as entries:
            for entry in entries:
                rel = f"articles/{entry.name}/index.html"
                if rel not in kept and entry.is_dir() and os.path.isfile(os.path.join(entry.path, "index.html")):
                    candidates.append(rel)
    for rel in candidates:
        if rel not in kept and not rel.rsplit("/", 1)[-1].startswith("."):
            writer.remove(rel)
    holding = {parent for rel in kept for parent in _parents(rel)}  # folders that keep a file are not empty
    for pattern in ("category/*/feeds/*", "category/*/feeds", "category/*", "list/*/feeds/*", "list/*/feeds",
                    "list/*", "feeds/*", "articles/*"):
        if pattern == "articles/*":
            folders = []
            if pages.is_dir():
                with os.scandir(pages) as entries:
                    folders = [pages / e.name for e in entries if f"articles/{e.name}" not in holding]
        else:
            folders = list(root.glob(pattern))
        for folder in sorted(folders, reverse=True):
            if folder.relative_to(root).as_posix() in holding:
                continue
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _parents(rel: str) -> Iterable[str]:
    parts = rel.split("/")
    return ("/".join(parts[:i]) for i in range(1, len(parts)))


def publish_changed(
    store: Store,
    settings: Settings,
    out_dir: str | Path | None,
    changed_categories: set[str],
    *,
    guids: Iterable[str] | None = None,
    removed: Iterable[Article] = (),
    ping: bool = True,
    now: datetime | None = None,
) -> PublishReport:
    """Rebuild after an import: the site feed, the named categories' feeds, their lists' and touched months.

    ``guids`` (e.g. ``UpsertResult.inserted + UpsertResult.updated``) name the
    changed articles exactly; without them, articles whose ``updated`` is at or
    after the last publish are taken as changed. ``removed`` names articles
    just deleted, whose feeds and archive months must drop them. Articles whose
    embargo ended since the last publish are published too, and when a month
    ended since then everything is rebuilt (:func:`publish_all`): the month
    becomes an archive and every feed's ``prev-archive`` moves. Cost grows with
    the feeds' size, not the store's. With ``feeds_hub_url`` set, the hub is
    pinged for every subscription feed whose bytes changed.

    Example:
        >>> result = store.upsert_articles(articles)  # doctest: +SKIP
        >>> publish_changed(store, settings, "site", result.changed_categories,
        ...                 guids=result.inserted + result.updated)  # doctest: +SKIP
    """
    root = Path(out_dir or settings.feeds_out)
    started = utcnow()
    now = now or started
    last = store.get_meta(PUBLISHED_AT)
    horizon_text = store.get_meta(HORIZON)
    horizon = from_iso(horizon_text) if horizon_text else None
    if (last is None and guids is None) or horizon is None or month_of(horizon, settings.tz) != month_of(
        now, settings.tz
    ):
        return publish_all(store, settings, root, now=now, ping=ping)
    report = PublishReport(str(root))
    writer = _Writer(root, report)
    env = make_environment(settings)
    removed = list(removed)
    keys = store.article_keys(guids) if guids is not None else store.changed_keys_since(from_iso(last or ""))
    keys += [(a.published, a.category_slug) for a in removed]
    released = store.released_between(horizon, now)
    keys += [(published, slug) for _guid, published, slug in released]
    page_guids = list(guids) if guids is not None else [a.guid for a in store.changed_since(from_iso(last or ""))]
    _put_article_pages(writer, env, settings, store.articles_by_guid(page_guids + [g for g, _, _ in released]), now)
    for gone in removed:
        rel = article_page_file(gone)
        if rel is not None:
            writer.remove(rel)
    months = {month_of(published, settings.tz) for published, _ in keys if published <= now}
    cat_slugs = {c for c in changed_categories if c} | {c for _, c in keys if c}
    scopes = [SITE]
    for slug in sorted(cat_slugs):
        scope = resolve_scope(store, Scope.category(slug), now)
        if scope is not None:
            scopes.append(scope)
        else:  # the category emptied (or holds only embargoed articles): its feeds go away
            for fmt in FORMATS:
                writer.remove(Scope.category(slug).feed_path(fmt))
            writer.remove(_index_path(Scope.category(slug)))
    lists = list_scopes(store)
    # A list covering every category, or any changed one, carries the change.
    scopes += [scope for scope in lists if any(scope.covers(c) for c in cat_slugs) or scope.category_slugs is None]
    categories = store.public_categories(now)
    for scope in scopes:
        _publish_scope_current(writer, store, settings, env, scope, categories, lists, now)
        for month in sorted(months):
            _publish_month(writer, store, settings, scope, month, now)
    _stamp(store, started, now)
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
    now: datetime | None = None,
) -> PublishReport | None:
    """After articles changed: refresh the feeds in ``[feeds] out`` that hold them.

    Nothing is written until ``syndicate feed build`` has published once (the
    directory exists); then returns None.
    """
    if not Path(settings.feeds_out).is_dir():
        return None
    return publish_changed(
        store, settings, settings.feeds_out, changed_categories, guids=guids, removed=removed, now=now
    )


def publish_due(store: Store, settings: Settings, now: datetime | None = None) -> PublishReport | None:
    """Publish what came due since the last publish: articles whose embargo ended, a month that ended.

    The cron tick (``syndicate send``) calls it. None, and nothing touched,
    when the feeds were never built or nothing came due; it never moves the
    published state back to an earlier ``now``.

    Example:
        >>> publish_due(store, settings)  # doctest: +SKIP
    """
    now = now or utcnow()
    horizon_text = store.get_meta(HORIZON)
    if not Path(settings.feeds_out).is_dir() or store.get_meta(PUBLISHED_AT) is None:
        return None
    if horizon_text is not None:
        horizon = from_iso(horizon_text)
        if now <= horizon:
            return None
        same_month = month_of(horizon, settings.tz) == month_of(now, settings.tz)
        if same_month and not store.released_between(horizon, now):
            return None
    return publish_changed(store, settings, settings.feeds_out, set(), guids=[], now=now)


def publish_due_note(store: Store, settings: Settings, now: datetime | None = None) -> str:
    """:func:`publish_due` for the cron tick: what it did as lines for stderr ('' when nothing came due)."""
    try:
        published = publish_due(store, settings, now)
    except OSError as exc:
        return f"warning: feeds in {settings.feeds_out}/ not refreshed: {exc}"
    if published is None:
        return ""
    lines = [f"feeds: {len(published.written)} files refreshed in {settings.feeds_out}/ (articles came due)"]
    return "\n".join(lines + [f"warning: {w}" for w in published.warnings])


def _publish_month(writer: _Writer, store: Store, settings: Settings, scope: Scope, month: str, now: datetime) -> None:
    """Rewrite one archive month; relink its neighbours when it appeared or vanished."""
    existed = writer.exists(scope.archive_path("atom", month))
    neighbours = month_neighbours(store, settings, scope, month, now)
    docs = build_month(store, settings, scope, month, neighbours, now)
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
            more = build_month(store, settings, scope, other, now=now)
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
    pinged, problems = ping_hub(settings, urls)
    report.pinged += pinged
    report.warnings += problems

