"""RSS and Atom feeds, from a file or an ``http(s)://`` URL (fetched by :mod:`syndicate.fetcher`, read with feedparser).

Each entry becomes an Article: guid = the entry's id (else its link, else its title), content
sanitised, the first category the article's category and the rest its tags.
A feed that is not well-formed but still yields entries imports with a
warning; a feed that yields nothing is an error naming it. An entry with no
date takes ``Options.published`` (for a followed feed, when it was first seen)
and keeps the stored date on later reads; with none, it is an error.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from xml.sax import SAXParseException

import feedparser

from .. import fetcher
from ..errors import ParseError
from ..fetcher import FetchError, FetchPolicy
from ..models import Article
from ..sanitize import clean_html, html_to_text, one_line, slugify
from .common import Options, Parsed, Problem, Undated, detect_language, parse_date, summarize

ACCEPT = "application/rss+xml, application/atom+xml, application/feed+json;q=0.9, application/xml;q=0.9, */*;q=0.5"


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def fetch(url: str, policy: FetchPolicy) -> tuple[bytes, str]:
    """The body and final URL of ``url``, through the safe fetcher; ParseError saying why not."""
    try:
        result = fetcher.fetch(url, policy, accept=ACCEPT)
    except FetchError as exc:
        raise ParseError(f"cannot fetch feed: {exc}") from None
    return result.body, result.url


def _time(entry: Any, key: str) -> datetime | None:
    value = dict.get(entry, key)  # not entry.get: feedparser maps updated->published with a warning
    if not value:
        return None
    try:
        return parse_date(calendar.timegm(value))
    except ValueError:  # out of range (feedparser reads any year): as if the entry gave none
        return None


def _text(value: str, detail: Any) -> str:
    kind = (detail or {}).get("type", "text/plain")
    if "html" in kind:
        return one_line(html_to_text(clean_html(value)))
    return one_line(value)


def _image(entry: Any) -> str:
    for key in ("media_content", "media_thumbnail"):
        for media in entry.get(key) or []:
            url = media.get("url", "")
            if url.startswith(("http://", "https://")) and media.get("medium", "image") == "image":
                return str(url)
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image/"):
            href = link.get("href", "")
            if href.startswith(("http://", "https://")):
                return str(href)
    return ""


def _bozo(parsed: Any) -> str:
    exc = parsed.get("bozo_exception")
    if isinstance(exc, SAXParseException):
        return f"XML error: {exc.getMessage()}"
    return str(exc)


def parse(source: str, opts: Options) -> Parsed:
    """Yield the Articles of a feed file or URL, with a warning if the feed is malformed."""
    if is_url(source):
        body, base = fetch(source, opts.fetch)
    else:
        try:
            body = Path(source).read_bytes()
        except OSError as exc:
            raise ParseError(f"cannot read: {exc.strerror or exc}") from None
        base = ""
    yield from parse_bytes(body, source, opts, base=base)


def parse_bytes(body: bytes, source: str, opts: Options, *, base: str = "") -> Parsed:
    """The Articles of feed bytes already fetched (``source`` names them; ``base`` resolves relative links)."""
    # No content-location: feedparser would resolve a relative guid against it, and an
    # entry's identity must not depend on where the feed was read from.
    parsed = feedparser.parse(body, sanitize_html=True)
    entries = parsed.get("entries") or []
    if not entries:
        if not parsed.get("version"):
            raise ParseError("not an RSS or Atom feed")
        if parsed.get("bozo"):
            raise ParseError(f"cannot read feed: {_bozo(parsed)}")
        yield Problem("note", "", "the feed has no entries")
        return
    if parsed.get("bozo"):
        yield Problem("warning", "", f"feed is not well-formed ({_bozo(parsed)}); imported what could be read")
    feed = parsed.get("feed", {})
    feed_title = one_line(str(feed.get("title", "")))
    feed_language = one_line(str(feed.get("language", "")))[:2].lower()
    for n, entry in enumerate(entries, 1):
        title = _text(entry.get("title", ""), entry.get("title_detail"))
        if not title:
            yield Problem("error", f"entry {n}", "no title")
            continue
        stated = _time(entry, "published_parsed") or _time(entry, "updated_parsed")
        published = stated or opts.published
        if published is None:
            yield Problem("error", f"entry {n} ({title[:40]})", "no published or updated date")
            continue
        updated = _time(entry, "updated_parsed")
        content = entry.get("content") or []
        html_parts = [c.get("value", "") for c in content if "html" in c.get("type", "")]
        raw = html_parts[0] if html_parts else (content[0].get("value", "") if content else "")
        summary_raw = entry.get("summary", "")
        if not raw:
            raw = summary_raw
            summary_raw = ""
        body_html = clean_html(raw)
        if body_html and "<" not in body_html:
            body_html = f"<p>{body_html}</p>"
        body_text = html_to_text(body_html)
        summary = one_line(html_to_text(clean_html(summary_raw))) if summary_raw else summarize(body_text)
        terms = [one_line(t.get("term", "")) for t in entry.get("tags") or []]
        terms = [t for t in terms if t]
        link = one_line(entry.get("link", ""))
        if link and base:
            link = urljoin(base, link)
        guid = one_line(entry.get("id", "")) or link or f"urn:syndicate:{slugify(title)}"
        source_title = one_line(str((entry.get("source") or {}).get("title", ""))) or feed_title
        article = Article(
            guid=guid,
            title=title,
            slug=slugify(title),
            published=published,
            updated=updated if updated and updated > published else None,
            body_html=body_html,
            body_text=body_text,
            summary=summary,
            url=link if link.startswith(("http://", "https://")) else "",
            author=one_line(entry.get("author", "")),
            category=terms[0] if terms else "",
            tags=list(dict.fromkeys(terms[1:])),
            image=_image(entry),
            source=source_title,
            language=opts.language or feed_language or detect_language(title + " " + body_text[:2000]),
            origin=source,
        )
        # An undated entry takes opts.published (a followed feed: the fetch time) the first time it is
        # seen; later reads of it keep the stored date, so it does not move or count as edited.
        yield article if stated else Undated(article)
