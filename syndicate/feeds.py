"""RSS 2.0, Atom 1.0 and JSON Feed 1.1 bytes from articles: items in, bytes out.

A writer in Pelican's manner: nothing here touches the store or the disk.
:mod:`syndicate.publish` fetches articles and writes files; the web app serves
the same bytes. One URL layout serves both (``Scope`` and :func:`parse_path`)::

    /rss.xml  /atom.xml  /feed.json                          site feeds
    /category/<slug>/rss.xml  .../atom.xml  .../feed.json    one category
    /feeds/rss/2024-10.xml  /feeds/atom/2024-10.xml  /feeds/json/2024-10.json
    /list/<slug>/rss.xml  .../atom.xml  .../feed.json        one newsletter list
    /category/<slug>/feeds/atom/2024-10.xml ...              monthly archives
    /list/<slug>/feeds/atom/2024-10.xml ...                  (lists likewise)

Archives follow RFC 5005 (archived feeds): the subscription feed links
``prev-archive`` to the newest month; each month links ``prev-archive``
(older), ``next-archive`` (newer) and ``current``, so a reader can walk back
to the first article. Ids are tag URIs made only from the site's domain, a
fixed year and the article guid, so edits never change them.
"""

from __future__ import annotations

import functools
import html
import mimetypes
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from . import __version__
from .config import Settings
from .feed_layout import (
    CONTENT_TYPES,
    EXTENSIONS,
    FILENAMES,
    FORMATS,
    SITE,
    TAG_YEAR,
    FeedLink,
    FeedPath,
    Scope,
    absolute,
    article_link,
    article_page,
    base,
    feed_id,
    feed_links,
    month_bounds,
    month_of,
    parse_path,
    site_domain,
    tag_uri,
)
from .frames import Frames
from .models import Article
from .sanitize import clean_html, clean_text, html_to_text, one_line, slugify

__all__ = [  # the URL layout lives in feed_layout; feeds is where callers find it with the writers
    "CONTENT_TYPES", "EXTENSIONS", "FILENAMES", "FORMATS", "SITE", "TAG_YEAR", "FeedLink", "FeedPath", "Scope",
    "absolute", "article_link", "article_page", "base", "feed_id", "feed_links", "month_bounds", "month_of",
    "parse_path", "site_domain", "tag_uri", "FeedItem", "FeedMeta", "feed_item", "feed_items", "feed_updated",
    "rss_bytes", "atom_bytes", "json_feed_bytes", "render_feeds", "source_url", "WRITERS", "EntryCache",
]

EMPTY_UPDATED = datetime(2024, 1, 1, tzinfo=UTC)  # an empty feed's <updated>, so its bytes stay stable
SUMMARY_CHARS = 280

NS_ATOM = "http://www.w3.org/2005/Atom"
NS_FH = "http://purl.org/syndication/history/1.0"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_MEDIA = "http://search.yahoo.com/mrss/"
NS_XML = "http://www.w3.org/XML/1998/namespace"

@dataclass(frozen=True)
class FeedItem:
    """One article made ready for every format: cleaned, absolute, XML-safe."""

    id: str
    title: str
    link: str
    summary: str
    content_html: str
    content_text: str
    author: str
    category: str
    category_term: str
    tags: tuple[str, ...]
    published: datetime
    updated: datetime
    image: str = ""
    image_type: str = ""
    image_alt: str = ""
    language: str = ""
    summary_html: str = ""  # the summary as HTML (escaped text, cleaned by nh3): what RSS readers render
    source: str = ""  # where the article comes from, as the source names itself ("haiphong.gov.vn")
    source_url: str = ""  # the source's home page, when one is known
    published_iso: str = ""  # ``published.isoformat()``, made once for every format and the page
    updated_iso: str = ""  # ``updated.isoformat()``

    def __post_init__(self) -> None:
        if not self.published_iso:
            object.__setattr__(self, "published_iso", self.published.astimezone(UTC).isoformat())
        if not self.updated_iso:
            object.__setattr__(self, "updated_iso", self.updated.astimezone(UTC).isoformat())


_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)


def source_url(settings: Settings, source: str, article_url: str) -> str:
    """The home page of an article's source: the source itself when it is a URL or a domain name, else
    the host of the article's own URL; '' when nothing says.

    Example:
        >>> from syndicate.config import Settings
        >>> source_url(Settings(), "haiphong.gov.vn", "")
        'https://haiphong.gov.vn/'
        >>> source_url(Settings(), "Báo Hải Phòng", "https://baohaiphong.vn/a/1.html")
        'https://baohaiphong.vn/'
    """
    source = one_line(source)
    if source.startswith(("http://", "https://")):
        return absolute(settings, source)
    if _DOMAIN.match(source):
        return f"https://{source.lower()}/"
    own = absolute(settings, article_url)
    if own and source:
        parts = urlsplit(own)
        return f"{parts.scheme}://{parts.netloc}/"
    return ""


