"""What every importer shares: options, problems, dates, language, summaries.

A parser yields :class:`~syndicate.models.Article` objects and
:class:`Problem` records (an error or note about one record, e.g. ``line 14``);
a whole-file failure is raised as :class:`~syndicate.errors.ParseError` whose
message is the reason only (the caller prefixes the path).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from ..errors import ParseError
from ..fetcher import FetchPolicy
from ..models import Article, RelatedLink
from ..sanitize import clean_html, clean_text, html_to_text, one_line, paragraphs_to_html, slugify, squeeze

DATE_HINT = "use ISO 8601 such as 2026-11-20T08:00:00+07:00"


MB = 1_000_000
DEFAULT_MAX_ARTICLE_BYTES = 2 * MB


def human_size(n: float) -> str:
    """Bytes for a person: ``2.1 MB``, ``2 MB``, ``3.4 KB``, ``12 bytes`` (powers of 1000).

    Example:
        >>> human_size(2_100_000), human_size(2_000_000), human_size(3_400), human_size(12)
        ('2.1 MB', '2 MB', '3.4 KB', '12 bytes')
    """
    for unit, scale in (("MB", MB), ("KB", 1000)):
        if n >= scale:
            return f"{n / scale:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{int(n)} bytes"


@dataclass(frozen=True)
class Options:
    """How to read sources: fallbacks for what a source leaves out, and limits."""

    published: datetime | None = None  # for articles that give no date
    default_tz: tzinfo = UTC  # naive times in sources are read in this zone
    language: str = ""  # force a language; else detected
    max_article_bytes: int = DEFAULT_MAX_ARTICLE_BYTES  # HTML of one article ([ingest] max_article_mb)
    fetch: FetchPolicy = field(default_factory=FetchPolicy)  # URLs ([fetch]; refuses private hosts)


@dataclass(frozen=True)
class Problem:
    """An error or a note about one record of a file (``where`` is e.g. ``line 14``)."""

    kind: str  # "error" | "note" | "warning"
    where: str
    text: str


@dataclass(frozen=True)
class Undated:
    """An Article whose source states no date: its ``published`` is a guess (the file's
    modification time), which never replaces the date a stored article already has."""

    article: Article


Item = Article | Undated | Problem
Parsed = Iterator[Item]


def read_text(path: str | Path) -> str:
    """A file's text: UTF-8 (BOM allowed), NFC, XML-safe; ParseError otherwise."""
    try:
        raw = Path(path).read_bytes()
    except IsADirectoryError:
        raise ParseError("is a directory") from None
    except OSError as exc:
        raise ParseError(f"cannot read: {exc.strerror or exc}") from None
    return decode(raw)


def decode(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "convert it first, e.g. iconv -f cp1258 -t utf-8"
        ) from None
    return clean_text(text)


_VI = re.compile("[ăâđêôơưĂÂĐÊÔƠƯ\u1ea0-\u1ef9]")


def detect_language(text: str, forced: str = "") -> str:
    """``vi`` when Vietnamese letters appear, else ``en`` (unless forced).

    Example:
        >>> detect_language("Khởi nghiệp"), detect_language("Start-ups")
        ('vi', 'en')
    """
    if forced:
        return forced
    return "vi" if _VI.search(text) else "en"


def summarize(text: str, limit: int = 300) -> str:
    """The first paragraph, cut at a word boundary near ``limit`` characters.

    Example:
        >>> summarize("One two three four", 12)
        'One two…'
    """
    first = next((p for p in re.split(r"\n\s*\n", text) if p.strip()), "")
    first = squeeze(first)
    if len(first) <= limit:
        return first
    cut = first[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:-–— ")
    return cut + "…"


_DMY = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:[ ,T]+(\d{1,2})[:hg](\d{2}))?$")

# Dates a news article can carry. Outside this a value is a typo or an attack (``1e400``, a
# 20-digit year), and would overflow later arithmetic (embargoes, archive months, HTTP dates).
MIN_YEAR, MAX_YEAR = 1800, 2199
RANGE_HINT = f"years {MIN_YEAR} to {MAX_YEAR}"


class DateRangeError(ValueError):
    """A value that reads as a date (or a number) but lies outside MIN_YEAR..MAX_YEAR."""


