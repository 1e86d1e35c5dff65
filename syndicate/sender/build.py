"""Turning a claimed delivery into bytes, and the stable Message-IDs."""

from __future__ import annotations

import re
from datetime import datetime

from .. import subscribers as subs
from ..config import Settings
from ..digest import DigestRenderer, RenderedDigest, personalise
from ..mailer import (
    AUTOMATIC_HEADERS,
    BodyCache,
    DkimKeyring,
    Mail,
    encode_address,
    list_headers,
    render_mail,
    verp_address,
)
from ..models import NewsList
from ..store import Store
from ..store.outbox import ClaimedDelivery


def address_domain(address: str) -> str:
    return encode_address(address).rpartition("@")[2]


def atom(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-") or "list"


def digest_message_id(newslist: NewsList, subscriber_id: int, period: str, domain: str) -> str:
    """Stable per (list, subscriber, period), so a resend can be recognised.

    Example:
        >>> digest_message_id(NewsList(slug="tin-sang", name="x"), 7, "2026-11-24", "news.example.org")
        '<digest.tin-sang.7.2026-11-24@news.example.org>'
    """
    return f"<digest.{atom(newslist.slug)}.{subscriber_id}.{period}@{domain}>"


class MessageBuilder:
    """Turns a claimed delivery into bytes: personalise, headers, MIME, DKIM."""

    def __init__(self, store: Store, settings: Settings, renderer: DigestRenderer | None = None) -> None:
        self.store = store
        self.settings = settings
        self.renderer = renderer or DigestRenderer(store, settings)
        self.signer = DkimKeyring.from_settings(settings)  # every key; picked per From domain
        self.bodies = BodyCache()  # a group's fixed body runs, encoded once

    def build(self, d: ClaimedDelivery, date: datetime, now: datetime | None = None,
              delivery_id: int | None = None) -> tuple[Mail, bytes]:
        nl = self.renderer.newslist(d.list_id)
        r = self.renderer.render(nl, d.period, d.categories, d.window, now)
        mail = self.mail_for(nl, r, d.subscriber_id, d.email, d.name, d.period, date,
                             d.id if delivery_id is None else delivery_id)
        return mail, render_mail(mail, self.signer, self.bodies)

    def mail_for(self, nl: NewsList, r: RenderedDigest, subscriber_id: int, email: str, name: str, period: str,
                 date: datetime, delivery_id: int) -> Mail:
        s = self.settings
        assert nl.id is not None
        from_addr = nl.sender_address or s.mail_sender_address
        domain = address_domain(from_addr)
        unsub = subs.unsubscribe_url(s, subscriber_id, nl.id, email)
        prefs = subs.preferences_url(s, subscriber_id, nl.id, email)
        p = personalise(r, name, unsub, prefs)
        return_domain = address_domain("x@" + (s.mail_return_path_domain or domain))
        headers = list_headers(
            nl.name, f"{atom(nl.slug)}.{domain}", unsub, f"mailto:unsubscribe@{return_domain}?subject=unsubscribe%20{unsub.rsplit('/', 1)[1]}"
        )
        if s.mail_feedback_id:
            headers.append(("Feedback-ID", f"{atom(nl.slug)}:digest:{atom(s.mail_feedback_id)}"))
        headers += [("Precedence", "bulk"), *AUTOMATIC_HEADERS]
        return Mail(
            from_name=nl.sender_name or s.mail_sender_name, from_addr=from_addr, to_name=name, to_addr=email,
            subject=p.subject, text=p.text, html=p.html, text_parts=p.text_parts, html_parts=p.html_parts,
            message_id=digest_message_id(nl, subscriber_id, period, domain), date=date, headers=headers,
            return_path=verp_address(s, delivery_id, domain),
        )