def _with_lead_image(content_html: str, image: str, alt: str) -> str:
    """The lead image inside the content (a figure first), unless the body already shows it."""
    if not image or image in content_html or html.escape(image) in content_html:
        return content_html
    figure = f'<figure><img src="{html.escape(image)}" alt="{html.escape(alt)}"></figure>'
    return clean_html(figure + ("\n" + content_html if content_html else ""))


# Fields that repeat across articles (a handful of authors, categories, languages, sources): each
# distinct value is cleaned once per process. Titles and bodies are not: they hardly ever repeat.
_line = functools.lru_cache(maxsize=4096)(one_line)
_slug = functools.lru_cache(maxsize=4096)(slugify)


def summary_html(summary: str) -> str:
    """The summary (clean text) as HTML for RSS readers: what ``clean_html(html.escape(summary))`` gives.

    Escaped clean text holds no tag, so nh3 hands it back as it is, with one exception: a byte
    order mark, which the HTML parser drops (tests/test_feeds.py holds the equivalence over
    generated text); only then is nh3 asked."""
    escaped = html.escape(summary, quote=False)
    return clean_html(escaped) if "\ufeff" in escaped else escaped


def feed_item(article: Article, settings: Settings) -> FeedItem:
    """Clean one article once; each writer then only serialises."""
    content_html = clean_html(article.body_html) if article.body_html.strip() else ""
    text = clean_text(article.body_text).strip()
    if not content_html and text:
        content_html = "\n".join(f"<p>{html.escape(p, quote=False)}</p>" for p in text.split("\n\n") if p.strip())
    if not text and content_html:
        text = html_to_text(content_html)
    summary = clean_text(article.summary).strip()
    if not summary and text:
        summary = text[:SUMMARY_CHARS].rsplit(" ", 1)[0] + "…" if len(text) > SUMMARY_CHARS else text
    image = absolute(settings, article.image)
    image_type = (mimetypes.guess_type(urlsplit(image).path)[0] or "image/jpeg") if image else ""
    image_alt = _line(article.image_alt)
    content_html = _with_lead_image(content_html, image, image_alt)
    published = article.published.astimezone(UTC)
    updated = max(article.changed.astimezone(UTC), published)
    published_iso = published.isoformat()
    source = _line(article.source)
    return FeedItem(
        id=tag_uri(settings, article.guid),
        title=one_line(article.title) or "(untitled)",
        link=article_link(settings, article),
        summary=summary,
        content_html=content_html,
        content_text=text,
        author=_line(article.author),
        category=_line(article.category),
        category_term=_slug(article.category) if article.category else "",  # Article.category_slug
        tags=tuple(t for t in (_line(t) for t in article.tags) if t),
        published=published,
        updated=updated,
        image=image,
        image_type=image_type if image_type.startswith("image/") else "image/jpeg",
        image_alt=image_alt,
        language=_line(article.language),
        summary_html=summary_html(summary) if summary else "",
        source=source,
        source_url=source_url(settings, article.source, article.url) if article.source else "",
        published_iso=published_iso,
        updated_iso=updated.isoformat() if updated != published else published_iso,
    )


def feed_items(articles: Sequence[Article], settings: Settings) -> list[FeedItem]:
    return [feed_item(a, settings) for a in articles]


@dataclass(frozen=True)
class FeedMeta:
    """Everything feed-level, for all three formats of one document.

    ``month`` is None for the subscription (current) feed; then
    ``prev_month`` is the newest archive month (a finished month). For an
    archive document ``prev_month``/``next_month`` are its older/newer
    neighbours. ``pages_cleanly`` says the current feed holds every public
    article newer than ``prev_month``, so JSON Feed's ``next_url`` may point
    there without repeating or skipping an item (archives always may).
    """

    settings: Settings
    scope: Scope
    updated: datetime
    month: str | None = None
    prev_month: str | None = None
    next_month: str | None = None
    pages_cleanly: bool = False

    def url(self, path: str) -> str:
        return base(self.settings) + path

    def self_url(self, fmt: str) -> str:
        path = self.scope.archive_path(fmt, self.month) if self.month else self.scope.feed_path(fmt)
        return self.url(path)

    def alternate_url(self) -> str:
        return self.url(self.scope.page_path())

    def archive_links(self, fmt: str) -> list[tuple[str, str]]:
        """(rel, href) pairs of RFC 5005 links for this document."""
        links = []
        if self.month:
            links.append(("current", self.url(self.scope.feed_path(fmt))))
        if self.prev_month:
            links.append(("prev-archive", self.url(self.scope.archive_path(fmt, self.prev_month))))
        if self.month and self.next_month:
            links.append(("next-archive", self.url(self.scope.archive_path(fmt, self.next_month))))
        return links

    @property
    def title(self) -> str:
        title = one_line(self.scope.title(self.settings))
        return f"{title} ({self.month})" if self.month else title

    @property
    def subtitle(self) -> str:
        own = one_line(self.scope.description) if self.scope.kind == "list" else ""
        return own or one_line(self.settings.subtitle) or self.title

    @property
    def language(self) -> str:
        return one_line(self.scope.language) or one_line(self.settings.language)

    @property
    def icon(self) -> str:
        return absolute(self.settings, self.settings.icon) if self.settings.icon else ""

    @property
    def logo(self) -> str:
        return absolute(self.settings, self.settings.logo) if self.settings.logo else ""

    @property
    def hub(self) -> str:
        return absolute(self.settings, self.settings.feeds_hub_url) if self.settings.feeds_hub_url else ""


