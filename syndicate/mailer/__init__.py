"""Messages as bytes, and the transports that carry them (listmonk's messenger).

Knows nothing of the store. The package is split by concern, read in this order:

- :mod:`.wire`: ``MAX_LINE`` and the :class:`Signer` protocol (the bottom: the
  two modules below import it, never each other).
- :mod:`.message`: :class:`Mail`, addresses, RFC 2047 headers,
  :func:`list_headers` and :func:`render_mail` (RFC 5322 bytes, CRLF, base64
  UTF-8 parts, IDNA domains; no header ever holds a line break from input).
- :mod:`.body`: base64 body parts; :class:`BodyCache` splices a group's fixed
  runs, encoded once, with each subscriber's values (the same bytes).
- :mod:`.dkim`: :class:`DkimSigner` (RSA or Ed25519, relaxed/relaxed) and
  :class:`DkimKeyring` (every configured key; picks them by From domain).
- :mod:`.verp`: :func:`verp_address` and :func:`parse_verp` (the delivery id
  in the envelope sender, with a MAC against forgery).
- :mod:`.transports`: the :class:`Transport` protocol and the memory, Maildir
  and pooled SMTP transports; :func:`make_transport` picks one.

Everything public is re-exported here, so ``from syndicate.mailer import ...``
is the import to use.
"""

from __future__ import annotations

from .body import BodyCache
from .dkim import DkimKeyring, DkimSigner, load_key
from .message import AUTOMATIC_HEADERS, Mail, clean_text, encode_address, format_address, list_headers, render_mail
from .transports import MaildirTransport, MemoryTransport, SmtpTransport, Transport, make_transport
from .verp import parse_verp, verp_address
from .wire import WireMessage

__all__ = [
    "AUTOMATIC_HEADERS",
    "Mail",
    "render_mail",
    "BodyCache",
    "clean_text",
    "format_address",
    "encode_address",
    "list_headers",
    "DkimKeyring",
    "DkimSigner",
    "load_key",
    "Transport",
    "MemoryTransport",
    "MaildirTransport",
    "SmtpTransport",
    "make_transport",
    "WireMessage",
    "verp_address",
    "parse_verp",
]