def parse_date(value: Any, tz: tzinfo = UTC) -> datetime:
    """An aware UTC datetime from ISO 8601, RFC 2822, dd/mm/yyyy, or a date/datetime.

    Naive values are read in ``tz``; raises ValueError when it is not a date, and
    DateRangeError (a ValueError) when it is outside years 1800 to 2199.

    Example:
        >>> parse_date("2026-11-20T08:00:00+07:00").isoformat()
        '2026-11-20T01:00:00+00:00'
        >>> parse_date("20/11/2026").isoformat()
        '2026-11-20T00:00:00+00:00'
        >>> parse_date(float("inf"))
        Traceback (most recent call last):
        ...
        syndicate.ingest.common.DateRangeError: inf is out of range (years 1800 to 2199)
    """
    try:
        parsed = _parse_date(value, tz)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz)
        parsed = parsed.astimezone(UTC).replace(microsecond=0)
    except (OverflowError, OSError):  # C-level range limits: time_t, C long, datetime.max
        raise DateRangeError(f"{value!r} is out of range ({RANGE_HINT})") from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise DateRangeError(f"{value!r} is out of range ({RANGE_HINT})")
    return parsed


def _parse_date(value: Any, tz: tzinfo) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value:  # NaN
            raise ValueError(f"{value!r} is not a date")
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        m = _DMY.match(text)
        if m:
            d, mo, y, hh, mm = m.groups()
            return datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0))
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            pass
        try:
            return parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"{value!r} is not a date") from None
    raise ValueError(f"{value!r} is not a date")


def text_to_html(text: str) -> str:
    """Plain text paragraphs (blank-line separated) as ``<p>`` HTML."""
    paras = [squeeze(p) for p in re.split(r"\n\s*\n", text)]
    return paragraphs_to_html([("p", p) for p in paras if p])


_LOOKS_HTML = re.compile(r"<(p|div|br|a|em|strong|b|i|ul|ol|li|h[1-6]|img|figure|table|blockquote|span)\b", re.I)


_SCHEME = re.compile(r"^\s*[a-zA-Z][a-zA-Z0-9+.-]*:")


def looks_like_html(text: str) -> bool:
    return bool(_LOOKS_HTML.search(text))


# Field aliases accepted from JSON, JSON Lines and front matter, first match wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "guid": ("guid", "id", "uid", "uuid"),
    "title": ("title", "headline", "name"),
    "slug": ("slug",),
    "url": ("url", "link", "permalink", "canonical_url", "canonical"),
    "summary": ("summary", "description", "excerpt", "teaser", "lead"),
    "body_html": ("body_html", "content_html", "html", "content"),
    "body_text": ("body_text", "text", "content_text", "plain"),
    "body": ("body",),
    "author": ("author", "byline", "authors", "creator"),
    "category": ("category", "section", "categories"),
    "tags": ("tags", "keywords"),
    "image": ("image", "image_url", "thumbnail", "cover"),
    "image_alt": ("image_alt",),
    "source": ("source", "publisher"),
    "language": ("language", "lang", "locale"),
    "published": ("published", "date", "published_at", "pubDate", "pubdate", "published_date", "created"),
    "updated": ("updated", "updated_at", "modified", "lastmod", "date_modified"),
    "related": ("related",),
}


def pick(record: Mapping[str, Any], field: str) -> Any:
    for key in ALIASES[field]:
        if key in record and record[key] not in (None, "", [], {}):
            return record[key]
    return None


def _as_str(value: Any, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        value = value.get("name") or value.get("url") or value.get("title") or ""
    if isinstance(value, list):
        return ", ".join(_as_str(v, field) for v in value if v)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{field!r} should be text, not {type(value).__name__}")


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"'tags' should be a list or a comma-separated string, not {type(value).__name__}")
    out: list[str] = []
    for item in items:
        tag = one_line(_as_str(item, "tags"))
        if tag and tag not in out:
            out.append(tag)
    return out


def _related(value: Any) -> list[RelatedLink]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("'related' should be a list of {title, url, summary, date} objects")
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(RelatedLink(title=one_line(item)))
        elif isinstance(item, Mapping) and item.get("title"):
            out.append(
                RelatedLink(
                    title=one_line(_as_str(item.get("title"), "related.title")),
                    url=one_line(_as_str(item.get("url") or item.get("link"), "related.url")),
                    summary=one_line(_as_str(item.get("summary"), "related.summary")),
                    date=one_line(_as_str(item.get("date"), "related.date")),
                )
            )
    return out