def feed_updated(items: Sequence[FeedItem]) -> datetime:
    """The feed's <updated>: the newest change among its items."""
    return max((i.updated for i in items), default=EMPTY_UPDATED)


# --- feedgen extensions: what feedgen cannot say by itself -------------------------------


class _FeedExtension(BaseExtension):  # type: ignore[misc]
    """Feed-level links feedgen drops from RSS (hub, RFC 5005) and <fh:archive/>."""

    def __init__(self) -> None:
        self.links: list[tuple[str, str]] = []
        self.archive = False

    def extend_ns(self) -> dict[str, str]:
        return {"fh": NS_FH, "dc": NS_DC, "media": NS_MEDIA}

    def _add(self, parent: Any, atom: bool) -> None:
        tag = "link" if atom else f"{{{NS_ATOM}}}link"
        for rel, href in self.links:
            etree.SubElement(parent, tag, rel=rel, href=href)
        if self.archive:
            etree.SubElement(parent, f"{{{NS_FH}}}archive")

    def extend_atom(self, feed: Any) -> Any:
        self._add(feed, atom=True)
        return feed

    def extend_rss(self, feed: Any) -> Any:
        self._add(feed[0], atom=False)
        return feed


class _EntryExtension(BaseEntryExtension):  # type: ignore[misc]
    """RSS items: <dc:creator> for a name-only author, <atom:updated>, an HTML <description>.

    Atom entries: feedgen 1.0 drops rel/type/length from entry links (a
    shadowed variable), so they are rewritten here from ``links``.
    """

    def __init__(self) -> None:
        self.creator = ""
        self.updated = ""
        self.description = ""
        self.links: list[dict[str, str]] = []
        self.source = ""
        self.source_url = ""
        self.source_id = ""
        self.language = ""  # set only when it differs from the feed's
        self.image = ""
        self.image_type = ""
        self.pub_date = ""  # RSS <pubDate> when feedgen is not given the date (see EntryCache.entry_bytes)

    def extend_ns(self) -> dict[str, str]:
        return {"dc": NS_DC, "media": NS_MEDIA}

    def _media(self, entry: Any) -> None:
        if self.image:
            etree.SubElement(entry, f"{{{NS_MEDIA}}}content", url=self.image, type=self.image_type, medium="image")

    def extend_rss(self, entry: Any) -> Any:
        if self.pub_date:  # where feedgen puts it: its last element (it writes no <source> for us)
            etree.SubElement(entry, "pubDate").text = self.pub_date
        # RSS readers render <description> as HTML: it carries the summary as cleaned HTML
        # (feedgen would write the plain-text summary, whose "<script>" a reader runs).
        description = entry.find("description")
        if description is not None:
            description.text = self.description
        if self.source and self.source_url:  # RSS 2.0 <source> needs its url
            etree.SubElement(entry, "source", url=self.source_url).text = self.source
        if self.language:
            etree.SubElement(entry, f"{{{NS_DC}}}language").text = self.language
        self._media(entry)
        if self.creator:
            etree.SubElement(entry, f"{{{NS_DC}}}creator").text = self.creator
        if self.updated:
            etree.SubElement(entry, f"{{{NS_ATOM}}}updated").text = self.updated
        return entry

    def extend_atom(self, entry: Any) -> Any:
        for old in entry.findall("link"):
            entry.remove(old)
        for attrs in self.links:
            etree.SubElement(entry, "link", **attrs)
        if self.source:  # RFC 4287 atom:source: id, title, updated (of this entry there), link
            source = etree.SubElement(entry, "source")
            etree.SubElement(source, "id").text = self.source_id
            if self.source_url:
                etree.SubElement(source, "link", rel="alternate", href=self.source_url, type="text/html")
            etree.SubElement(source, "title").text = self.source
            etree.SubElement(source, "updated").text = self.updated
        if self.language:
            entry.set(f"{{{NS_XML}}}lang", self.language)
        self._media(entry)
        return entry


