"""Messages as bytes, and the transports that carry them (listmonk's messenger).

Knows nothing of the store. :func:`render_mail` turns a :class:`Mail` into RFC
5322 bytes by hand (no ``EmailMessage`` flattening on the hot path): CRLF line
endings, ``multipart/alternative`` with UTF-8 text and HTML parts in base64,
RFC 2047 encoded words for the subject and display names, IDNA for domains,
and an optional DKIM signature (:class:`DkimSigner`, native RSA or Ed25519
through ``cryptography``).

Header safety: no header ever holds a line break or raw text from input.
Display names and the subject have control characters and line breaks turned
into spaces; an address holding anything but a plain ``local@domain`` raises
:class:`~syndicate.errors.AddressError`. A non-ASCII *local part* is refused
(SMTPUTF8 is not used: many relays still lack it); a non-ASCII *domain* is
converted with IDNA (``bücher.de`` -> ``xn--bcher-kva.de``).

Transports share one protocol, :class:`Transport`: ``await send(envelope_from,
recipients, message_bytes)`` raising :class:`~syndicate.errors.TransportError`
(``temporary`` for 4xx replies and dropped connections, permanent for 5xx,
``code`` the SMTP reply code) and ``await close()``. :class:`MemoryTransport`
keeps what it was given, :class:`MaildirTransport` writes files atomically,
:class:`SmtpTransport` is a pool of reused aiosmtplib connections.

VERP: :func:`verp_address` gives the envelope sender ``bounce+<id>-<mac>@domain``
for a delivery id, :func:`parse_verp` gets the id back (``None`` when forged).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import socket
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from .config import Settings
from .errors import AddressError, ConfigError, TransportError

__all__ = [
    "Mail",
    "render_mail",
    "format_address",
    "encode_address",
    "list_headers",
    "DkimSigner",
    "Transport",
    "MemoryTransport",
    "MaildirTransport",
    "SmtpTransport",
    "make_transport",
    "verp_address",
    "parse_verp",
]

MAX_LINE = 78
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


def _b64_words(text: str, first_room: int) -> list[str]:
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
    return words


def _fold(name: str, tokens: list[str]) -> str:
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
    return _b64_words(display, room)


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


def _body_b64(text: str) -> bytes:
    """UTF-8 in canonical CRLF form, base64 in 76-character CRLF lines."""
    data = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return base64.encodebytes(data.encode("utf-8", "replace")).replace(b"\n", b"\r\n")


def render_mail(mail: Mail, signer: DkimSigner | None = None) -> bytes:
    """RFC 5322 bytes for ``mail``: CRLF, 7-bit, lines under 78 characters.

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
    text_part = _body_b64(mail.text)
    if mail.html:
        boundary = "=_syn_" + hashlib.sha256(mid.encode("ascii")).hexdigest()[:24]
        headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        b = boundary.encode("ascii")
        body = b"".join((
            b"--", b, b'\r\nContent-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
            text_part,
            b"--", b, b'\r\nContent-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
            _body_b64(mail.html),
            b"--", b, b"--\r\n",
        ))
    else:
        headers.append('Content-Type: text/plain; charset="utf-8"')
        headers.append("Content-Transfer-Encoding: base64")
        body = text_part
    if signer is not None:
        headers.insert(0, signer.sign(headers, body))
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + body


# ---------------------------------------------------------------------------
# DKIM (RFC 6376, relaxed/relaxed, sha256; RFC 8463 for Ed25519)

_WSP_RUN = re.compile(r"[ \t]+")
_BODY_TRAIL_WSP = re.compile(rb"[ \t]+\r\n")
_BODY_WSP = re.compile(rb"[ \t]+")


def _relaxed_header(line: str) -> str:
    name, _, value = line.partition(":")
    value = _WSP_RUN.sub(" ", value.replace("\r\n", "")).strip()
    return name.strip().lower() + ":" + value


def _relaxed_body(body: bytes) -> bytes:
    if b"\t" in body or b"  " in body or b" \r\n" in body:  # fast path: base64 bodies have none
        body = _BODY_WSP.sub(b" ", _BODY_TRAIL_WSP.sub(b"\r\n", body))
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


