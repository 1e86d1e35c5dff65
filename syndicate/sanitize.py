"""Text hygiene: HTML cleaning (nh3), NFC, XML-safe text, slugs, search folding.

Everything that enters the store passes through here, so every later stage
(feeds, emails, pages) can trust that text is NFC, carries no character XML
1.0 forbids, and that HTML holds no script, handler, ``javascript:`` URL or
inline style.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import nh3

# Characters XML 1.0 cannot carry: C0 controls but tab/LF/CR, lone surrogates,
# U+FFFE/U+FFFF. C1 controls are legal but never meant in news text: dropped too.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del",
    "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s",
    "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
    "thead", "time", "tr", "u", "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "time": {"datetime"},
    "figure": {"class"},
    "figcaption": {"class"},
    "p": {"class"},
    "ol": {"start"},
}
URL_SCHEMES = {"http", "https", "mailto"}


def xml_safe(text: str) -> str:
    """Drop the characters XML 1.0 cannot carry."""
    return _XML_ILLEGAL.sub("", text)


def clean_text(text: str) -> str:
    """NFC, XML-safe, CRLF folded to LF, no-break spaces kept as they are."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return xml_safe(unicodedata.normalize("NFC", text))


# Layout whitespace: ASCII spaces and line breaks (and the Unicode line/paragraph separators).
# Not str.split()'s idea of whitespace, which also eats U+00A0, U+202F, U+2009...: those are
# text the writer chose ("KH&CN\xa0trân trọng", "10\u202f%") and are kept as written.
_LAYOUT_SPACE = re.compile("[ \t\n\r\f\v\u2028\u2029]+")
# What str.split() treats as whitespace beyond layout: with none present, split() is the fast path.
_KEPT_SPACE = re.compile("[\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u202f\u205f\u3000]")


def squeeze(text: str) -> str:
    r"""Runs of layout whitespace as one space, ends trimmed; no-break and other spaces kept.

    Example:
        >>> squeeze("  KH&CN\xa0trân \n trọng ")
        'KH&CN\xa0trân trọng'
    """
    if _KEPT_SPACE.search(text) is None:
        return " ".join(text.split())  # the same result, at C speed
    return _LAYOUT_SPACE.sub(" ", text).strip()


def one_line(text: str) -> str:
    """Clean text squeezed onto one line (titles, names, header-bound values)."""
    return squeeze(clean_text(text))


def clean_html(fragment: str) -> str:
    """Sanitise untrusted HTML: no scripts, handlers, styles or unsafe URLs.

    Example:
        >>> clean_html('<p onclick="x()">Hi<script>alert(1)</script></p>')
        '<p>Hi</p>'
    """
    if not fragment:
        return ""
    cleaned: str = _cleaner()(clean_text(fragment))
    # html5ever writes U+00A0 as ``&nbsp;``, an entity XML does not know; keep the character as
    # written (a literal "&nbsp;" in the text is serialised as "&amp;nbsp;", so nothing else matches).
    cleaned = cleaned.replace("&nbsp;", "\xa0")
    return xml_safe(unicodedata.normalize("NFC", cleaned))


@functools.cache
def _cleaner() -> Callable[[str], str]:
    """A prebuilt nh3 Cleaner (~10x faster than nh3.clean rebuilding its rules per call)."""
    rules: dict[str, Any] = dict(
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    if hasattr(nh3, "Cleaner"):  # nh3 >= 0.3
        return nh3.Cleaner(**rules).clean  # type: ignore[no-any-return]
    return functools.partial(nh3.clean, **rules)


_BLOCK_END = re.compile(r"</(p|div|h[1-6]|li|blockquote|figure|figcaption|tr|pre|dt|dd)\s*>|<br\s*/?>|<hr\s*/?>", re.I)
_TAG = re.compile(r"<[^>]+>")


def html_to_text(fragment: str) -> str:
    """Readable plain text from sanitised HTML: one paragraph per block."""
    text = _BLOCK_END.sub("\n\n", fragment)
    text = html.unescape(_TAG.sub("", text))
    paragraphs = [squeeze(p) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def paragraphs_to_html(paragraphs: list[tuple[str, str]]) -> str:
    """HTML from (kind, text) pairs; kind is ``p`` or ``caption``."""
    out = []
    for kind, text in paragraphs:
        escaped = html.escape(text, quote=False)
        if kind == "caption":
            out.append(f'<p class="caption"><em>{escaped}</em></p>')
        else:
            out.append(f"<p>{escaped}</p>")
    return "\n".join(out)


def fold(text: str) -> str:
    """Lower-case text with diacritics removed, for accent-blind search.

    Example:
        >>> fold("Khởi nghiệp Đổi mới")
        'khoi nghiep doi moi'
    """
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped).lower()


def slugify(text: str, max_length: int = 80) -> str:
    """ASCII slug for URLs and file names.

    Example:
        >>> slugify("Công nghệ & Đổi mới")
        'cong-nghe-doi-moi'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", fold(text)).strip("-")
    if len(slug) > max_length:
        slug = slug[:max_length].rsplit("-", 1)[0] or slug[:max_length]
    return slug or "untitled"