class _Frame:
    """Where one entry of a feed document is serialised by itself, byte for byte as it reads in the document.

    feedgen builds a whole document as one lxml tree and lxml writes it; a month's site archive
    then holds every entry's elements and feedgen objects at once (tens of MB). Here an entry's
    element goes alone into a copy of the document's outer elements (``<rss><channel>`` or
    ``<feed>``, with the same namespace declarations: they come from feedgen, from a generator
    with the same extension), lxml pretty-prints that, and the entry's lines are cut out: the
    indentation and namespace prefixes are those the whole document gives it, as libxml2 writes
    each child of an element on its own lines whatever its siblings are. A document is then
    feedgen's document without entries, its closing lines cut off, the entries' bytes and the
    closing lines. tests/test_feed_frames.py holds the equivalence with feedgen's whole-tree output
    (generated items and feeds, against the documents feedgen writes from one tree).
    """

    def __init__(self, fmt: str) -> None:
        fg = _new_generator()
        fg.id("tag:frame")
        fg.title("frame")
        fg.link(href="https://frame.invalid/", rel="alternate")
        fg.description("frame")
        # feedgen's own tree for a document (what rss_str/atom_str serialise), so the namespaces are its own
        root, _doc = fg._create_rss() if fmt == "rss" else fg._create_atom()
        self.container = root[0] if fmt == "rss" else root
        for child in list(self.container):
            self.container.remove(child)
        self.root = root
        marker = etree.SubElement(self.container, "syndicate-marker")
        out = self._serialise()
        self.container.remove(marker)
        at = out.index(b"<syndicate-marker/>")
        self.start = out.rindex(b"\n", 0, at) + 1  # the entry's lines begin after the container's start tag
        self.end = len(out) - (at + len(b"<syndicate-marker/>\n"))  # and end before its end tag
        self.closing = out[len(out) - self.end:]  # the document's last lines: "  </channel>\n</rss>\n"

    def _serialise(self) -> bytes:
        out: bytes = etree.tostring(self.root, pretty_print=True, encoding="UTF-8")
        return out

    def entry_bytes(self, element: Any) -> bytes:
        self.container.append(element)
        try:
            out = self._serialise()
        finally:
            self.container.remove(element)
        return out[self.start:len(out) - self.end]

    def document(self, shell: bytes, entries: list[bytes]) -> bytes:
        """feedgen's document without entries (``shell``) with ``entries`` in its place."""
        if not shell.endswith(self.closing):  # pragma: no cover - a feedgen or lxml that writes otherwise
            raise RuntimeError("feed document does not end as its frame does")
        return b"".join([shell[: len(shell) - len(self.closing)], *entries, self.closing])


XML_FORMATS = ("rss", "atom")
_FRAMES = threading.local()  # a frame is lent its entry while it serialises: one set per thread (serve's)


def _frame(fmt: str) -> _Frame:
    """This thread's frame for ``fmt``, made once (a quarter of a millisecond a pair, per feed group otherwise)."""
    frames: dict[str, _Frame] | None = getattr(_FRAMES, "frames", None)
    if frames is None:
        frames = _FRAMES.frames = {}
    frame = frames.get(fmt)
    if frame is None:
        frame = frames[fmt] = _Frame(fmt)
    return frame