class DkimSigner:
    """Signs rendered headers and body; the key is RSA (PEM) or Ed25519.

    Built with :meth:`from_settings`, or directly from a ``cryptography``
    private key. Signs every header render_mail writes and oversigns From,
    To and Subject so none can be added after signing.
    """

    OVERSIGN = ("from", "to", "subject")

    def __init__(self, domain: str, selector: str, key: object) -> None:
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        self.domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
        self.selector = selector
        if isinstance(key, rsa.RSAPrivateKey):
            self.algorithm = "rsa-sha256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            self.algorithm = "ed25519-sha256"
        else:
            raise ConfigError(f"DKIM key for {domain}: only RSA and Ed25519 keys are supported")
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """A signer when ``[dkim] key_file`` is set, else ``None``."""
        if not settings.dkim_key_file:
            return None
        if not settings.dkim_domain or not settings.dkim_selector:
            raise ConfigError(f"{settings.source}: [dkim] key_file is set, so domain and selector are needed too")
        path = Path(settings.dkim_key_file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{settings.source}: [dkim] key_file {path}: {exc.strerror}") from None
        return cls(settings.dkim_domain, settings.dkim_selector, load_key(data, str(path)))

    def dns_record(self) -> str:
        """The TXT record to publish at ``<selector>._domainkey.<domain>``."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        key = self._key
        if isinstance(key, rsa.RSAPrivateKey):
            der = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")

    def sign(self, headers: list[str], body: bytes, timestamp: int | None = None) -> str:
        """The ``DKIM-Signature`` header line (folded) for these header lines and body."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

        bh = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest()).decode("ascii")
        names = [h.partition(":")[0] for h in headers]
        lowered = [n.lower() for n in names]
        signed = lowered + [n for n in self.OVERSIGN if n in lowered]
        t = int(time.time()) if timestamp is None else timestamp
        h_lines = [" h="]
        for i, name in enumerate(signed):
            piece = name + (":" if i < len(signed) - 1 else ";")
            if len(h_lines[-1]) + len(piece) > MAX_LINE:
                h_lines.append(" ")
            h_lines[-1] += piece
        value = (
            f" v=1; a={self.algorithm}; c=relaxed/relaxed;\r\n d={self.domain}; s={self.selector}; t={t};\r\n"
            + "\r\n".join(h_lines)
            + f"\r\n bh={bh};\r\n b="
        )
        # header canonicalization takes instances bottom-up; ours are unique
        canon = "".join(_relaxed_header(h) + "\r\n" for h in headers)
        data = (canon + _relaxed_header("DKIM-Signature:" + value)).encode("ascii")
        key = self._key
        if isinstance(key, rsa.RSAPrivateKey):
            sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            assert isinstance(key, ed25519.Ed25519PrivateKey)
            sig = key.sign(hashlib.sha256(data).digest())
        b64 = base64.b64encode(sig).decode("ascii")
        folded = "\r\n ".join(b64[i : i + 72] for i in range(0, len(b64), 72))
        return "DKIM-Signature:" + value + folded


