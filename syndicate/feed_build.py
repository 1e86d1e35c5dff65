"""Feed documents from the store: which articles each feed and archive month holds, as bytes.

The embargo and the archive rule are applied here, on the store's published-article reads
(``store/changes.py``). :mod:`syndicate.publish` writes these documents as files; the web app
(``web/feeds.py``) serves the very same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .config import Settings
from .errors import NotFound
from .feeds import (
    CONTENT_TYPES,
    FORMATS,
    SITE,
    EntryCache,
    FeedItem,
    FeedMeta,
    Scope,
    feed_items,
    feed_updated,
    month_bounds,
    month_of,
    render_feeds,
)
from .models import NewsList, utcnow
from .store import Store


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


# --- building: store -> bytes ----------------------------------------------------------
#
# The embargo and the archive rule live here, on top of the store's published-article
# reads (store/changes.py): an article is public once ``published <= now``; a month (on
# the site's calendar, ``[site] timezone``) is an archive document only once it has ended.


def open_month(settings: Settings, now: datetime) -> tuple[str, datetime]:
    """The month still running at ``now`` on the site's calendar, and its first instant (UTC)."""
    month = month_of(now, settings.tz)
    bounds = month_bounds(month, settings.tz)
    return month, bounds[0] if bounds else now


def archive_months(store: Store, settings: Settings, scope: Scope, now: datetime) -> list[str]:
    """Every finished month holding a public article of the scope, oldest first (one probe per month)."""
    _, limit = open_month(settings, now)
    months: list[str] = []
    found = store.first_published_at_or_after(None, limit, scope.category_slugs)
    while found is not None:
        month = month_of(found, settings.tz)
        months.append(month)
        bounds = month_bounds(month, settings.tz)
        if bounds is None:
            break
        found = store.first_published_at_or_after(bounds[1], limit, scope.category_slugs)
    return months


def month_neighbours(
    store: Store, settings: Settings, scope: Scope, month: str, now: datetime
) -> tuple[str | None, str | None]:
    """The nearest older and newer archive months around ``month`` (None at either end)."""
    bounds = month_bounds(month, settings.tz)
    if bounds is None:
        return None, None
    _, limit = open_month(settings, now)
    older = store.last_published_before(bounds[0], scope.category_slugs)
    newer = store.first_published_at_or_after(bounds[1], limit, scope.category_slugs) if bounds[1] < limit else None
    return (month_of(older, settings.tz) if older else None, month_of(newer, settings.tz) if newer else None)


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


def resolve_scope(store: Store, scope: Scope, now: datetime | None = None) -> Scope | None:
    """The scope with its display name (and a list's categories), or None when there is no such feed.

    A category exists while it holds a public article: one holding only
    future-dated articles has no feed yet.
    """
    if scope.kind == "list":
        try:
            return list_scope(store.get_list(scope.slug))
        except NotFound:
            return None
    if scope.kind != "category":
        return scope
    name = store.public_category_name(scope.slug, now or utcnow())
    return None if name is None else Scope.category(scope.slug, name)


def all_scopes(
    store: Store, now: datetime | None = None, categories: list[tuple[str, str, int]] | None = None
) -> list[Scope]:
    """The site, every category holding a public article and every newsletter list.

    ``categories`` is ``store.public_categories(now)`` when the caller already holds it."""
    if categories is None:
        categories = store.public_categories(now or utcnow())
    return [SITE] + [Scope.category(slug, name) for slug, name, _count in categories] + list_scopes(store)


def _documents(
    meta: FeedMeta, items: list[FeedItem], formats: tuple[str, ...] = FORMATS, cache: EntryCache | None = None
) -> list[FeedDocument]:
    bodies = render_feeds(meta, items, formats, cache)
    out = []
    for fmt in formats:
        path = meta.scope.archive_path(fmt, meta.month) if meta.month else meta.scope.feed_path(fmt)
        out.append(FeedDocument(path, fmt, bodies[fmt], meta.updated))
    return out


def build_current(
    store: Store, settings: Settings, scope: Scope, now: datetime | None = None
) -> tuple[list[FeedDocument], list[FeedItem]]:
    """The subscription feeds of a scope: the newest ``feeds_items`` public articles (indexed LIMIT)."""
    now = now or utcnow()
    fetched = store.public_newest(settings.feeds_items + 1, scope.category_slugs, now)
    articles, beyond = fetched[: settings.feeds_items], fetched[settings.feeds_items:]
    _, limit = open_month(settings, now)
    newest = store.last_published_before(limit, scope.category_slugs)
    # The feed may page to the newest archive only if it holds all of the open month and nothing older.
    cleanly = all(a.published >= limit for a in articles) and all(b.published < limit for b in beyond)
    items = feed_items(articles, settings)
    meta = FeedMeta(
        settings, scope, feed_updated(items), prev_month=month_of(newest, settings.tz) if newest else None,
        pages_cleanly=cleanly,
    )
    return _documents(meta, items), items


def build_month(
    store: Store,
    settings: Settings,
    scope: Scope,
    month: str,
    neighbours: tuple[str | None, str | None] | None = None,
    now: datetime | None = None,
) -> list[FeedDocument] | None:
    """One RFC 5005 archive document per format for a finished ``month``; None if it is open or empty."""
    now = now or utcnow()
    bounds = month_bounds(month, settings.tz)
    if bounds is None or month >= open_month(settings, now)[0]:
        return None
    articles = store.public_between(bounds[0], bounds[1], scope.category_slugs)
    if not articles:
        return None
    older, newer = neighbours if neighbours is not None else month_neighbours(store, settings, scope, month, now)
    return month_documents(settings, scope, month, feed_items(articles, settings), (older, newer))


def month_documents(
    settings: Settings, scope: Scope, month: str, items: list[FeedItem], neighbours: tuple[str | None, str | None],
    formats: tuple[str, ...] = FORMATS, cache: EntryCache | None = None,
) -> list[FeedDocument]:
    """The archive documents of a finished ``month`` from its items (newest first), already scoped.

    ``cache`` shares feed entries with the month's other scopes (see :class:`EntryCache`)."""
    older, newer = neighbours
    meta = FeedMeta(settings, scope, feed_updated(items), month=month, prev_month=older, next_month=newer)
    return _documents(meta, items, formats, cache)


def scoped_items(scope: Scope, items: list[FeedItem]) -> list[FeedItem]:
    """The items of a scope among every article's items, in the same order (what
    ``store.public_between`` with the scope's categories returns)."""
    slugs = scope.category_slugs
    if slugs is None:
        return items
    wanted = set(slugs)
    return [item for item in items if item.category_term in wanted]


def build_group(
    store: Store, settings: Settings, scope: Scope, month: str | None = None, now: datetime | None = None
) -> list[FeedDocument] | None:
    """The three documents (rss, atom, json) at one place in the URL layout, or None (404)."""
    now = now or utcnow()
    resolved = resolve_scope(store, scope, now)
    if resolved is None:
        return None
    if month is None:
        return build_current(store, settings, resolved, now)[0]
    return build_month(store, settings, resolved, month, now=now)
