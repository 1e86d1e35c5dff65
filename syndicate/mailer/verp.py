"""VERP return paths that name their delivery, with a MAC against forgery.

:func:`verp_address` gives the envelope sender ``bounce+<id>-<mac>@domain``
for a delivery id; :func:`parse_verp` gets the id back (``None`` when forged).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from ..config import Settings
from .message import encode_address

__all__ = ["verp_address", "parse_verp"]


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