class EntryCache:
    """Each article's entry in every XML format, as bytes, made once and shared by every document holding it.

    A full build puts each article in the site's archive month, its
    category's and its lists'. The entry depends only on the item and on
    whether the item's language differs from the feed's, which is the key;
    each key also holds the item itself, so a different item (even an equal
    one, or an edited article) never meets another's entry. The feedgen
    entry of an item is made once, serialised in each of ``formats`` and
    dropped: what stays is bytes (about the size of the entry in the
    documents). Use one cache for one batch of items (a month) and drop it
    with them.
    """

    def __init__(self, formats: Sequence[str] = XML_FORMATS) -> None:
        self.formats = tuple(fmt for fmt in XML_FORMATS if fmt in formats)
        # (id of the item, own language) -> (the item, what was made of it: bytes per XML format, "json": a dict)
        self._entries: dict[tuple[int, bool], tuple[FeedItem, dict[str, Any]]] = {}

    def frame(self, fmt: str) -> _Frame:
        return _frame(fmt)

    def _made(self, item: FeedItem, own_language: bool) -> dict[str, Any]:
        """What was made of ``item`` so far (nothing for another item, even an equal one)."""
        found = self._entries.get((id(item), own_language))
        if found is not None and found[0] is item:
            return found[1]
        made: dict[str, Any] = {}
        self._entries[(id(item), own_language)] = (item, made)
        return made

    def entry_bytes(self, meta: FeedMeta, item: FeedItem, fmt: str) -> bytes:
        own_language = bool(item.language) and item.language != meta.language  # _own_language, inline: hot
        made = self._made(item, own_language)
        out: bytes | None = made.get(fmt)
        if out is not None:
            return out
        v = _entry_values(meta.settings, item, own_language)
        shape = tuple(map(bool, v[:_V_TEXT]))
        frames = _entry_frames()
        fe = None
        accepted: bool | None = None  # whether feedgen takes every value: asked once, when a frame is there
        # RSS first, from an entry without the published date (its <pubDate> comes from rfc2822, not
        # from feedgen's setlocale dance, ~4% of a full build); then the date, for Atom's <published>.
        for wanted in XML_FORMATS:
            if wanted != fmt and (wanted not in self.formats or wanted in made):
                continue
            frame = frames.get((wanted, shape))
            if frame is not None and accepted is None:
                accepted = _accepted(v)
            if frame is not None and accepted:
                data = frame.entry_bytes(v)
            else:
                if fe is None:
                    fe = _feedgen_entry(v, feedgen_dates=False)
                data = _feedgen_entry_bytes(fe, v, wanted)
                _offer_entry_frame(wanted, shape, v, data)
            made[wanted] = data
        made_bytes: bytes = made[fmt]
        return made_bytes

    def json_entry(self, item: FeedItem, own_language: bool) -> dict[str, Any]:
        """The item's JSON Feed item (:func:`json_entry`), made once for every document holding it."""
        made = self._made(item, own_language)
        entry: dict[str, Any] | None = made.get("json")
        if entry is None:
            entry = made["json"] = json_entry(item, own_language)
        return entry

    def forget(self, fmt: str | None = None) -> None:
        """Drop what was made of every item in ``fmt`` (None: in every format), once no document needs it."""
        if fmt is None:
            self._entries.clear()
            return
        for _item, made in self._entries.values():
            made.pop(fmt, None)


def _own_language(meta: FeedMeta, item: FeedItem) -> bool:
    return bool(item.language) and item.language != meta.language


_ZERO = timedelta(0)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc2822(value: datetime) -> str:
    """What feedgen writes for an RSS date (``strftime('%a, %d %b %Y %H:%M:%S %z')`` in the C locale),
    without its two ``setlocale`` calls per date: names from tables (the C locale's), the year
    unpadded as glibc writes it, the offset from strftime unless it is UTC's.

    Example:
        >>> rfc2822(datetime(2026, 10, 31, 16, 58, 25, tzinfo=UTC))
        'Sat, 31 Oct 2026 16:58:25 +0000'
    """
    zone = "+0000" if value.utcoffset() == _ZERO else value.strftime("%z")
    return (
        f"{_DAYS[value.weekday()]}, {value.day:02d} {_MONTHS[value.month - 1]} {value.year} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} {zone}"
    )


# What _feedgen_entry hands feedgen, by slot: an item's text, then the two dates feedgen formats itself
# (Atom's <published> and <updated>). An entry frame (_EntryFrame) puts each back in its place.
(_V_ID, _V_TITLE, _V_LINK, _V_SUMMARY, _V_DESCRIPTION, _V_CONTENT, _V_AUTHOR, _V_TERM, _V_LABEL, _V_PUB_DATE,
 _V_UPDATED_ISO, _V_SOURCE, _V_SOURCE_URL, _V_SOURCE_ID, _V_LANGUAGE, _V_IMAGE, _V_IMAGE_TYPE) = range(17)
_V_TEXT = 17  # the slots holding text; then the dates
_V_PUBLISHED, _V_UPDATED = 17, 18


def _entry_values(settings: Settings, item: FeedItem, own_language: bool) -> tuple[Any, ...]:
    """Everything an item's feed entry says, as feedgen is given it (see the ``_V_`` slots); '' for what it omits."""
    source = item.source
    return (
        item.id, item.title, item.link, item.summary, item.summary_html if item.summary else "", item.content_html,
        item.author, (item.category_term or item.category) if item.category else "", item.category,
        rfc2822(item.published), item.updated_iso, source, item.source_url if source else "",
        (item.source_url or f"tag:{site_domain(settings)},{TAG_YEAR}:source:{quote(source, safe='')}") if source else "",
        item.language if own_language else "", item.image, item.image_type if item.image else "",
        item.published, item.updated,
    )