def load_key(data: bytes, where: str = "DKIM key") -> object:
    """A private key from PEM (RSA or Ed25519) or a raw base64 Ed25519 seed (dkimpy's format)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if b"-----BEGIN" in data:
        try:
            return serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: not a usable unencrypted PEM private key ({exc})") from None
    try:
        seed = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ConfigError(f"{where}: expected a PEM private key or a base64 Ed25519 seed of 32 bytes")
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


# ---------------------------------------------------------------------------
# VERP


def _verp_mac(settings: Settings, delivery_id: int) -> str:
    key = settings.require_secret().encode("utf-8")
    return hmac.new(key, f"verp:{delivery_id}".encode("ascii"), hashlib.sha256).hexdigest()[:10]


def _return_domain(settings: Settings, fallback: str = "") -> str:
    domain = settings.mail_return_path_domain or fallback or settings.mail_sender_address.rpartition("@")[2]
    return encode_address(f"bounce@{domain}").rpartition("@")[2]


def verp_address(settings: Settings, delivery_id: int, domain: str = "") -> str:
    """The envelope sender that carries ``delivery_id`` and a MAC against forgery.

    Its domain is ``[mail] return_path_domain``, else ``domain`` (the list's
    sender domain), else the default sender's.

    Example:
        >>> from syndicate.config import Secret
        >>> s = Settings(secret_key=Secret("k"), mail_sender_address="tin@news.example.org")
        >>> verp_address(s, 42)
        'bounce+42-...@news.example.org'
        >>> parse_verp(verp_address(s, 42), s), parse_verp("bounce+43-0123456789@news.example.org", s)
        (42, None)
    """
    return f"bounce+{int(delivery_id)}-{_verp_mac(settings, delivery_id)}@{_return_domain(settings, domain)}"


_VERP = re.compile(r"<?\s*bounce\+(\d{1,18})-([0-9a-f]{10})@[^>\s]+\s*>?\Z", re.IGNORECASE)


def parse_verp(address: str, settings: Settings) -> int | None:
    """The delivery id in a VERP address, or ``None`` if it is not one of ours (or forged)."""
    m = _VERP.match(address.strip())
    if not m:
        return None
    delivery_id = int(m.group(1))
    if not hmac.compare_digest(m.group(2).lower(), _verp_mac(settings, delivery_id)):
        return None
    return delivery_id


# ---------------------------------------------------------------------------
# Transports


@runtime_checkable
class Transport(Protocol):
    """Carries rendered bytes. ``send`` raises TransportError(temporary=..., code=...)."""

    async def send(self, envelope_from: str, recipients: list[str], message: bytes) -> None: ...

    async def close(self) -> None: ...


class MemoryTransport:
    """Keeps ``(envelope_from, recipients, message)`` in :attr:`sent`, for tests and dry runs.

    ``fail`` may return a TransportError to raise for a given send (or ``None``).
    """

    def __init__(self, fail: Callable[[str, list[str], bytes], TransportError | None] | None = None) -> None:
        self.sent: list[tuple[str, list[str], bytes]] = []
        self.fail = fail
        self.closed = False

    async def send(self, envelope_from: str, recipients: list[str], message: bytes) -> None:
        if self.fail is not None:
            error = self.fail(envelope_from, recipients, message)
            if error is not None:
                raise error
        self.sent.append((envelope_from, list(recipients), message))

    async def close(self) -> None:
        self.closed = True


class MaildirTransport:
    """Writes each message to a Maildir (``tmp/`` then ``new/``, unique names).

    A ``Return-Path`` line with the envelope sender is prepended, as a local
    delivery agent does; line endings are kept as rendered (CRLF).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._made = False
        self._count = 0
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def _ensure(self) -> None:
        if not self._made:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            self._made = True

    def write(self, envelope_from: str, message: bytes) -> Path:
        """Write one message synchronously; returns its path in ``new/``."""
        self._ensure()
        self._count += 1
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{self._count}R{os.urandom(4).hex()}.{self._host}"
        tmp = self.path / "tmp" / name
        data = b"Return-Path: <" + envelope_from.encode("ascii", "replace") + b">\r\n" + message
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            final = self.path / "new" / name
            os.replace(tmp, final)
        except OSError as exc:
            raise TransportError(f"maildir {self.path}: cannot write a message: {exc.strerror}", temporary=True) from None
        return final

    async def send(self, envelope_from: str, recipients: list[str], message: bytes) -> None:
        for r in recipients:
            encode_address(r)
        self.write(encode_address(envelope_from) if envelope_from else "", message)

    async def close(self) -> None:
        return None


