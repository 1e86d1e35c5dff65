"""Messages as bytes: :class:`Mail`, addresses, headers and :func:`render_mail`.

:func:`render_mail` turns a :class:`Mail` into RFC 5322 bytes by hand (no
``EmailMessage`` flattening on the hot path): CRLF line endings,
``multipart/alternative`` with UTF-8 text and HTML parts in base64, RFC 2047
encoded words for the subject and display names, IDNA for domains, and an
optional DKIM signature (a :class:`~syndicate.mailer.dkim.DkimSigner`, or any
:class:`~syndicate.mailer.wire.Signer`; this module does not import the DKIM one).

Header safety: no header ever holds a line break or raw text from input.
Display names and the subject have control characters and line breaks turned
into spaces; an address holding anything but a plain ``local@domain`` raises
:class:`~syndicate.errors.AddressError`. A non-ASCII *local part* is refused
(SMTPUTF8 is not used: many relays still lack it); a non-ASCII *domain* is
converted with IDNA (``bücher.de`` -> ``xn--bcher-kva.de``).

Also here: :func:`list_headers` (List-Id, one-click List-Unsubscribe) and
:func:`clean_text`, the one-line NFC cleaner the bounce parser reuses.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

from ..errors import AddressError
from .body import BodyCache, body_b64
from .wire import MAX_LINE, Signer, WireMessage

__all__ = ["AUTOMATIC_HEADERS", "Mail", "clean_text", "encode_address", "format_address", "list_headers", "render_mail", "MAX_LINE"]

_CORE_HEADERS = frozenset(
    h.lower()
    for h in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
              "Content-Transfer-Encoding", "DKIM-Signature", "Return-Path")
)
_HEADER_NAME = re.compile(r"[!-9;-~]+\Z")  # RFC 5322 ftext
_ATOM_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_SAFE_PHRASE = re.compile(r"[A-Za-z0-9 ]+\Z")
_MSGID = re.compile(r"[!-;=?-~]+@[!-;=?-~]+\Z")  # printable ASCII without < > and spaces
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


# ---------------------------------------------------------------------------
# The message


@dataclass(frozen=True)
class Mail:
    """One message to render. ``headers`` are extra ones (List-Id, ...).

    ``return_path`` is the envelope sender (a VERP address); it is not written
    as a header (the receiving server adds ``Return-Path``).
    """

    def __post_init__(self) -> None:
        for name, parts, whole in (("text", self.text_parts, self.text), ("html", self.html_parts, self.html)):
            if parts and sum(map(len, parts)) != len(whole):
                raise ValueError(f"Mail.{name}_parts do not join to Mail.{name}")

    from_name: str
    from_addr: str
    to_name: str
    to_addr: str
    subject: str
    text: str
    html: str
    message_id: str
    date: datetime
    headers: list[tuple[str, str]] = field(default_factory=list)
    return_path: str = ""
    #: ``text`` and ``html`` as fixed runs and personal values (even and odd
    #: indices) that join to exactly ``text`` and ``html``; with a
    #: :class:`~syndicate.mailer.body.BodyCache`, render_mail encodes the
    #: fixed runs once per group. Empty: encode the whole text.
    text_parts: tuple[str, ...] = ()
    html_parts: tuple[str, ...] = ()

    @property
    def envelope_from(self) -> str:
        """The SMTP ``MAIL FROM`` address: the return path, else the From address."""
        return encode_address(self.return_path or self.from_addr)

    @property
    def recipients(self) -> list[str]:
        return [encode_address(self.to_addr)]


def clean_text(value: str) -> str:
    """NFC text with line breaks and control characters turned into single spaces.

    Example:
        >>> clean_text("Tin\\r\\nBcc: x@y  mới ")
        'Tin Bcc: x@y mới'
    """
    value = _BAD_CHARS.sub(" ", value)
    return unicodedata.normalize("NFC", " ".join(value.split()))


@functools.lru_cache(maxsize=1024)  # one message asks for the same addresses several times
def encode_address(addr: str) -> str:
    """Check ``local@domain`` and return it with the domain IDNA-encoded.

    Raises AddressError for anything that could smuggle text into a header or
    an SMTP command (line breaks, spaces, angle brackets, a non-ASCII local part).

    Example:
        >>> encode_address("tin@báo.vn")
        'tin@xn--bo-mia.vn'
        >>> encode_address("x@y.org\\r\\nBcc: z@w.org")
        Traceback (most recent call last):
        ...
        syndicate.errors.AddressError: 'x@y.org\\r\\nBcc: z@w.org' is not a usable email address (it holds a line break)
    """
    if "\r" in addr or "\n" in addr:
        raise AddressError(f"{addr!r} is not a usable email address (it holds a line break)")
    local, at, domain = addr.strip().rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{addr!r} is not a usable email address (expected name@domain)")
    if not local.isascii():
        raise AddressError(f"{addr!r}: a non-ASCII local part needs SMTPUTF8, which syndicate does not use")
    if not _ATOM_LOCAL.match(local):
        raise AddressError(f"{addr!r} is not a usable email address (bad characters before the @)")
    if domain.startswith("[") and domain.endswith("]") and re.fullmatch(r"\[[0-9A-Fa-f:.]+\]", domain):
        return f"{local}@{domain}"
    if not domain.isascii():
        try:
            domain = unicodedata.normalize("NFC", domain).encode("idna").decode("ascii")
        except UnicodeError:
            raise AddressError(f"{addr!r}: the domain cannot be converted to IDNA") from None
    if not _DOMAIN.match(domain) or len(domain) > 253:
        raise AddressError(f"{addr!r} is not a usable email address (bad domain)")
    return f"{local}@{domain}"


@functools.lru_cache(maxsize=4096)  # a group's subject, sender and list name repeat on every message
def _b64_words(text: str, first_room: int) -> tuple[str, ...]:
    """RFC 2047 ``B`` encoded words, whole characters each, sized to fold under 78."""
    words: list[str] = []
    room = first_room
    chunk: list[str] = []
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        limit = max(12, (room - 12) // 4 * 3)
        if chunk and size + n > limit:
            # prefer to end a word just after a space, so no word is cut in two
            cut = len(chunk) - chunk[::-1].index(" ") if " " in chunk else 0
            if cut < len(chunk) // 2:
                cut = len(chunk)
            words.append("=?UTF-8?B?" + base64.b64encode("".join(chunk[:cut]).encode("utf-8")).decode("ascii") + "?=")
            chunk, room = chunk[cut:], MAX_LINE - 1
            size = len("".join(chunk).encode("utf-8"))
        chunk.append(ch)
        size += n
    if chunk:
        words.append("=?UTF-8?B?" + base64.b64encode("".join(chunk).encode("utf-8")).decode("ascii") + "?=")
    return tuple(words)


def _fold(name: str, tokens: Sequence[str]) -> str:
    """``Name: tok tok`` folded at token boundaries to lines of at most 78 characters."""
    lines = [name + ":"]
    for tok in tokens:
        if len(lines[-1]) + 1 + len(tok) > MAX_LINE and lines[-1] != name + ":":
            lines.append(" " + tok)
        else:
            lines[-1] += " " + tok
    if any(len(line) > 998 for line in lines):
        raise ValueError(f"header {name}: a single word is longer than 998 characters")
    return "\r\n".join(lines)


@functools.lru_cache(maxsize=1024)  # a group's subject is the same on every message
def _unstructured(name: str, value: str) -> str:
    """A header of free text (Subject): plain when safe ASCII, else encoded words."""
    value = clean_text(value)
    words = value.split(" ") if value else []
    if value.isascii() and "=?" not in value and all(len(w) <= 70 for w in words):
        return _fold(name, words)
    return _fold(name, _b64_words(value, MAX_LINE - len(name) - 2))


def _phrase_tokens(display: str, room: int) -> list[str]:
    display = clean_text(display)
    if not display:
        return []
    if _SAFE_PHRASE.match(display) and len(display) <= 60:
        return display.split(" ")
    if display.isascii() and "=?" not in display and len(display) <= 60:
        return ['"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return list(_b64_words(display, room))


@functools.lru_cache(maxsize=1024)  # the From line repeats on every message of a list
def format_address(name: str, addr: str, header: str = "To") -> str:
    """One ``Header: name <addr>`` line (folded), safe whatever ``name`` holds.

    A name longer than one encoded word (about 20 Vietnamese letters) is split
    after a space, as RFC 2047 requires. Note: Python's own address parser
    (3.11) keeps the folding space between two encoded words of a display name
    (RFC 2047 says to drop it), so it reads such a name with a doubled space;
    mail clients read it right.

    Example:
        >>> format_address("Bản tin Sài Gòn", "tin@báo.vn", "From")
        'From: =?UTF-8?B?QuG6o24gdGluIFPDoGkgR8Oybg==?= <tin@xn--bo-mia.vn>'
    """
    address = encode_address(addr)
    tokens = _phrase_tokens(name, MAX_LINE - len(header) - 2)
    if not tokens:
        return _fold(header, [address])
    return _fold(header, [*tokens, f"<{address}>"])


@functools.lru_cache(maxsize=1024)  # List-Id, Precedence, Auto-Submitted...: the same on every message
def _extra(name: str, value: str) -> str:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"header name {name!r} is not valid")
    if name.lower() in _CORE_HEADERS:
        raise ValueError(f"header {name!r} is written by render_mail; pass it through Mail fields")
    value = clean_text(value)
    if not value.isascii():
        return _fold(name, _b64_words(value, MAX_LINE - len(name) - 2))
    # structured ASCII (URLs, ids): fold only where the value already has spaces
    return _fold(name, value.split(" ") if value else [])


def list_headers(
    list_name: str, list_id: str, unsubscribe_url: str, unsubscribe_mailto: str = ""
) -> list[tuple[str, str]]:
    """List-Id, List-Unsubscribe and List-Unsubscribe-Post (RFC 2919, 2369, 8058).

    Example:
        >>> for h in list_headers("Tin sáng", "sang.news.example.org", "https://x.org/u/t"):
        ...     print(*h, sep=": ")
        List-Id: =?UTF-8?B?VGluIHPDoW5n?= <sang.news.example.org>
        List-Unsubscribe: <https://x.org/u/t>
        List-Unsubscribe-Post: List-Unsubscribe=One-Click
    """
    if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+", list_id):
        raise ValueError(f"list id {list_id!r} must be a dot-atom such as slug.example.org")
    phrase = " ".join(_phrase_tokens(list_name, 60))
    targets = [f"<{_uri(unsubscribe_url)}>"]
    if unsubscribe_mailto:
        targets.append(f"<{_uri(unsubscribe_mailto)}>")
    return [
        ("List-Id", f"{phrase} <{list_id}>" if phrase else f"<{list_id}>"),
        ("List-Unsubscribe", ", ".join(targets)),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]


#: On every message syndicate sends (digests, campaigns, notices): no person
#: wrote it, so auto-responders stay quiet (RFC 3834 ``Auto-Submitted``;
#: Exchange and Outlook read ``X-Auto-Response-Suppress``).
AUTOMATIC_HEADERS: tuple[tuple[str, str], ...] = (
    ("Auto-Submitted", "auto-generated"),
    ("X-Auto-Response-Suppress", "All"),
)


def _uri(value: str) -> str:
    if not value.isascii() or re.search(r"[\x00-\x20<>\x7f]", value):
        raise ValueError(f"{value!r} is not a URI usable in a header (percent-encode it)")
    return value


def _message_id(value: str) -> str:
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if not _MSGID.match(value):
        raise ValueError(f"Message-ID {value!r} must be printable ASCII of the form left@right")
    return f"<{value}>"


def render_mail(mail: Mail, signer: Signer | None = None, bodies: BodyCache | None = None) -> WireMessage:
    """RFC 5322 bytes for ``mail``: CRLF, 7-bit, lines under 78 characters.

    With ``bodies`` and the mail's ``text_parts``/``html_parts``, the body
    parts are spliced from runs encoded once (the same bytes, less work).
    Every line ends in CRLF, and base64 lines and folded header lines never
    start with a dot, so the SMTP transport can send the bytes as they are:
    they come back as a :class:`~syndicate.mailer.wire.WireMessage`, which
    says so without a scan.

    Example:
        >>> from datetime import datetime, UTC
        >>> raw = render_mail(Mail("Tin", "tin@x.org", "Lan", "lan@y.org", "Chào", "xin chào", "<p>xin chào</p>",
        ...                        "d1@x.org", datetime(2026, 11, 24, 7, tzinfo=UTC)))
        >>> print(raw.decode().split("\\r\\n\\r\\n")[0])
        Date: Tue, 24 Nov 2026 07:00:00 +0000
        From: Tin <tin@x.org>
        To: Lan <lan@y.org>
        Subject: =?UTF-8?B?Q2jDoG8=?=
        Message-ID: <d1@x.org>
        MIME-Version: 1.0
        Content-Type: multipart/alternative; boundary="=_syn_..."
    """
    if mail.date.tzinfo is None:
        raise ValueError("Mail.date must be timezone-aware")
    mid = _message_id(mail.message_id)
    headers = [
        "Date: " + format_datetime(mail.date),
        format_address(mail.from_name, mail.from_addr, "From"),
        format_address(mail.to_name, mail.to_addr, "To"),
        _unstructured("Subject", mail.subject),
        "Message-ID: " + mid,
    ]
    headers.extend(_extra(name, value) for name, value in mail.headers)
    headers.append("MIME-Version: 1.0")
    def encode(whole: str, parts: tuple[str, ...]) -> bytes:
        return bodies.encode(parts) if bodies is not None and parts else body_b64(whole)

    text_part = encode(mail.text, mail.text_parts)
    if mail.html:
        boundary = "=_syn_" + hashlib.sha256(mid.encode("ascii")).hexdigest()[:24]
        headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        b = boundary.encode("ascii")
        body = b"".join((
            b"--", b, b'\r\nContent-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
            text_part,
            b"--", b, b'\r\nContent-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
            encode(mail.html, mail.html_parts),
            b"--", b, b"--\r\n",
        ))
    else:
        headers.append('Content-Type: text/plain; charset="utf-8"')
        headers.append("Content-Transfer-Encoding: base64")
        body = text_part
    if signer is not None:
        # base64 lines and fixed MIME lines: no WSP runs, no trailing WSP, one final CRLF (DKIM's relaxed form)
        headers.insert(0, signer.sign(headers, body, canonical=True))
    return WireMessage(b"".join((("\r\n".join(headers) + "\r\n\r\n").encode("ascii"), body)))
