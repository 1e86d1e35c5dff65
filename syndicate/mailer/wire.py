"""Wire-format limits and the one interface the renderer needs from a signer.

The bottom of :mod:`syndicate.mailer`: :mod:`.message` and :mod:`.dkim` both
import from here and never from each other.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["MAX_LINE", "Signer", "WireMessage"]

#: RFC 5322's recommended line length; header lines are folded to this.
MAX_LINE = 78


class Signer(Protocol):
    """What :func:`~syndicate.mailer.message.render_mail` calls to sign (a DkimSigner)."""

    def sign(self, headers: list[str], body: bytes, timestamp: int | None = None, *,
             canonical: bool = False) -> str: ...


class WireMessage(bytes):
    """Bytes :func:`~syndicate.mailer.message.render_mail` built, so already in SMTP's DATA form.

    Every line ends in CRLF (there is no other CR or LF), no line starts
    with a dot and the last line ends in CRLF: the SMTP transport sends it
    as it is, without scanning 50 KB three times per message to find out.
    Anything else (plain ``bytes``) is checked and rewritten if needed.
    """

    __slots__ = ()
