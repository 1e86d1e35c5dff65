"""News pages with no feed: the main text and its facts out of a site's HTML.

trafilatura finds the article among the navigation, sidebars, related-links
lists and cookie banners, and reads the metadata a news page carries (Open
Graph, ``article:*`` meta, JSON-LD, bylines): title, date, author, category,
site name, lead image. Its HTML output keeps paragraphs, sub-headings and the
images with their captions; that goes through nh3 like every other source.
A trailing "Nguồn tin: X" / "Source: X" line becomes the article's source.

:func:`parse_page` turns one page's bytes into an Article (ParseError when
the page holds no readable article); :func:`article_links` lists the article
links of a section (index) page, same host only, for ``--kind index``.
"""

from __future__ import annotations

import re
from datetime import datetime
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

from ..errors import ParseError
from ..models import Article
from ..sanitize import clean_html, html_to_text, one_line, slugify
from .common import decode, detect_language, parse_date, summarize

__all__ = ["article_links", "feed_links", "parse_page"]

_SOURCE_P = re.compile(r"<p[^>]*>\s*(?:nguồn tin|nguồn|source)\s*:\s*([^<]{1,200}?)\s*</p>\s*$", re.I)
_LEADING_H1 = re.compile(r"^\s*<h1[^>]*>.*?</h1>\s*", re.S | re.I)
_DATE_OUT = {"outputformat": "%Y-%m-%dT%H:%M:%S%z", "original_date": True, "extensive_search": False}
# trafilatura folds every Unicode space into " "; a no-break space ("KH&CN\xa0trân") is text as
# written, so it rides through the extractor as a private-use character and comes back after.
_NBSP_STANDIN = "\ue0a0"
_IMG = re.compile(r'<img src="([^"]+)"(?: alt="([^"]*)")?\s*/>')
_PASSWORD = re.compile(r"""<input\b[^>]*\btype\s*=\s*["']?password\b""", re.I)
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json", "application/json")


def _figure(m: re.Match[str]) -> str:
    """trafilatura keeps a caption as the image's alt text; give it back its own <figcaption>."""
    src, alt = m.group(1), m.group(2) or ""
    caption = f"<figcaption>{alt}</figcaption>" if alt else ""
    return f'<figure><img src="{src}" alt="{alt}">{caption}</figure>'


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else decode(raw)


def parse_page(raw: bytes | str, url: str, *, category: str = "", language: str = "",
               fallback_published: datetime | None = None) -> Article:
    """The article on a news page at ``url``.

    Example:
        >>> page = ('<html><head><title>Tin</title><meta property="article:published_time" '
        ...         'content="2026-11-20T08:00:00+07:00"></head><body><nav>Trang chủ</nav><article>'
        ...         '<h1>Khai trương tuyến phố</h1><p>' + 'Tối 11/10, quận Ngô Quyền tổ chức khai trương. ' * 8 +
        ...         '</p></article></body></html>')
        >>> a = parse_page(page, "https://example.org/tin/1.html")
        >>> a.title, a.guid, a.published.isoformat()
        ('Khai trương tuyến phố', 'https://example.org/tin/1.html', '2026-11-20T01:00:00+00:00')
    """
    import trafilatura

    html = _text(raw).replace(_NBSP_STANDIN, "").replace("\xa0", _NBSP_STANDIN).replace("&nbsp;", _NBSP_STANDIN)
    if _PASSWORD.search(html):  # a paywall or intranet login the URL redirected to: its words are no article
        raise ParseError("the page is a login form (it asks for a password), not an article")
    try:
        doc = trafilatura.bare_extraction(
            html, url=url, with_metadata=True, include_images=True, include_comments=False,
            include_tables=True, favor_precision=True, date_extraction_params=_DATE_OUT,
        )
        body = trafilatura.extract(
            html, url=url, output_format="html", include_images=True, include_comments=False,
            include_tables=True, favor_precision=True, with_metadata=False,
        )
    except Exception as exc:  # a page the extractor chokes on is this page's error, never the run's
        raise ParseError(f"the page could not be read ({type(exc).__name__}: {exc})") from None
    if doc is None or not body:
        raise ParseError("no article found on the page (is it a section page? use --kind index)")
    meta = doc.as_dict() if hasattr(doc, "as_dict") else dict(doc)
    meta = {k: v.replace(_NBSP_STANDIN, "\xa0") if isinstance(v, str) else v for k, v in meta.items()}
    title = one_line(str(meta.get("title") or ""))
    if not title:
        raise ParseError("the page has no title")
    inner = body.split("<body>", 1)[-1].rsplit("</body>", 1)[0]
    inner = _LEADING_H1.sub("", inner)  # the title is the article's, not a paragraph
    inner = _IMG.sub(_figure, inner.replace(_NBSP_STANDIN, "\xa0"))
    source = one_line(str(meta.get("sitename") or ""))
    m = _SOURCE_P.search(inner)
    if m:
        source = one_line(m.group(1))
        inner = inner[: m.start()]
    body_html = clean_html(inner)
    body_text = html_to_text(body_html)
    if len(body_text) < 40:
        raise ParseError("no article found on the page (under 40 characters of text)")
    published: datetime | None = None
    if meta.get("date"):
        try:
            published = parse_date(str(meta["date"]))
        except ValueError:
            published = None
    published = published or fallback_published
    if published is None:
        raise ParseError("the page states no date")
    categories = [one_line(str(c)) for c in meta.get("categories") or [] if one_line(str(c))]
    tags = [one_line(str(t)) for t in meta.get("tags") or [] if one_line(str(t))]
    image = str(meta.get("image") or "")
    description = one_line(str(meta.get("description") or ""))
    return Article(
        guid=url,
        title=title,
        slug=slugify(title),
        published=published,
        body_html=body_html,
        body_text=body_text,
        summary=summarize(description or body_text),
        url=url,
        author=one_line(str(meta.get("author") or "")),
        category=category or (categories[0] if categories else ""),
        tags=list(dict.fromkeys(tags)),
        image=image if image.startswith(("http://", "https://")) else "",
        source=source,
        language=language or detect_language(title + " " + body_text[:2000]),
        origin=url,
    )


