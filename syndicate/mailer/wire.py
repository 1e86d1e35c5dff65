"""Wire-format limits and the one interface the renderer needs from a signer.

The bottom of :mod:`syndicate.mailer`: :mod:`.message` and :mod:`.dkim` both
import from here and never from each other.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["MAX_LINE", "Signer"]

#: RFC 5322's recommended line length; header lines are folded to this.
MAX_LINE = 78


class Signer(Protocol):
    """What :func:`~syndicate.mailer.message.render_mail` calls to sign (a DkimSigner)."""

    def sign(self, headers: list[str], body: bytes, timestamp: int | None = None) -> str: ...
