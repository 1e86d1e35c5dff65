"""Plain-text news pages, as scraped from a city news site.

The shape (see ``data/articles/vi/hai-phong-khoi-nghiep.txt``), in
blank-line separated blocks::

    Công nghệ                      <- category (a short first line)
    Tìm kiếm cơ hội ...            <- title
    Trong khuôn khổ ...            <- body paragraphs, with photo captions among them
    Quang cảnh buổi làm việc ...   <- a caption: short, no final punctuation
    Nguyễn Hải                     <- byline (a short name before the source line)
    Nguồn tin: haiphong.gov.vn     <- source
    Tin khác                       <- other news: (title, teaser…, dd/mm/yyyy) triples
    This website uses cookies ...  <- boilerplate, dropped

An optional ``Ngày đăng: 20/11/2026 08:30`` (or ``Published: <ISO>``) line
gives the date; a page without one takes ``--published``, else the file's
modification time (only for a new article: a stored one keeps its date), and the
import says which.

Captions: a block is a caption when it has no final punctuation and is at most
40 words (a sub-heading looks the same in plain text and is marked alike), or
when it is one short sentence (at most 20 words, no comma) between paragraphs.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from ..errors import ParseError
from ..models import Article, RelatedLink
from ..sanitize import one_line, paragraphs_to_html, slugify, squeeze
from .common import (
    RANGE_HINT,
    DateRangeError,
    Options,
    Parsed,
    Problem,
    Undated,
    detect_language,
    parse_date,
    read_text,
    summarize,
)

_BOILERPLATE = re.compile(
    r"^(?:(?:this (?:web)?site|we) uses? cookies.*"
    r"|read more|xem thêm|đọc thêm|chia sẻ|share|tweet|in bài|print|bình luận|comments?|accept(?: all)?(?: cookies)?"
    r"|đồng ý|back to top|lên đầu trang|trang chủ|home)[.!…]*$",
    re.I,
)
_SOURCE = re.compile(r"^(nguồn tin|nguồn|source)\s*:\s*(.+)$", re.I)
_RELATED = re.compile(r"^(tin khác|tin liên quan|bài liên quan|other news|related( news| articles)?|more news)\s*:?$", re.I)
_DATE_LINE = re.compile(r"^(ngày đăng|ngày|cập nhật|đăng lúc|published|date|posted)\s*:\s*(.+)$", re.I)
_BYLINE_PREFIX = re.compile(r"^(tác giả|bài và ảnh|bài, ảnh|by|theo)\s*:?\s+(.+)$", re.I)
_BARE_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}(?:[ ,T]+\d{1,2}[:hg]\d{2})?$")
_FINAL_PUNCT = (".", "!", "?", "…", ":", ";", '"', "”", "’", ")", "»")


def _blocks(text: str) -> list[str]:
    # \s matches the no-break space, so a line holding only U+00A0 is a separator too; inside a
    # block only layout whitespace is squeezed and a no-break space stays as written.
    return [squeeze(b) for b in re.split(r"\n[^\S\n]*(?:\n[^\S\n]*)+", text.strip()) if b.strip()]


def _is_caption(block: str) -> bool:
    words = block.split()
    if not block.endswith(_FINAL_PUNCT):
        return len(words) <= 40
    single_sentence = not re.search(r"[.!?…]\s", block)
    return block.endswith(".") and single_sentence and len(words) <= 20 and "," not in block


def _is_name(block: str) -> bool:
    words = block.split()
    return (
        1 <= len(words) <= 6
        and len(block) <= 60
        and not block.endswith(_FINAL_PUNCT)
        and not any(ch.isdigit() for ch in block)
        and all(w[0].isupper() for w in words)
    )


def _related(blocks: list[str]) -> list[RelatedLink]:
    out: list[RelatedLink] = []
    pending: list[str] = []
    for block in blocks:
        if _BARE_DATE.match(block):
            if pending:
                try:
                    day = parse_date(block).date().isoformat()
                except ValueError:
                    day = block
                out.append(RelatedLink(title=pending[0], summary=" ".join(pending[1:]), date=day))
            pending = []
        else:
            pending.append(block)
    if pending:
        out.append(RelatedLink(title=pending[0], summary=" ".join(pending[1:])))
    return out


def parse(path: str, opts: Options) -> Parsed:
    """Yield the one Article of a text page (and a note saying where its date came from)."""
    blocks = [b for b in _blocks(read_text(path)) if not _BOILERPLATE.match(b)]
    if not blocks:
        raise ParseError("empty page: no title found")

    source = ""
    related: list[RelatedLink] = []
    published: datetime | None = None
    date_note = ""
    body: list[str] = []
    for i, block in enumerate(blocks):
        if _RELATED.match(block):
            related = _related(blocks[i + 1 :])
            break
        m = _SOURCE.match(block)
        if m:
            source = one_line(m.group(2))
            continue
        m = _DATE_LINE.match(block)
        if m and published is None:
            try:
                published = parse_date(m.group(2), opts.default_tz)
                date_note = f"published from the page ({m.group(2)})"
                continue
            except DateRangeError:
                raise ParseError(f"the date line {block!r} is out of range ({RANGE_HINT})") from None
            except ValueError:
                pass  # "Date: the band's new date" is body text
        body.append(block)

    category = ""
    if len(body) >= 3 and len(body[0]) <= 40 and len(body[0].split()) <= 5 and not body[0].endswith(_FINAL_PUNCT):
        category = one_line(body.pop(0))
    if not body:
        raise ParseError("no title: the page has no text after its category line")
    title = one_line(body.pop(0))

    author = ""
    if body:
        m = _BYLINE_PREFIX.match(body[-1])
        if m and len(body[-1]) <= 80:
            author = one_line(m.group(2))
            body.pop()
        elif len(body) >= 2 and _is_name(body[-1]):
            author = one_line(body.pop())

    paragraphs: list[tuple[str, str]] = []
    for block in body:
        kind = "caption" if _is_caption(block) and paragraphs and len(body) > 1 else "p"
        paragraphs.append((kind, block))
    text_paras = [t for k, t in paragraphs if k == "p"] or [t for _, t in paragraphs]

    undated = False
    if published is None:
        if opts.published is not None:
            published = opts.published
            date_note = "published from --published"
        else:
            try:
                mtime = Path(path).stat().st_mtime
            except OSError as exc:
                raise ParseError(f"cannot read: {exc.strerror or exc}") from None
            try:
                published = parse_date(int(mtime))
            except ValueError:
                raise ParseError(
                    f"no date on the page, and the file's modification time is out of range ({RANGE_HINT}); "
                    "give one with --published"
                ) from None
            undated = True  # the import says where the date came from, once it knows
    if not undated:
        yield Problem("note", "", date_note)

    slug = slugify(title)
    guid = f"urn:syndicate:{slugify(source) if source else (slugify(category) if category else 'page')}:{slug}"
    body_text = "\n\n".join(t for _, t in paragraphs)
    article = Article(
        guid=guid,
        title=title,
        slug=slug,
        published=published,
        body_html=paragraphs_to_html(paragraphs),
        body_text=body_text,
        summary=summarize(text_paras[0]) if text_paras else "",
        author=author,
        category=category,
        source=source,
        language=detect_language(title + " " + body_text[:2000], opts.language),
        related=related,
        origin=path,
    )
    yield Undated(article) if undated else article
