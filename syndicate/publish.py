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
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

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
    month_neighbours,
    open_month,
    resolve_scope,
)
from .feeds import FORMATS, SITE, Scope, base, month_of
from .models import Article, from_iso, to_iso, utcnow
from .render import make_environment
from .site_build import Progress, build_site, index_path, publish_scope_current
from .site_files import BuildError, PublishReport, Writer, write_if_changed
from .site_pages import article_page_file, put_article_pages, render_article, render_index
from .store import Store
from .websub import ping_hub

__all__ = [  # the building half lives in feed_build and site_build; publish is where callers find both
    "FeedDocument", "PublishReport", "BuildError", "all_scopes", "archive_months", "build_current", "build_group",
    "build_month", "list_scope", "list_scopes", "month_neighbours", "open_month", "resolve_scope",
    "publish_all", "publish_changed", "publish_due", "publish_due_note", "refresh_published",
    "render_index", "render_article", "article_page_file", "write_if_changed", "ping_hub",
]

PUBLISHED_AT = "feeds.published_at"  # meta key: when feeds were last published (the clock)
HORIZON = "feeds.horizon"  # meta key: the ``now`` the last publish made public what was due by


def _stamp(store: Store, started: datetime, now: datetime) -> None:
    store.set_meta(PUBLISHED_AT, to_iso(started))
    store.set_meta(HORIZON, to_iso(now))


def publish_all(
    store: Store, settings: Settings, out_dir: str | Path | None = None, *, now: datetime | None = None,
    ping: bool = True, progress: Progress | None = None, jobs: int | None = 1,
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

    ``jobs`` processes share the months (None: every core, for a store of
    :data:`~syndicate.site_build.AUTO_PARALLEL` public articles or more), all
    from one snapshot of the store. Nothing is renamed into place until every
    file is written: a failure anywhere raises it and leaves the previous site
    as it was (see :mod:`syndicate.site_build`).

    Example:
        >>> report = publish_all(store, settings, "site")  # doctest: +SKIP
        >>> report.written[:3]  # doctest: +SKIP
        ['rss.xml', 'atom.xml', 'feed.json']
    """
    root = Path(out_dir or settings.feeds_out)
    started = utcnow()
    now = now or started
    report, scopes = build_site(store, settings, root, now, jobs=jobs, progress=progress)
    writer = Writer(root, report)
    _prune(writer, set(report.written) | set(report.unchanged))
    _stamp(store, started, now)
    if ping:
        _ping_changed(settings, report, scopes)
    return report


def _prune(writer: Writer, kept: set[str]) -> None:
    """Remove feeds and pages syndicate published before but no longer makes
    (a deleted list or category, a month that emptied). Only syndicate's own
    URL layout is touched: other files in the output directory stay."""
    root = writer.out_dir
    candidates: list[str] = []
    for pattern in ("feeds/*/*", "category/*/*", "category/*/feeds/*/*", "list/*/*", "list/*/feeds/*/*"):
        candidates += [p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file()]
    for rel in candidates:
        if rel not in kept and not rel.rsplit("/", 1)[-1].startswith("."):
            writer.remove(rel)
    # folders that keep a file are not empty (article pages are looked up below, one folder each)
    holding = {parent for rel in kept if not rel.startswith("articles/") for parent in _parents(rel)}
    for pattern in ("category/*/feeds/*", "category/*/feeds", "category/*", "list/*/feeds/*", "list/*/feeds",
                    "list/*", "feeds/*"):
        for folder in sorted(root.glob(pattern), reverse=True):
            if folder.relative_to(root).as_posix() in holding:
                continue
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    _prune_pages(writer, root / "articles", kept)


def _prune_pages(writer: Writer, pages: Path, kept: set[str]) -> None:
    """The article pages no longer made, and their folders once empty: one read of ``articles/``, and
    nothing more for a page the build kept (a full build of 100,000 pages looks at no page folder)."""
    try:
        listing = os.scandir(pages)
    except (FileNotFoundError, NotADirectoryError):
        return
    with listing as entries:
        for entry in entries:
            rel = f"articles/{entry.name}/index.html"
            if rel in kept or not entry.is_dir(follow_symlinks=False):
                continue
            if os.path.isfile(os.path.join(entry.path, "index.html")):
                writer.remove(rel)
            try:
                os.rmdir(entry.path)  # only when empty: anything else in it stays, and the folder too
            except OSError:
                pass


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
    writer = Writer(root, report)
    env = make_environment(settings)
    removed = list(removed)
    keys = store.article_keys(guids) if guids is not None else store.changed_keys_since(from_iso(last or ""))
    keys += [(a.published, a.category_slug) for a in removed]
    released = store.released_between(horizon, now)
    keys += [(published, slug) for _guid, published, slug in released]
    page_guids = list(guids) if guids is not None else [a.guid for a in store.changed_since(from_iso(last or ""))]
    put_article_pages(writer, env, settings, store.articles_by_guid(page_guids + [g for g, _, _ in released]), now)
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
            writer.remove(index_path(Scope.category(slug)))
    lists = list_scopes(store)
    # A list covering every category, or any changed one, carries the change.
    scopes += [scope for scope in lists if any(scope.covers(c) for c in cat_slugs) or scope.category_slugs is None]
    categories = store.public_categories(now)
    for scope in scopes:
        publish_scope_current(writer, store, settings, env, scope, categories, lists, now)
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


def _publish_month(writer: Writer, store: Store, settings: Settings, scope: Scope, month: str, now: datetime) -> None:
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

