"""One-off notices (double opt-in confirmation, welcome), sent at once."""

from __future__ import annotations

import asyncio
import secrets
import time

from .. import subscribers as subs
from ..config import Settings
from ..digest import render_notice
from ..mailer import DkimSigner, Mail, Transport, render_mail
from ..models import NewsList, Subscriber, utcnow
from ..store import Store
from .build import address_domain, atom


def send_confirmation(store: Store, settings: Settings, transport: Transport, subscriber: Subscriber,
                      newslist: NewsList, token_url: str, *, kind: str = "confirm") -> str:
    """Send the double opt-in email (or ``kind="welcome"``) now; return its Message-ID.

    Runs its own event loop, so call it from synchronous code (a Starlette
    sync handler runs in a thread pool: fine). Raises TransportError.
    """
    return asyncio.run(asend_confirmation(store, settings, transport, subscriber, newslist, token_url, kind=kind))


async def asend_confirmation(store: Store, settings: Settings, transport: Transport, subscriber: Subscriber,
                             newslist: NewsList, token_url: str, *, kind: str = "confirm") -> str:
    """The async form of :func:`send_confirmation` (closes the transport too)."""
    from ..render import make_environment

    assert subscriber.id is not None and newslist.id is not None
    sub = store.find_subscription(subscriber.id, newslist.id)
    content = render_notice(
        settings, make_environment(settings), kind, newslist, subscriber.name, token_url,
        unsubscribe_url=subs.unsubscribe_url(settings, subscriber.id, newslist.id, subscriber.email),
        cadence=sub.cadence if sub else newslist.cadence, weekday=sub.weekday if sub else newslist.weekday,
        send_hour=sub.send_hour if sub else newslist.send_hour,
    )
    from_addr = newslist.sender_address or settings.mail_sender_address
    domain = address_domain(from_addr)
    mid = f"<{kind}.{atom(newslist.slug)}.{subscriber.id}.{int(time.time())}.{secrets.token_hex(4)}@{domain}>"
    mail = Mail(
        from_name=newslist.sender_name or settings.mail_sender_name, from_addr=from_addr, to_name=subscriber.name,
        to_addr=subscriber.email, subject=content.subject, text=content.text, html=content.html, message_id=mid,
        date=utcnow(), headers=[("Auto-Submitted", "auto-generated")],
    )
    try:
        await transport.send(mail.envelope_from, mail.recipients, render_mail(mail, DkimSigner.from_settings(settings)))
    finally:
        await transport.close()
    return mid