def _entry(settings: Settings, item: FeedItem, own_language: bool, feedgen_dates: bool = True) -> FeedEntry:
    """feedgen's entry for an item. ``feedgen_dates=False`` leaves the published date out of it (the
    RSS extension writes <pubDate>): call ``fe.published(item.published)`` before its Atom entry."""
    return _feedgen_entry(_entry_values(settings, item, own_language), feedgen_dates)


def _feedgen_entry(v: Sequence[Any], feedgen_dates: bool) -> FeedEntry:
    fe = FeedEntry()
    fe.register_extension("syndicate", _EntryExtension, atom=True, rss=True)
    ext: _EntryExtension = fe.syndicate
    fe.id(v[_V_ID])
    fe.guid(v[_V_ID], permalink=False)
    fe.title(v[_V_TITLE])
    fe.link(href=v[_V_LINK], rel="alternate")
    ext.links = [{"href": v[_V_LINK], "rel": "alternate", "type": "text/html"}]
    if v[_V_SUMMARY]:
        fe.summary(v[_V_SUMMARY])
        ext.description = v[_V_DESCRIPTION]
    if v[_V_CONTENT]:
        fe.content(v[_V_CONTENT], type="html")
    if v[_V_AUTHOR]:
        fe.author(name=v[_V_AUTHOR])
        ext.creator = v[_V_AUTHOR]
    if v[_V_LABEL]:
        fe.category(term=v[_V_TERM], label=v[_V_LABEL])
    if feedgen_dates:
        fe.published(v[_V_PUBLISHED])
    else:
        ext.pub_date = v[_V_PUB_DATE]
    fe.updated(v[_V_UPDATED])
    ext.updated = v[_V_UPDATED_ISO]
    ext.source, ext.source_url, ext.source_id = v[_V_SOURCE], v[_V_SOURCE_URL], v[_V_SOURCE_ID]
    ext.language = v[_V_LANGUAGE]
    if v[_V_IMAGE]:
        fe.enclosure(v[_V_IMAGE], 0, v[_V_IMAGE_TYPE])
        ext.links.append({"href": v[_V_IMAGE], "rel": "enclosure", "type": v[_V_IMAGE_TYPE], "length": "0"})
        ext.image, ext.image_type = v[_V_IMAGE], v[_V_IMAGE_TYPE]
    return fe


def _feedgen_entry_bytes(fe: FeedEntry, v: Sequence[Any], fmt: str) -> bytes:
    """feedgen's entry ``fe`` (made with ``feedgen_dates=False``) serialised in ``fmt`` by this thread's frame."""
    if fmt == "rss":
        return _frame("rss").entry_bytes(fe.rss_entry())
    fe.published(v[_V_PUBLISHED])
    return _frame("atom").entry_bytes(fe.atom_entry())


# A probe: private-use characters around the slot, and a tab and a quote, which libxml2 writes as they
# are in text and as "&#9;&quot;" in an attribute: the probe says how its slot is escaped there.
_PROBE = re.compile('\ue000([0-9]+)(\t"|&#9;&quot;)\ue001')
_PROBE_DATES = {_V_PUBLISHED: datetime(1001, 1, 1, 0, 0, 1, tzinfo=UTC), _V_UPDATED: datetime(1001, 1, 1, 0, 0, 2, tzinfo=UTC)}


def _text(value: str) -> str:
    """What libxml2 writes for ``value`` in an element's text."""
    out = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return out.replace("\r", "&#13;") if "\r" in out else out


_ATTRIBUTE = str.maketrans({"\t": "&#9;", "\n": "&#10;", "\r": "&#13;", '"': "&quot;"})


def _attribute(value: str) -> str:
    """What libxml2 writes for ``value`` in an attribute's value."""
    out = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return out.translate(_ATTRIBUTE) if ('"' in out or "\t" in out or "\n" in out or "\r" in out) else out


