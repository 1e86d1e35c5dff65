"""Turning a claimed delivery into bytes, and the stable Message-IDs."""

from __future__ import annotations

import re
from datetime import datetime

from .. import subscribers as subs
from ..campaign_render import CampaignRenderer, archive_period, body_links, markdown_html
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
from ..models import NewsList, utcnow
from ..store import Store
from ..store.campaigns import Campaign
from ..store.outbox import ArchivedDigest, ClaimedDelivery


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


def campaign_message_id(newslist: NewsList, campaign_id: int, subscriber_id: int, domain: str) -> str:
    """Stable per (campaign, subscriber), so a resend can be recognised.

    Example:
        >>> campaign_message_id(NewsList(slug="tin-sang", name="x"), 3, 7, "news.example.org")
        '<campaign.tin-sang.3.7@news.example.org>'
    """
    return f"<campaign.{atom(newslist.slug)}.{campaign_id}.{subscriber_id}@{domain}>"


def campaign_id_of(period: str) -> int:
    """A campaign row's ``period`` is ``campaign:<id>``."""
    return int(period.partition(":")[2])


class MessageBuilder:
    """Turns a claimed delivery into bytes: personalise, headers, MIME, DKIM."""

    def __init__(self, store: Store, settings: Settings, renderer: DigestRenderer | None = None) -> None:
        self.store = store
        self.settings = settings
        self.renderer = renderer or DigestRenderer(store, settings)
        self.signer = DkimKeyring.from_settings(settings)  # every key; picked per From domain
        self.bodies = BodyCache()  # a group's fixed body runs, encoded once
        self._campaigns: CampaignRenderer | None = None
        self._rendered: dict[tuple[int, None], RenderedDigest] = {}
        self._archived: set[int] = set()

    def render_campaign(self, c: Campaign, subscriber_id: int | None, *, prefix: str = "") -> RenderedDigest:
        """A campaign in its list's frame: once per campaign, or per person when the list keeps per-person stats."""
        tracking = self.store.list_tracking(c.list_id)
        key = (c.id, None)
        cache = not prefix and not tracking.per_person_stats  # per person: one rendering each, none kept
        hit = self._rendered.get(key) if cache else None
        if hit is not None:
            return hit
        if self._campaigns is None:
            self._campaigns = CampaignRenderer(self.settings, self.renderer.env)
        links: dict[str, int] = {}
        if tracking.track_clicks and not prefix:  # a test send's clicks count nowhere: its links stay direct
            links = self.store.campaign_links(c.id, body_links(markdown_html(c.body_md)))
        nl = self.renderer.newslist(c.list_id)
        r = self._campaigns.render(nl, c, tracking=tracking, link_ids=links, subscriber_id=subscriber_id,
                                   subject_prefix=prefix)
        if not prefix and self.renderer.archive and c.id not in self._archived:
            # the web archive keeps the first rendering, its links untracked
            self._archived.add(c.id)
            plain = self._campaigns.render(nl, c) if tracking.track_clicks else r
            base = self.settings.base_url.rstrip("/")
            generic = personalise(plain, "", f"{base}/unsubscribe", f"{base}/preferences")
            assert nl.id is not None
            self.store.archive_digest(ArchivedDigest(
                list_id=nl.id, period=archive_period(c.id), categories_key="", subject=plain.subject,
                html=generic.html, text=generic.text, article_count=0, created=c.planned_at or utcnow(),
            ))
        if cache:
            self._rendered[key] = r
        return r

    def build_campaign(self, d: ClaimedDelivery, date: datetime) -> tuple[Mail, bytes]:
        c = self.store.get_campaign(campaign_id_of(d.period))
        nl = self.renderer.newslist(d.list_id)
        r = self.render_campaign(c, d.subscriber_id)
        domain = address_domain(nl.sender_address or self.settings.mail_sender_address)
        mail = self.mail_for(nl, r, d.subscriber_id, d.email, d.name, d.period, date, d.id,
                             message_id=campaign_message_id(nl, c.id, d.subscriber_id, domain), feedback="campaign")
        return mail, render_mail(mail, self.signer, self.bodies)

    def build(self, d: ClaimedDelivery, date: datetime, now: datetime | None = None,
              delivery_id: int | None = None) -> tuple[Mail, bytes]:
        if d.kind == "campaign":
            return self.build_campaign(d, date)
        nl = self.renderer.newslist(d.list_id)
        r = self.renderer.render(nl, d.period, d.categories, d.window, now)
        mail = self.mail_for(nl, r, d.subscriber_id, d.email, d.name, d.period, date,
                             d.id if delivery_id is None else delivery_id)
        return mail, render_mail(mail, self.signer, self.bodies)

    def mail_for(self, nl: NewsList, r: RenderedDigest, subscriber_id: int, email: str, name: str, period: str,
                 date: datetime, delivery_id: int, *, message_id: str | None = None,
                 feedback: str = "digest", links: tuple[str, str] | None = None) -> Mail:
        s = self.settings
        assert nl.id is not None
        from_addr = nl.sender_address or s.mail_sender_address
        domain = address_domain(from_addr)
        unsub, prefs = links or (subs.unsubscribe_url(s, subscriber_id, nl.id, email),
                                 subs.preferences_url(s, subscriber_id, nl.id, email))
        p = personalise(r, name, unsub, prefs)
        return_domain = address_domain("x@" + (s.mail_return_path_domain or domain))
        headers = list_headers(
            nl.name, f"{atom(nl.slug)}.{domain}", unsub, f"mailto:unsubscribe@{return_domain}?subject=unsubscribe%20{unsub.rsplit('/', 1)[1]}"
        )
        if s.mail_feedback_id:
            headers.append(("Feedback-ID", f"{atom(nl.slug)}:{feedback}:{atom(s.mail_feedback_id)}"))
        headers += [("Precedence", "bulk"), *AUTOMATIC_HEADERS]
        return Mail(
            from_name=nl.sender_name or s.mail_sender_name, from_addr=from_addr, to_name=name, to_addr=email,
            subject=p.subject, text=p.text, html=p.html, text_parts=p.text_parts, html_parts=p.html_parts,
            message_id=message_id or digest_message_id(nl, subscriber_id, period, domain), date=date,
            headers=headers,
            return_path=verp_address(s, delivery_id, domain),
        )
