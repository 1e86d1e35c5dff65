"""The one URL layout of every feed and page, and the ids and links feeds carry.

Shared by the feed writers (:mod:`syndicate.feeds`), the publisher and the web app:
``Scope`` says which articles a feed carries and where it lives, :func:`parse_path`
reads a URL path back, and months follow the site's calendar (:func:`month_of`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from urllib.parse import quote, urljoin, urlsplit

from .config import Settings
from .models import Article
from .sanitize import one_line

FORMATS = ("rss", "atom", "json")
FILENAMES = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}
EXTENSIONS = {"rss": "xml", "atom": "xml", "json": "json"}
CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
TAG_YEAR = "2024"  # fixed forever: part of every id

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_PATH = re.compile(
    r"^(?:/(?P<kind>category|list)/(?P<slug>[a-z0-9][a-z0-9-]{0,99}))?"
    r"(?:/(?P<file>rss\.xml|atom\.xml|feed\.json)"
    r"|/feeds/(?P<fmt>rss|atom|json)/(?P<month>\d{4}-\d{2})\.(?P<ext>xml|json))$"
)


@dataclass(frozen=True)
class Scope:
    """Which articles a feed carries: the whole site, one category or one list.

    A list scope carries the articles of the list's ``categories`` (all
    articles when empty) and the list's name, description and language.

    Example:
        >>> Scope.category("the-thao").feed_path("atom")
        '/category/the-thao/atom.xml'
        >>> SITE.archive_path("json", "2024-10")
        '/feeds/json/2024-10.json'
        >>> Scope.news_list("sang", categories=("kinh-te",)).feed_path("rss")
        '/list/sang/rss.xml'
    """

    kind: str = "site"  # site | category | list
    slug: str = ""
    name: str = ""
    description: str = ""
    language: str = ""
    categories: tuple[str, ...] = ()  # list scopes only; empty = every article

    @classmethod
    def category(cls, slug: str, name: str = "") -> Scope:
        if not _SLUG.match(slug):
            raise ValueError(f"category slug {slug!r} is not a URL slug (a-z, 0-9, -)")
        return cls("category", slug, name or slug)

    @classmethod
    def news_list(
        cls, slug: str, name: str = "", description: str = "", language: str = "", categories: Sequence[str] = ()
    ) -> Scope:
        if not _SLUG.match(slug):
            raise ValueError(f"list slug {slug!r} is not a URL slug (a-z, 0-9, -)")
        return cls("list", slug, name or slug, description, language, tuple(sorted(set(categories))))

    @property
    def prefix(self) -> str:
        return f"/{self.kind}/{self.slug}" if self.kind in ("category", "list") else ""

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.slug}" if self.kind in ("category", "list") else "site"

    @property
    def category_slug(self) -> str | None:
        return self.slug if self.kind == "category" else None

    @property
    def category_slugs(self) -> tuple[str, ...] | None:
        """The categories the scope is limited to, or None for every article."""
        if self.kind == "category":
            return (self.slug,)
        if self.kind == "list" and self.categories:
            return self.categories
        return None

    def covers(self, category_slug: str) -> bool:
        """True when an article of this category belongs in the scope's feeds."""
        slugs = self.category_slugs
        return slugs is None or category_slug in slugs

    def feed_path(self, fmt: str) -> str:
        return f"{self.prefix}/{FILENAMES[fmt]}"

    def archive_path(self, fmt: str, month: str) -> str:
        return f"{self.prefix}/feeds/{fmt}/{month}.{EXTENSIONS[fmt]}"

    def page_path(self) -> str:
        return f"{self.prefix}/"

    def title(self, settings: Settings) -> str:
        if self.kind == "list":
            return self.name
        return f"{settings.title} — {self.name}" if self.kind == "category" else settings.title


SITE = Scope()


@dataclass(frozen=True)
class FeedPath:
    """A parsed feed URL path: scope, format and (for archives) the month."""

    scope: Scope
    fmt: str
    month: str | None = None


def parse_path(path: str) -> FeedPath | None:
    """The feed a URL path names, or None if it names no feed.

    Example:
        >>> found = parse_path("/category/kinh-te/feeds/atom/2024-10.xml")
        >>> found.scope.key, found.fmt, found.month
        ('category/kinh-te', 'atom', '2024-10')
        >>> parse_path("/list/ban-tin-sang/feed.json").scope.key
        'list/ban-tin-sang'
        >>> parse_path("/feeds/json/2024-10.xml") is None
        True
    """
    m = _PATH.match(path)
    if m is None:
        return None
    if m["slug"]:
        scope = Scope.category(m["slug"]) if m["kind"] == "category" else Scope.news_list(m["slug"])
    else:
        scope = SITE
    if m["file"]:
        fmt = {"rss.xml": "rss", "atom.xml": "atom", "feed.json": "json"}[m["file"]]
        return FeedPath(scope, fmt)
    fmt, month = m["fmt"], m["month"]
    if m["ext"] != EXTENSIONS[fmt] or not _MONTH.match(month):
        return None
    return FeedPath(scope, fmt, month)


