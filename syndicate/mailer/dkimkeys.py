"""DKIM keys for a real domain: make one, and say what DNS must publish.

:func:`generate_key` makes an RSA-2048 or Ed25519 private key as PEM;
:func:`write_key` writes it 0600 without ever leaving a readable copy;
:func:`dns_records` gives the TXT records (DKIM, SPF, DMARC) to publish for
the signing domain. Nothing here touches the store or the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .dkim import DkimSigner, load_key

__all__ = ["DnsRecord", "KEY_TYPES", "dns_records", "generate_key", "key_bits", "write_key"]

KEY_TYPES = ("rsa", "ed25519")
RSA_BITS = 2048


@dataclass(frozen=True)
class DnsRecord:
    """One record to publish: its name, type and value, and what it is for."""

    name: str
    type: str
    value: str
    purpose: str

    def zone_line(self) -> str:
        """The record as a zone-file line, the value split into 255-byte strings (RFC 7208 3.3).

        Example:
            >>> DnsRecord("example.org", "TXT", "v=spf1 mx -all", "SPF").zone_line()
            'example.org. 3600 IN TXT "v=spf1 mx -all"'
        """
        chunks = [self.value[i : i + 255] for i in range(0, len(self.value), 255)] or [""]
        quoted = " ".join('"' + c.replace('"', '\\"') + '"' for c in chunks)
        return f"{self.name}. 3600 IN {self.type} {quoted}"


def generate_key(kind: str = "rsa") -> bytes:
    """A new private key as unencrypted PKCS#8 PEM: RSA-2048 or Ed25519 (RFC 8463).

    Example:
        >>> generate_key("ed25519").startswith(b"-----BEGIN PRIVATE KEY-----")
        True
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if kind not in KEY_TYPES:
        raise ConfigError(f"DKIM key type {kind!r}: choose one of {', '.join(KEY_TYPES)}")
    key = rsa.generate_private_key(65537, RSA_BITS) if kind == "rsa" else ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_key(path: Path, pem: bytes, *, overwrite: bool = False) -> None:
    """Write ``pem`` to ``path`` with mode 0600 from the first byte (no umask window).

    Refuses to replace an existing key unless ``overwrite``: a replaced key
    breaks every signature until DNS carries the new one.
    """
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; keep it, or pass --force to replace it (then publish the new DNS record)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write DKIM key {path}: {exc.strerror}") from None


def key_bits(key: object) -> int:
    """The size that matters for a DKIM key: RSA modulus bits; Ed25519 counts as 256."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return key.key_size if isinstance(key, rsa.RSAPrivateKey) else 256


def dns_records(domain: str, selector: str, key_pem: bytes, *, where: str = "DKIM key",
                report_to: str = "") -> list[DnsRecord]:
    """The DKIM TXT record for ``selector._domainkey.domain``, with the SPF and DMARC records beside it.

    SPF allows the domain's MX hosts and fails the rest (``-all``) only as a
    starting point: add ``include:`` for the relay you send through. DMARC
    starts at ``p=none`` with aggregate reports, the usual first step.

    Example:
        >>> recs = dns_records("example.org", "s1", generate_key("ed25519"))
        >>> [(r.name, r.purpose) for r in recs]
        [('s1._domainkey.example.org', 'DKIM'), ('example.org', 'SPF'), ('_dmarc.example.org', 'DMARC')]
    """
    signer = DkimSigner(domain, selector, load_key(key_pem, where))
    rua = f"; rua=mailto:{report_to}" if report_to else ""
    return [
        DnsRecord(f"{selector}._domainkey.{signer.domain}", "TXT", signer.dns_record(), "DKIM"),
        DnsRecord(signer.domain, "TXT", "v=spf1 mx -all", "SPF"),
        DnsRecord(f"_dmarc.{signer.domain}", "TXT", f"v=DMARC1; p=none; adkim=r; aspf=r{rua}", "DMARC"),
    ]