class _FeedLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        rels = a.get("rel", "").lower().split()
        kind = a.get("type", "").split(";")[0].strip().lower()
        if tag == "link" and "alternate" in rels and kind in FEED_TYPES and a.get("href", "").strip():
            self.hrefs.append(a["href"].strip())


def feed_links(raw: bytes | str, base_url: str) -> list[str]:
    """The feeds a page advertises (``<link rel="alternate" type="application/rss+xml" href=...>``,
    Atom and JSON Feed too), absolute, in page order.

    Example:
        >>> feed_links('<head><link rel="alternate" type="application/rss+xml" href="/rss.xml"></head>',
        ...            "https://example.org/tin-tuc/")
        ['https://example.org/rss.xml']
    """
    parser = _FeedLinks()
    parser.feed(_text(raw))
    out: list[str] = []
    for href in parser.hrefs:
        absolute = urldefrag(urljoin(base_url, href))[0]
        if urlsplit(absolute).scheme in ("http", "https") and absolute not in out:
            out.append(absolute)
    return out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self._skip = 0  # inside <nav>, <header>, <footer>: site chrome, not articles

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("nav", "header", "footer"):
            self._skip += 1
        elif tag == "a" and not self._skip:
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("nav", "header", "footer") and self._skip:
            self._skip -= 1


def article_links(raw: bytes | str, base_url: str, limit: int = 50) -> list[str]:
    """Links on a section page that look like articles: same host, not the page itself,
    not site chrome (nav, header, footer), no fragments; in page order, at most ``limit``.

    Example:
        >>> page = ('<nav><a href="/">Trang chủ</a></nav><ul><li><a href="/tin/a.html">A</a></li>'
        ...         '<li><a href="https://other.example/x">X</a></li><li><a href="/tin/b.html#c">B</a></li></ul>')
        >>> article_links(page, "https://example.org/tin/")
        ['https://example.org/tin/a.html', 'https://example.org/tin/b.html']
    """
    parser = _Links()
    parser.feed(_text(raw))
    base = urlsplit(base_url)
    out: list[str] = []
    for href in parser.hrefs:
        absolute, _ = urldefrag(urljoin(base_url, href.strip()))
        parts = urlsplit(absolute)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != base.netloc.lower():
            continue
        if parts.path.rstrip("/") in ("", base.path.rstrip("/")) or absolute in out:
            continue
        out.append(absolute)
        if len(out) >= limit:
            break
    return out