def month_of(value: datetime, tz: tzinfo) -> str:
    """The ``YYYY-MM`` an instant belongs to on the site's calendar.

    Example:
        >>> from zoneinfo import ZoneInfo
        >>> month_of(datetime.fromisoformat("2026-11-01T03:00:00+07:00"), ZoneInfo("Asia/Ho_Chi_Minh"))
        '2026-11'
        >>> month_of(datetime.fromisoformat("2026-11-01T03:00:00+07:00"), UTC)
        '2026-10'
    """
    return f"{value.astimezone(tz):%Y-%m}"


def month_bounds(month: str, tz: tzinfo) -> tuple[datetime, datetime] | None:
    """``[start, end)`` in UTC of a site-calendar month, or None for a month no calendar holds.

    Example:
        >>> from zoneinfo import ZoneInfo
        >>> [t.isoformat() for t in month_bounds("2026-11", ZoneInfo("Asia/Ho_Chi_Minh"))]
        ['2026-10-31T17:00:00+00:00', '2026-11-30T17:00:00+00:00']
    """
    match = _MONTH.match(month)
    if match is None:
        return None
    year, mon = int(match[1]), int(match[2])
    nyear, nmon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    if year < 1 or nyear > 9999:
        return None
    return datetime(year, mon, 1, tzinfo=tz).astimezone(UTC), datetime(nyear, nmon, 1, tzinfo=tz).astimezone(UTC)


def site_domain(settings: Settings) -> str:
    return _domain(settings.base_url)


@functools.lru_cache(maxsize=64)
def _domain(base_url: str) -> str:  # once per base URL: every article's id asks (urlsplit and IDNA, ~5 µs)
    host = urlsplit(base_url).hostname or "localhost"
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return quote(host, safe="")


def tag_uri(settings: Settings, guid: str) -> str:
    """The article's permanent id: domain, fixed year, guid; nothing else.

    Example:
        >>> from syndicate.config import Settings
        >>> tag_uri(Settings(base_url="https://news.example.org"), "vnx:123 khởi")
        'tag:news.example.org,2024:article:vnx:123%20kh%E1%BB%9Fi'
    """
    return f"tag:{site_domain(settings)},{TAG_YEAR}:article:{quote(guid, safe=':/@!$()*+,;=-._~')}"


def feed_id(settings: Settings, scope: Scope) -> str:
    return f"tag:{site_domain(settings)},{TAG_YEAR}:feed:{scope.key}"


def base(settings: Settings) -> str:
    return settings.base_url.rstrip("/")


def absolute(settings: Settings, url: str) -> str:
    """An http(s) URL, resolved against base_url; '' for any other scheme."""
    url = one_line(url)
    if not url:
        return ""
    resolved = urljoin(base(settings) + "/", url)
    if urlsplit(resolved).scheme not in ("http", "https"):
        return ""
    return quote(resolved, safe=":/?#[]@!$&'()*+,;=%-._~")


def article_page(settings: Settings, slug: str) -> str:
    """The article's page on this site: ``/articles/<slug>/`` (a directory, so a static site serves it
    from ``articles/<slug>/index.html`` with no redirect)."""
    return f"{base(settings)}/articles/{quote(slug, safe='-._~')}/"


def article_link(settings: Settings, article: Article) -> str:
    """The article's absolute link: its own URL, else its page on this site."""
    return absolute(settings, article.url) or article_page(settings, article.slug)


@dataclass(frozen=True)
class FeedLink:
    """One autodiscovery ``<link rel="alternate">``: what pages put in their <head>."""

    type: str
    title: str
    href: str
    label: str


def feed_links(settings: Settings, scope: Scope = SITE) -> list[FeedLink]:
    """Autodiscovery links for a scope's three feeds (absolute URLs).

    Example:
        >>> from syndicate.config import Settings
        >>> [link.href for link in feed_links(Settings(base_url="https://n.example"))]
        ['https://n.example/rss.xml', 'https://n.example/atom.xml', 'https://n.example/feed.json']
    """
    title = one_line(scope.title(settings))
    labels = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
    return [
        FeedLink(CONTENT_TYPES[fmt].split(";")[0], f"{title} ({labels[fmt]})", base(settings) + scope.feed_path(fmt), labels[fmt])
        for fmt in FORMATS
    ]
