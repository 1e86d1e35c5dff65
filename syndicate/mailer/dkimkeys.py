"""DKIM keys for a real domain: make one, and say what DNS must publish.

:func:`generate_key` makes an RSA-2048 or Ed25519 private key as PEM;
:func:`write_key` writes it 0600 without ever leaving a readable copy;
:func:`keygen_target` decides which configured key a ``dkim keygen`` writes
(or that it adds a ``[[dkim.keys]]`` entry); :func:`dns_records` gives the
TXT records (DKIM, SPF, DMARC) to publish for one key and
:func:`configured_dns_records` for every configured key. Nothing here
touches the store or the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import DkimKey, Settings
from ..errors import ConfigError
from .dkim import DkimSigner, load_key

__all__ = ["DnsRecord", "KEY_TYPES", "KeygenTarget", "configured_dns_records", "dns_records", "generate_key",
           "key_bits", "keygen_target", "write_key"]

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
                report_to: str = "", key: DkimSigner | None = None) -> list[DnsRecord]:
    """The DKIM TXT record for ``selector._domainkey.domain``, with the SPF and DMARC records beside it.

    SPF allows the domain's MX hosts and fails the rest (``-all``) only as a
    starting point: add ``include:`` for the relay you send through. DMARC
    starts at ``p=none`` with aggregate reports, the usual first step.

    Example:
        >>> recs = dns_records("example.org", "s1", generate_key("ed25519"))
        >>> [(r.name, r.purpose) for r in recs]
        [('s1._domainkey.example.org', 'DKIM'), ('example.org', 'SPF'), ('_dmarc.example.org', 'DMARC')]
    """
    signer = key or DkimSigner(domain, selector, load_key(key_pem, where))
    rua = f"; rua=mailto:{report_to}" if report_to else ""
    return [
        DnsRecord(f"{selector}._domainkey.{signer.domain}", "TXT", signer.dns_record(), "DKIM"),
        DnsRecord(signer.domain, "TXT", "v=spf1 mx -all", "SPF"),
        DnsRecord(f"_dmarc.{signer.domain}", "TXT", f"v=DMARC1; p=none; adkim=r; aspf=r{rua}", "DMARC"),
    ]


def _kind_of(path: Path) -> str | None:
    """``rsa`` or ``ed25519`` for a readable key file, else None."""
    try:
        return "ed25519" if key_bits(load_key(path.read_bytes(), str(path))) == 256 else "rsa"
    except (OSError, ConfigError):
        return None


@dataclass(frozen=True)
class KeygenTarget:
    """Where ``dkim keygen`` writes, and what it records in the config.

    ``config`` is the key (its ``where`` the configured one it fills, or
    ``[dkim]``/``[[dkim.keys]]`` for a new one); ``dkim_changes`` are keys
    to set in ``[dkim]``; ``new_entry`` means append a ``[[dkim.keys]]`` table.
    """

    config: DkimKey
    dkim_changes: dict[str, str]
    new_entry: bool


def keygen_target(settings: Settings, kind: str, directory: Path, *, domain: str | None = None,
                  selector: str | None = None, out: str | None = None) -> KeygenTarget:
    """The key a ``dkim keygen --type kind`` makes.

    A configured key it matches (the same ``--out`` file; else the same
    domain and ``--selector``; else, for the domain, one whose file is
    missing or one of the same type) is the one written (an existing file
    needs ``--force``). Otherwise the first key goes in ``[dkim]`` and any
    further one (Ed25519 beside RSA, or a list's own From domain) becomes a
    new ``[[dkim.keys]]`` entry with its own selector and file.
    """
    if kind not in KEY_TYPES:
        raise ConfigError(f"DKIM key type {kind!r}: choose one of {', '.join(KEY_TYPES)}")
    configs = settings.dkim_key_configs()
    domain = (domain or settings.dkim_domain or settings.mail_sender_address.rpartition("@")[2]).strip()
    same = [c for c in configs if c.domain.lower().rstrip(".") == domain.lower().rstrip(".")]
    if out:
        match = [c for c in configs if Path(c.key_file) == Path(out)]
    elif selector:
        match = [c for c in same if c.selector == selector]
    else:
        match = [c for c in same if not Path(c.key_file).exists()] or [c for c in same if _kind_of(Path(c.key_file)) == kind]
    if not settings.dkim_key_file and not match:
        sel = selector or settings.dkim_selector or "syndicate"
        config = DkimKey(domain, sel, out or str(directory / f"dkim-{kind}.pem"))
        wanted = {"key_file": config.key_file, "domain": domain, "selector": sel}
        current = {"key_file": settings.dkim_key_file, "domain": settings.dkim_domain, "selector": settings.dkim_selector}
        return KeygenTarget(config, {k: v for k, v in wanted.items() if current[k] != v}, False)
    if match:
        config = match[0]
        changes: dict[str, str] = {}
        if config.where == "[dkim]":  # a [dkim] key_file with no domain or selector yet gets them
            if not settings.dkim_domain:
                changes["domain"] = domain
            if not settings.dkim_selector:
                changes["selector"] = selector or "syndicate"
            config = DkimKey(settings.dkim_domain or domain, settings.dkim_selector or changes.get("selector", ""),
                             config.key_file)
        return KeygenTarget(config, changes, False)
    taken = {c.selector for c in same}
    sel = selector or ("syndicate" if not same else f"syndicate-{kind}")
    n = 2
    base = sel
    while sel in taken:
        sel, n = f"{base}{n}", n + 1
    files = {Path(c.key_file) for c in configs}
    path = Path(out) if out else directory / f"dkim-{kind}.pem"
    if not out and (path in files or path.exists() or not same):
        path = directory / f"dkim-{sel}.{domain}.pem"
    return KeygenTarget(DkimKey(domain, sel, str(path), where="[[dkim.keys]]"), {}, True)


def configured_dns_records(settings: Settings, *, report_to: str = "") -> list[DnsRecord]:
    """The DKIM record of every configured key, then SPF and DMARC once per signing domain.

    Raises ConfigError naming the key that is incomplete or unreadable.
    """
    configs = settings.dkim_key_configs()
    if not configs:
        raise ConfigError(f"{settings.source}: no [dkim] key_file; run `syndicate dkim keygen` first")
    dkim_records: list[DnsRecord] = []
    domains: dict[str, list[DnsRecord]] = {}
    for config in configs:
        signer = DkimSigner.from_config(config, settings.source)
        records = dns_records(config.domain, config.selector, b"", key=signer, report_to=report_to)
        dkim_records.append(records[0])
        domains.setdefault(signer.domain, records[1:])
    return dkim_records + [r for records in domains.values() for r in records]