class _EntryFrame:
    """One kind of feed entry in one format as its constant text and the slots between, so an entry is a
    join of escaped values instead of a feedgen entry built, turned into elements and serialised (about
    a tenth of the time: most of a full build went there).

    Made by serialising feedgen's entry of probes (:func:`_feedgen_entry`, the code every other entry
    comes from) in the document's frame. A kind is which of the ``_V_`` text slots are empty, all
    ``_feedgen_entry`` and feedgen look at; a frame is kept only once it gave a real entry byte for
    byte as feedgen does (:func:`_offer_entry_frame`), and a value lxml would refuse goes to feedgen,
    which says so. tests/test_feed_frames.py holds the equivalence over generated items."""

    def __init__(self, fmt: str, shape: tuple[bool, ...]) -> None:
        self.fmt, self.shape = fmt, shape
        probes: list[Any] = [f'\ue000{i}\t"\ue001' if filled else "" for i, filled in enumerate(shape)]
        probes += [_PROBE_DATES[_V_PUBLISHED], _PROBE_DATES[_V_UPDATED]]
        out = _feedgen_entry_bytes(_feedgen_entry(probes, feedgen_dates=False), probes, fmt).decode("utf-8")
        for slot, probe_date in _PROBE_DATES.items():
            out = out.replace(probe_date.isoformat(), f'\ue000{slot}\t"\ue001')
        pieces = _PROBE.split(out)
        self.parts = pieces[0::3]
        self.slots = [(int(slot), quoted != '\t"') for slot, quoted in zip(pieces[1::3], pieces[2::3], strict=True)]

    def entry_bytes(self, v: Sequence[Any]) -> bytes:
        """The entry of the values ``v``, which feedgen and lxml accept (:func:`_accepted`)."""
        parts = self.parts
        out = [parts[0]]
        for (slot, in_attribute), part in zip(self.slots, parts[1:], strict=True):
            value = v[slot]
            if slot >= _V_TEXT:
                out.append(value.isoformat())
            else:
                out.append(_attribute(value) if in_attribute else _text(value))
            out.append(part)
        return "".join(out).encode("utf-8")

    def escapes_as_feedgen(self) -> bool:
        """True when this frame escapes, in every slot, each character libxml2 writes differently in text
        and in attributes as feedgen's entry does under the libxml2 running here."""
        v: list[Any] = [_EVERY_ESCAPE if filled else "" for filled in self.shape]
        v += [_PROBE_DATES[_V_PUBLISHED], _PROBE_DATES[_V_UPDATED]]
        return self.entry_bytes(v) == _feedgen_entry_bytes(_feedgen_entry(v, feedgen_dates=False), v, self.fmt)


_EVERY_ESCAPE = 'x &amp; <b>"\'\r\n\t]]> \u00a0Đ\U0001f600'  # what a frame's escaping must match feedgen's on


def _accepted(v: Sequence[Any]) -> bool:
    """True when feedgen takes the entry values ``v``: dates with their zones, text lxml takes (no control
    character, lone surrogate, U+FFFE or U+FFFF), asked of lxml itself, in one go (~10 µs for an article)."""
    if v[_V_PUBLISHED].tzinfo is None or v[_V_UPDATED].tzinfo is None:
        return False
    check = getattr(_FRAMES, "check", None)
    if check is None:
        check = _FRAMES.check = etree.Element("check")
    try:
        check.text = "".join(v[:_V_TEXT])
    except (ValueError, UnicodeError):
        return False
    return True


_EntryKey = tuple[str, tuple[bool, ...]]  # (format, which of the _V_ text slots are filled)


def _entry_frames() -> Frames[_EntryKey, _EntryFrame]:
    """This thread's entry frames by format and kind (see :class:`syndicate.frames.Frames`)."""
    frames: Frames[_EntryKey, _EntryFrame] | None = getattr(_FRAMES, "entries", None)
    if frames is None:
        frames = _FRAMES.entries = Frames()
    return frames


def _offer_entry_frame(fmt: str, shape: tuple[bool, ...], v: Sequence[Any], made: bytes) -> None:
    """Feedgen wrote ``made`` for the values ``v``: a frame of their kind is kept when it gives those bytes
    and feedgen's for an entry holding every character libxml2 escapes, in each of its slots."""

    def make() -> _EntryFrame | None:
        try:
            return _EntryFrame(fmt, shape)
        except (ValueError, TypeError):  # pragma: no cover - a feedgen that refuses a probe
            return None

    _entry_frames().offer((fmt, shape), make, lambda frame: frame.entry_bytes(v) == made and frame.escapes_as_feedgen())


def _new_generator() -> FeedGenerator:
    fg = FeedGenerator()
    fg.register_extension("syndicate", _FeedExtension, _EntryExtension, atom=True, rss=True)
    return fg


def _generator(meta: FeedMeta, fmt: str) -> FeedGenerator:
    """feedgen's generator for one document, every feed-level field set and no entry (see :class:`_Frame`)."""
    fg = _new_generator()
    fg.id(feed_id(meta.settings, meta.scope))
    fg.title(meta.title)
    fg.subtitle(meta.subtitle)
    fg.author(name=one_line(meta.settings.title) or "syndicate")
    fg.link(href=meta.self_url(fmt), rel="self", type=CONTENT_TYPES[fmt].split(";")[0])
    fg.link(href=meta.alternate_url(), rel="alternate", type="text/html")  # last: RSS <link>
    if meta.language:
        fg.language(meta.language)
    fg.updated(meta.updated)
    icon, logo = meta.icon, meta.logo
    if logo or icon:
        if fmt == "rss":
            fg.image(url=logo or icon, title=meta.title, link=meta.alternate_url())
        if icon:
            fg.icon(icon)
        if logo:
            fg.logo(logo)
    fg.ttl(meta.settings.feeds_ttl)
    fg.generator("syndicate", version=__version__)
    ext: _FeedExtension = fg.syndicate
    ext.links = ([("hub", meta.hub)] if meta.hub else []) + meta.archive_links(fmt)
    ext.archive = meta.month is not None
    return fg