class _Bucket:
    """Token bucket: ``rate`` tokens a second, holding at most ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate)


class SmtpTransport:
    """A pool of reused aiosmtplib connections (``smtp_pool_size``), rate-limited.

    Connections open lazily, stay open between messages, and are dropped and
    replaced after any connection failure. A connection idle for more than
    ``idle_check`` seconds is probed with NOOP before reuse. Replies map to
    TransportError: 4xx and dropped connections are temporary, 5xx permanent.
    One event loop per transport; call :meth:`close` at the end.
    """

    idle_check = 10.0

    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ConfigError(f"{settings.source}: [smtp] host is not set")
        self.settings = settings
        self.size = max(1, settings.smtp_pool_size)
        self._idle: list[tuple[object, float]] = []
        self._sem: asyncio.Semaphore | None = None
        self._bucket = _Bucket(settings.smtp_rate, self.size) if settings.smtp_rate > 0 else None
        sender_domain = settings.mail_sender_address.rpartition("@")[2] or "localhost"
        try:
            self._local_hostname = encode_address(f"x@{sender_domain}").rpartition("@")[2]
        except AddressError:
            self._local_hostname = "localhost"
        self.opened = 0  # connections opened so far (for tests and benchmarks)

    def _client(self) -> object:
        import aiosmtplib

        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password.get() or None if s.smtp_username else None,
            local_hostname=self._local_hostname,
            timeout=s.smtp_timeout,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
        )

    async def _acquire(self) -> object:
        import aiosmtplib

        while self._idle:
            conn, since = self._idle.pop()
            assert isinstance(conn, aiosmtplib.SMTP)
            if not conn.is_connected:
                conn.close()
                continue
            if time.monotonic() - since > self.idle_check:
                try:
                    await conn.noop()
                except (aiosmtplib.SMTPException, OSError):
                    conn.close()
                    continue
            return conn
        conn = self._client()
        assert isinstance(conn, aiosmtplib.SMTP)
        try:
            await conn.connect()
        except aiosmtplib.SMTPResponseException as exc:
            conn.close()
            raise TransportError(
                f"SMTP {self.settings.smtp_host}:{self.settings.smtp_port} refused the session: {exc.code} {exc.message}",
                temporary=exc.code < 500, code=exc.code,
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            conn.close()
            raise TransportError(
                f"cannot connect to SMTP {self.settings.smtp_host}:{self.settings.smtp_port}: {exc}", temporary=True
            ) from None
        self.opened += 1
        return conn

    async def send(self, envelope_from: str, recipients: list[str], message: bytes) -> None:
        import aiosmtplib

        sender = encode_address(envelope_from) if envelope_from else ""
        rcpts = [encode_address(r) for r in recipients]
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.size)
        if self._bucket is not None:
            await self._bucket.take()
        async with self._sem:
            conn = await self._acquire()
            assert isinstance(conn, aiosmtplib.SMTP)
            keep = False
            try:
                errors, _ = await conn.sendmail(sender, rcpts, message)
                keep = True
            except aiosmtplib.SMTPRecipientsRefused as exc:
                keep = conn.is_connected
                codes = [e.code for e in exc.recipients]
                first = exc.recipients[0]
                raise TransportError(
                    f"SMTP refused {first.recipient}: {first.code} {first.message}",
                    temporary=all(c < 500 for c in codes), code=first.code,
                ) from None
            except aiosmtplib.SMTPResponseException as exc:
                keep = conn.is_connected and exc.code != 421
                raise TransportError(
                    f"SMTP replied {exc.code} {exc.message}", temporary=exc.code < 500, code=exc.code
                ) from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise TransportError(f"SMTP connection failed: {exc}", temporary=True) from None
            finally:
                if keep:
                    self._idle.append((conn, time.monotonic()))
                else:
                    conn.close()
            if errors:
                rcpt, resp = next(iter(errors.items()))
                raise TransportError(
                    f"SMTP refused {rcpt}: {resp.code} {resp.message}",
                    temporary=all(r.code < 500 for r in errors.values()), code=resp.code,
                )

    async def close(self) -> None:
        import aiosmtplib

        idle, self._idle = self._idle, []
        for conn, _ in idle:
            assert isinstance(conn, aiosmtplib.SMTP)
            try:
                if conn.is_connected:
                    await conn.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass
            finally:
                conn.close()


def make_transport(settings: Settings, kind: str | None = None) -> Transport:
    """``smtp`` when an SMTP host is set, else ``maildir``; ``memory`` for dry runs.

    Example:
        >>> make_transport(Settings(), "memory").sent
        []
    """
    kind = kind or settings.transport
    if kind == "memory":
        return MemoryTransport()
    if kind == "maildir":
        return MaildirTransport(settings.mail_maildir)
    if kind == "smtp":
        return SmtpTransport(settings)
    raise ConfigError(f"unknown transport {kind!r}; choose smtp, maildir or memory")
