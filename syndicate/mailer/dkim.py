"""DKIM signing (RFC 6376 relaxed/relaxed, sha256; RFC 8463 for Ed25519).

:class:`DkimSigner` signs the header lines and body that
:func:`~syndicate.mailer.message.render_mail` builds, with a native RSA or
Ed25519 key through ``cryptography``; :func:`load_key` reads the key file
(PEM, or dkimpy's raw base64 Ed25519 seed). :class:`DkimKeyring` holds every
configured key and signs each message with the ones for its From domain
(RSA and Ed25519 together give two ``DKIM-Signature`` headers, RFC 8463 3).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import DkimKey, Settings
from ..errors import ConfigError
from .wire import MAX_LINE

__all__ = ["DkimKeyring", "DkimSigner", "aligned", "load_key"]

_WSP_RUN = re.compile(r"[ \t]+")
_BODY_TRAIL_WSP = re.compile(rb"[ \t]+\r\n")
_BODY_WSP = re.compile(rb"[ \t]+")


def _relaxed_header(line: str) -> str:
    name, _, value = line.partition(":")
    value = value.replace("\r\n", "")
    if "\t" in value or "  " in value:  # fast path: render_mail folds with single spaces
        value = _WSP_RUN.sub(" ", value)
    return name.strip().lower() + ":" + value.strip()


def _relaxed_body(body: bytes) -> bytes:
    if b"\t" in body or b"  " in body or b" \r\n" in body:  # fast path: base64 bodies have none
        body = _BODY_WSP.sub(b" ", _BODY_TRAIL_WSP.sub(b"\r\n", body))
    if len(body) > 2 and body.endswith(b"\r\n") and body[-3] not in b"\r\n":
        return body  # already ends in exactly one CRLF: no copy of a 50 KB body
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


class DkimSigner:
    """Signs rendered headers and body; the key is RSA (PEM) or Ed25519.

    Built with :meth:`from_settings`, or directly from a ``cryptography``
    private key. Signs every header render_mail writes and oversigns the
    ones a forger would add (:attr:`OVERSIGN`): each is named once more in
    ``h=`` than the message holds it (once for an absent one), so a copy
    added anywhere, above or below the signed one, breaks the signature.
    """

    #: From/To/Subject, where the reply goes, who else gets it, the unsubscribe
    #: target and how the body is read: none may be added after signing.
    OVERSIGN = ("from", "to", "subject", "reply-to", "cc", "list-unsubscribe", "list-unsubscribe-post",
                "content-type", "mime-version")

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
        self._head = f" v=1; a={self.algorithm}; c=relaxed/relaxed;\r\n d={self.domain}; s={self.selector}; t="
        self._h_tags: dict[tuple[str, ...], str] = {}
        if isinstance(key, rsa.RSAPrivateKey):
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
            self._sign: Callable[[bytes], bytes] = lambda data: key.sign(data, pkcs1, sha256)
        else:
            self._sign = lambda data: key.sign(hashlib.sha256(data).digest())

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The ``[dkim]`` key's signer when its key_file is set, else ``None`` (:class:`DkimKeyring` has them all)."""
        if not settings.dkim_key_file:
            return None
        return cls.from_config(settings.dkim_key_configs()[0], settings.source)

    @classmethod
    def from_config(cls, config: DkimKey, source: str) -> DkimSigner:
        """The signer of one configured key; ConfigError naming it when it cannot sign."""
        if not config.domain or not config.selector:
            raise ConfigError(f"{source}: {config.where} key_file is set, so domain and selector are needed too")
        path = Path(config.key_file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{source}: {config.where} key_file {path}: {exc.strerror}") from None
        return cls(config.domain, config.selector, load_key(data, str(path)))

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

    def sign(self, headers: list[str], body: bytes, timestamp: int | None = None, *, canonical: bool = False) -> str:
        """The ``DKIM-Signature`` header line (folded) for these header lines and body.

        ``canonical``: the body is already in relaxed form (render_mail's always is), so it is hashed as it is.
        """
        return self.sign_hashed(headers, body_hash(body, canonical), timestamp)

    def sign_hashed(self, headers: list[str], bh: str, timestamp: int | None = None) -> str:
        """:meth:`sign` with the body hash (:func:`body_hash`) already made: two keys hash a body once."""
        names = tuple(h[: h.index(":")] for h in headers)
        h_tag = self._h_tags.get(names)
        if h_tag is None:  # the same header names on every message of a run: folded once
            if len(self._h_tags) > 64:
                self._h_tags.clear()
            signed = [n.lower() for n in names] + list(self.OVERSIGN)  # one more than present: an added copy changes the hash
            h_lines = [" h="]
            for i, name in enumerate(signed):
                piece = name + (":" if i < len(signed) - 1 else ";")
                if len(h_lines[-1]) + len(piece) > MAX_LINE:
                    h_lines.append(" ")
                h_lines[-1] += piece
            h_tag = self._h_tags[names] = "\r\n".join(h_lines)
        t = int(time.time()) if timestamp is None else timestamp
        value = f"{self._head}{t};\r\n{h_tag}\r\n bh={bh};\r\n b="
        # header canonicalization takes instances bottom-up; ours are unique
        canon = "".join([_relaxed_header(h) + "\r\n" for h in headers])
        data = (canon + _relaxed_header("DKIM-Signature:" + value)).encode("ascii")
        sig = self._sign(data)
        b64 = base64.b64encode(sig).decode("ascii")
        folded = "\r\n ".join([b64[i : i + 72] for i in range(0, len(b64), 72)])
        return "DKIM-Signature:" + value + folded

def body_hash(body: bytes, canonical: bool = False) -> str:
    """The ``bh=`` value: base64 SHA-256 of the relaxed body (``canonical``: ``body`` is in that form already)."""
    return base64.b64encode(hashlib.sha256(body if canonical else _relaxed_body(body)).digest()).decode("ascii")


def aligned(from_domain: str, dkim_domain: str) -> bool:
    """Relaxed DMARC alignment: the From domain is the DKIM domain or below it.

    (Without the public suffix list this does not accept a DKIM domain that is
    a subdomain of the From domain's organisational domain; sign with the
    From domain itself, or its parent, and it is right.)

    Example:
        >>> aligned("news.example.org", "example.org"), aligned("example.org", "example.org"), aligned("x.com", "example.org")
        (True, True, False)
    """
    f, d = from_domain.lower().rstrip("."), dkim_domain.lower().rstrip(".")
    return bool(d) and (f == d or f.endswith("." + d))


class DkimKeyring:
    """Every configured key; signs each message with the keys for its From domain.

    The keys whose domain the From domain aligns with (it or a parent of it)
    sign, the most specific domain winning, so ``[dkim]`` RSA and an
    ``[[dkim.keys]]`` Ed25519 key for the same domain both sign (two
    ``DKIM-Signature`` headers, RSA for every receiver, Ed25519 for the ones
    that read RFC 8463), and a list sending from another domain is signed
    with that domain's key. A From domain no key aligns with is signed with
    the first key's domain, as a single ``[dkim]`` key always did
    (``syndicate check`` reports it: DMARC needs alignment).

    It is a :class:`~syndicate.mailer.wire.Signer`: :meth:`sign` reads the
    From address from the header lines render_mail built.
    """

    def __init__(self, signers: Sequence[DkimSigner]) -> None:
        if not signers:
            raise ValueError("a DkimKeyring needs at least one signer")
        self.signers = tuple(signers)
        self._chosen: dict[str, tuple[DkimSigner, ...]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimKeyring | None:
        """A keyring of every configured key (``[dkim]`` and ``[[dkim.keys]]``), else ``None``."""
        configs = settings.dkim_key_configs()
        if not configs:
            return None
        return cls([DkimSigner.from_config(c, settings.source) for c in configs])

    def signers_for(self, from_domain: str) -> tuple[DkimSigner, ...]:
        """The signers a message from ``from_domain`` gets (IDNA or Unicode, any case)."""
        key = from_domain.lower().rstrip(".")
        chosen = self._chosen.get(key)
        if chosen is None:
            if not key.isascii():
                key = key.encode("idna").decode("ascii")
            fits = [s for s in self.signers if aligned(key, s.domain)]
            if fits:
                best = max(len(s.domain) for s in fits)
                chosen = tuple(s for s in fits if len(s.domain) == best)
            else:
                first = self.signers[0].domain
                chosen = tuple(s for s in self.signers if s.domain == first)
            self._chosen[from_domain.lower().rstrip(".")] = chosen
        return chosen

    def sign(self, headers: list[str], body: bytes, timestamp: int | None = None, *, canonical: bool = False) -> str:
        """One ``DKIM-Signature`` per chosen key, joined by CRLF (render_mail puts them on top)."""
        signers = self.signers_for(_from_domain(headers))
        if len(signers) == 1:
            return signers[0].sign(headers, body, timestamp, canonical=canonical)
        bh = body_hash(body, canonical)
        t = int(time.time()) if timestamp is None else timestamp
        return "\r\n".join(s.sign_hashed(headers, bh, t) for s in signers)


def _from_domain(headers: Sequence[str]) -> str:
    """The domain of the From header render_mail wrote (``From: name <a@d>`` or ``From: a@d``)."""
    for line in headers:
        if line[:5].lower() == "from:":
            value = line.rstrip()
            addr = value[value.rindex("<") + 1 : -1] if value.endswith(">") else value.split()[-1]
            return addr.rpartition("@")[2]
    raise ValueError("no From header to choose a DKIM key by")


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
