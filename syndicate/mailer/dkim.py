"""DKIM signing (RFC 6376 relaxed/relaxed, sha256; RFC 8463 for Ed25519).

:class:`DkimSigner` signs the header lines and body that
:func:`~syndicate.mailer.message.render_mail` builds, with a native RSA or
Ed25519 key through ``cryptography``; :func:`load_key` reads the key file
(PEM, or dkimpy's raw base64 Ed25519 seed).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from .wire import MAX_LINE

__all__ = ["DkimSigner", "load_key"]

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
        signed = lowered + list(self.OVERSIGN)  # one more than present: an added copy changes the hash
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
