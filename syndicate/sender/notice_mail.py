"""Turning a claimed notice row (confirmation or welcome email) into bytes.

The drain builds digests with :class:`~syndicate.sender.build.MessageBuilder`
and notices with :class:`NoticeBuilder`; both go out through the same claim,
journal, retry and backoff path. A notice's links are made when it is built
(a confirmation link is signed then, so a retry carries a fresh one), its
Message-ID is stable per outbox row and its return path is the row's VERP
address, so a bounce of a confirmation counts like a bounce of a digest.
"""

from __future__ import annotations

from datetime import datetime

import jinja2

from .. import subscribers as subs
from ..config import Settings
from ..digest import render_notice
from ..mailer import AUTOMATIC_HEADERS, DkimKeyring, Mail, list_headers, render_mail, verp_address
from ..models import NewsList
from ..store import Store
from ..store.notices import NOTICE_KINDS
from ..store.outbox import ClaimedDelivery
from .build import address_domain, atom


def notice_message_id(kind: str, newslist: NewsList, subscriber_id: int, delivery_id: int, domain: str) -> str:
    """Stable per outbox row, so a resend of the same row can be recognised.

    Example:
        >>> notice_message_id("welcome", NewsList(slug="tin-sang", name="x"), 7, 42, "news.example.org")
        '<welcome.tin-sang.7.42@news.example.org>'
    """
    return f"<{kind}.{atom(newslist.slug)}.{subscriber_id}.{delivery_id}@{domain}>"


class NoticeBuilder:
    """Builds the confirmation and welcome emails of claimed outbox rows."""

    def __init__(self, store: Store, settings: Settings, signer: DkimKeyring | None = None) -> None:
        self.store = store
        self.settings = settings
        self.signer = signer if signer is not None else DkimKeyring.from_settings(settings)
        self._env: jinja2.Environment | None = None
        self._lists: dict[int, NewsList] = {}

    def env(self) -> jinja2.Environment:
        if self._env is None:
            from ..render import make_environment

            self._env = make_environment(self.settings)
        return self._env

    def newslist(self, list_id: int) -> NewsList:
        if list_id not in self._lists:
            self._lists[list_id] = self.store.get_list_by_id(list_id)
        return self._lists[list_id]

    def mail_for(self, d: ClaimedDelivery, date: datetime) -> Mail:
        if d.kind not in NOTICE_KINDS:
            raise ValueError(f"delivery {d.id} is a {d.kind!r}, not a notice")
        s = self.settings
        nl = self.newslist(d.list_id)
        sub = self.store.find_subscription(d.subscriber_id, d.list_id)
        unsub = subs.unsubscribe_url(s, d.subscriber_id, d.list_id, d.email)
        if d.kind == "confirm":
            action = subs.confirm_url(s, d.subscriber_id, d.list_id, d.email)
        else:
            action = subs.preferences_url(s, d.subscriber_id, d.list_id, d.email)
        content = render_notice(
            s, self.env(), d.kind, nl, d.name, action, unsubscribe_url=unsub,
            cadence=sub.cadence if sub else nl.cadence, weekday=sub.weekday if sub else nl.weekday,
            send_hour=sub.send_hour if sub else nl.send_hour,
        )
        from_addr = nl.sender_address or s.mail_sender_address
        domain = address_domain(from_addr)
        headers: list[tuple[str, str]] = list(AUTOMATIC_HEADERS)
        if d.kind == "welcome":  # list mail from now on: one-click unsubscribe works from the first one
            return_domain = address_domain("x@" + (s.mail_return_path_domain or domain))
            headers = list_headers(
                nl.name, f"{atom(nl.slug)}.{domain}", unsub,
                f"mailto:unsubscribe@{return_domain}?subject=unsubscribe%20{unsub.rsplit('/', 1)[1]}",
            ) + headers
        if s.mail_feedback_id:
            headers.append(("Feedback-ID", f"{atom(nl.slug)}:{d.kind}:{atom(s.mail_feedback_id)}"))
        return Mail(
            from_name=nl.sender_name or s.mail_sender_name, from_addr=from_addr, to_name=d.name, to_addr=d.email,
            subject=content.subject, text=content.text, html=content.html,
            message_id=notice_message_id(d.kind, nl, d.subscriber_id, d.id, domain), date=date, headers=headers,
            return_path=verp_address(s, d.id, domain),
        )

    def build(self, d: ClaimedDelivery, date: datetime) -> tuple[Mail, bytes]:
        mail = self.mail_for(d, date)
        return mail, render_mail(mail, self.signer)