def _time_field(record: Mapping[str, Any], field: str, tz: tzinfo) -> datetime | None:
    value = pick(record, field)
    if value is None:
        return None
    try:
        return parse_date(value, tz)
    except DateRangeError:
        raise ValueError(f"{_key(record, field)!r} is {value!r}, a date out of range ({RANGE_HINT})") from None
    except ValueError:
        raise ValueError(f"{_key(record, field)!r} is {value!r}, not a date ({DATE_HINT})") from None


def _key(record: Mapping[str, Any], field: str) -> str:
    """The key ``pick`` read ``field`` from (``date``, ``published_at``...), for messages."""
    return next(k for k in ALIASES[field] if k in record and record[k] not in (None, "", [], {}))


def article_from_record(
    record: Mapping[str, Any],
    opts: Options,
    *,
    origin: str,
    body_html: str | None = None,
    default_guid: str = "",
) -> Article:
    """An Article from a mapping with Article-like field names (and aliases).

    Raises ValueError with a reason a person can act on (no title, bad date...).
    ``body_html``, when given, is already-rendered HTML (Markdown) and wins.
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"expected an object with a 'title', got {type(record).__name__}")
    title = one_line(_as_str(pick(record, "title"), "title"))
    if not title:
        raise ValueError("no title (every article needs a 'title')")
    published = _time_field(record, "published", opts.default_tz) or opts.published
    if published is None:
        raise ValueError(f"no published date (add 'published' or 'date'; {DATE_HINT})")
    updated = _time_field(record, "updated", opts.default_tz)

    html_in = body_html
    text_in = clean_text(_as_str(pick(record, "body_text"), "body_text"))
    if html_in is None:
        raw_html = _as_str(pick(record, "body_html"), "body_html")
        body = _as_str(pick(record, "body"), "body")
        if not raw_html and body:
            if looks_like_html(body):
                raw_html = body
            elif not text_in:
                text_in = clean_text(body)
        html_in = raw_html
    html_out = clean_html(html_in) if html_in else (text_to_html(text_in) if text_in else "")
    text_out = text_in.strip() or html_to_text(html_out)

    summary = one_line(html_to_text(clean_html(_as_str(pick(record, "summary"), "summary"))))
    if not summary:
        summary = summarize(text_out)
    slug = slugify(_as_str(pick(record, "slug"), "slug") or title)
    url = one_line(_as_str(pick(record, "url"), "url"))
    guid = one_line(_as_str(pick(record, "guid"), "guid")) or url or default_guid or f"urn:syndicate:{slug}"

    category_value = pick(record, "category")
    tags = _tags(pick(record, "tags"))
    if isinstance(category_value, list):
        names = [one_line(_as_str(c, "category")) for c in category_value]
        names = [n for n in names if n]
        category = names[0] if names else ""
        tags += [n for n in names[1:] if n not in tags]
    else:
        category = one_line(_as_str(category_value, "category"))

    image_value = pick(record, "image")
    image_alt = one_line(_as_str(pick(record, "image_alt"), "image_alt"))
    if isinstance(image_value, Mapping):
        image_alt = image_alt or one_line(_as_str(image_value.get("alt"), "image.alt"))
        image_value = image_value.get("url") or image_value.get("src")
    image = one_line(_as_str(image_value, "image"))
    if _SCHEME.match(image) and not image.lower().startswith(("http://", "https://")):
        image = ""  # javascript:, data:, file: ... never reach a page

    language = one_line(_as_str(pick(record, "language"), "language")) or detect_language(
        title + " " + text_out[:2000], opts.language
    )
    return Article(
        guid=guid,
        title=title,
        slug=slug,
        published=published,
        updated=updated if updated and updated > published else None,
        body_html=html_out,
        body_text=text_out,
        summary=summary,
        url=url,
        author=one_line(_as_str(pick(record, "author"), "author")),
        category=category,
        tags=tags,
        image=image,
        image_alt=image_alt,
        source=one_line(_as_str(pick(record, "source"), "source")),
        language=opts.language or language,
        related=_related(pick(record, "related")),
        origin=origin,
    )
