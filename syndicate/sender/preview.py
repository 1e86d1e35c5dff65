"""Preview: exactly what `send` would send one subscriber, writing nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .. import subscribers as subs
from ..config import Settings
from ..digest import DigestRenderer, DueClock, effective_categories, window_for
from ..mailer import render_mail
from ..models import utcnow
from ..store import Store
from ..store.outbox import DueCandidate
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


def preview(store: Store, settings: Settings, email: str, list_slug: str, now: datetime | None = None) -> Preview:
    """Exactly what ``send`` would send this subscriber at ``now`` (or the
    current period's digest if it is not due), without writing anything."""
    now = now or utcnow()
    nl = store.get_list(list_slug)
    subscriber = store.get_subscriber(subs.normalize_address(email))
    assert nl.id is not None and subscriber.id is not None
    subscription = store.get_subscription(subscriber.id, nl.id)
    assert subscription.id is not None
    # Built from the rows directly (what due_subscriptions yields), even when
    # the subscription is not active: shows what it would get.
    candidate = DueCandidate(
        subscription.id, subscriber.id, nl.id, subscription.cadence, subscription.weekday,
        subscription.send_hour, tuple(subscription.categories), subscription.last_period,
        subscription.last_sent_at, subscription.confirmed or subscription.created, subscriber.timezone,
    )
    clock = DueClock(now)
    p = clock.due(candidate)
    due = p is not None
    if p is None:
        p = clock.period(candidate.timezone, candidate.cadence, candidate.weekday, candidate.send_hour)
    start, end = window_for(candidate, p)
    cats = effective_categories(candidate.categories, nl)
    builder = MessageBuilder(store, settings, DigestRenderer(store, settings, archive=False))
    r = builder.renderer.render(nl, p.key, cats, start, end, now)
    mail = builder.mail_for(nl, r, subscriber.id, subscriber.email, subscriber.name, p.key, now, 0)
    return Preview(mail.subject, mail.html, mail.text, render_mail(mail, builder.signer), p.key, r.article_count, due)
