"""Preview: exactly what `send` would send one subscriber, writing nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .. import subscribers as subs
from ..config import Settings
from ..digest import DigestRenderer, outlook
from ..mailer import render_mail
from ..models import utcnow
from ..store import Store
from .build import MessageBuilder


@dataclass(frozen=True)
class Preview:
    subject: str
    html: str
    text: str
    eml: bytes
    period: str
    article_count: int
    due: bool
    note: str = ""  # why `send` would send nothing now (already sent, not due, nothing new); "" if it sends
    shown: bool = True  # False: nothing to show (not due, nothing new, skipped); only the note counts


def preview(store: Store, settings: Settings, email: str, list_slug: str, now: datetime | None = None) -> Preview:
    """Exactly what ``send`` would send this subscriber at ``now``, without
    writing anything; when it would send nothing, ``note`` says why, and the
    rendering is the digest already queued or sent for the period (``shown``)
    or of an empty period, for reference only (not ``shown``)."""
    now = now or utcnow()
    nl = store.get_list(list_slug)
    subscriber = store.get_subscriber(subs.normalize_address(email))
    assert nl.id is not None and subscriber.id is not None
    subscription = store.get_subscription(subscriber.id, nl.id)
    assert subscription.id is not None
    # Read as planning reads it, even when the subscription is not active: shows what it would get.
    o = outlook(store, nl, subscription.id, subscriber.email, now)
    builder = MessageBuilder(store, settings, DigestRenderer(store, settings, archive=False))
    r = builder.renderer.render(nl, o.period.key, o.categories, o.window, now)
    mail = builder.mail_for(nl, r, subscriber.id, subscriber.email, subscriber.name, o.period.key, now, 0)
    return Preview(mail.subject, mail.html, mail.text, render_mail(mail, builder.signer), o.period.key,
                   r.article_count, o.due, o.note, o.show)