def _xml_bytes(meta: FeedMeta, items: Sequence[FeedItem], fmt: str, cache: EntryCache | None) -> bytes:
    cache = cache or EntryCache((fmt,))
    fg = _generator(meta, fmt)
    shell: bytes = (fg.rss_str if fmt == "rss" else fg.atom_str)(pretty=True, encoding="UTF-8")
    return cache.frame(fmt).document(shell, [cache.entry_bytes(meta, item, fmt) for item in items])


def rss_bytes(meta: FeedMeta, items: Sequence[FeedItem], cache: EntryCache | None = None) -> bytes:
    """RSS 2.0 with content:encoded, dc:creator, atom:link self/hub/archives."""
    return _xml_bytes(meta, items, "rss", cache)


def atom_bytes(meta: FeedMeta, items: Sequence[FeedItem], cache: EntryCache | None = None) -> bytes:
    """Atom 1.0 with content type="html", RFC 5005 links and fh:archive."""
    return _xml_bytes(meta, items, "atom", cache)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def json_entry(item: FeedItem, own_language: bool) -> dict[str, Any]:
    """One JSON Feed item; ``own_language``: the item's language differs from the feed's."""
    entry: dict[str, Any] = {"id": item.id, "url": item.link, "title": item.title}
    if item.content_html:
        entry["content_html"] = item.content_html
    entry["content_text"] = item.content_text
    if item.summary:
        entry["summary"] = item.summary
    if item.image:
        entry["image"] = item.image
    entry["date_published"] = item.published_iso
    entry["date_modified"] = item.updated_iso
    if item.author:
        entry["authors"] = [{"name": item.author}]
    tags = ([item.category] if item.category else []) + [t for t in item.tags if t != item.category]
    if tags:
        entry["tags"] = tags
    if own_language:
        entry["language"] = item.language
    if item.image:
        entry["attachments"] = [{"url": item.image, "mime_type": item.image_type}]
    if item.source:
        entry["_syndicate"] = {"source": {"title": item.source, **({"url": item.source_url} if item.source_url else {})}}
    return entry


def json_feed_bytes(meta: FeedMeta, items: Sequence[FeedItem], cache: EntryCache | None = None) -> bytes:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1), written by hand.

    ``next_url`` walks to older items (the archive months), never to a page
    holding an item already seen (see ``FeedMeta.pages_cleanly``);
    ``_rfc5005`` is an extension object carrying the same links as the XML
    feeds.
    """
    doc: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": meta.title,
        "home_page_url": meta.alternate_url(),
        "feed_url": meta.self_url("json"),
        "description": meta.subtitle,
        "authors": [{"name": one_line(meta.settings.title) or "syndicate"}],
    }
    if meta.language:
        doc["language"] = meta.language
    if meta.logo or meta.icon:
        doc["icon"] = meta.logo or meta.icon
        doc["favicon"] = meta.icon or meta.logo
    if meta.hub:
        doc["hubs"] = [{"type": "WebSub", "url": meta.hub}]
    links = dict(meta.archive_links("json"))
    if "prev-archive" in links and (meta.month is not None or meta.pages_cleanly):
        doc["next_url"] = links["prev-archive"]  # the next page holds only older items
    if links or meta.month:
        doc["_rfc5005"] = {
            "archive": meta.month is not None,
            **{rel.replace("-", "_"): href for rel, href in links.items()},
        }
    doc["_syndicate"] = {"updated": _iso(meta.updated), "ttl": meta.settings.feeds_ttl}
    entry = cache.json_entry if cache is not None else json_entry
    doc["items"] = [entry(item, _own_language(meta, item)) for item in items]
    # Byte for byte what json.dumps(doc, ensure_ascii=False, indent=2) + "\n" writes (tests/golden), in C:
    # the standard library's indenting encoder is pure Python and was a fifth of a full build.
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


WRITERS = {"rss": rss_bytes, "atom": atom_bytes, "json": json_feed_bytes}


def render_feeds(
    meta: FeedMeta, items: Sequence[FeedItem], formats: Sequence[str] = FORMATS, cache: EntryCache | None = None
) -> dict[str, bytes]:
    """Every format of one document, from items cleaned once (and feed entries made once, with ``cache``)."""
    cache = cache or EntryCache(formats)
    return {fmt: WRITERS[fmt](meta, items, cache) for fmt in formats}
