"""One-off announcements to a list: create, edit, cancel, test, send, report.

A campaign is written in Markdown and rendered into its list's email frame
(:mod:`syndicate.campaign_render`). Sending it plans one outbox row per
active subscriber of the list (only those whose topics meet its categories,
if it names any), so the outbox's leases, journal, retries, bounces and
suppression hold for it as for a digest; there is no second send path. A
campaign with ``send_at`` is ``scheduled`` and is planned by the first
``syndicate send`` at or after that time. Its life::

    draft --send--> sending --last row settled--> sent
    draft/scheduled --cancel--> cancelled
    scheduled --send_at reached (send tick) or send--> sending

A test send (:func:`test_campaign`) goes straight through the configured
transport to one address, touching no outbox row.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .config import Settings
from .errors import InputError
from .mailer import Transport, make_transport, render_mail
from .models import to_iso, utcnow
from .sanitize import slugify
from .store import Store
from .store.campaigns import CAMPAIGN_STATUSES, Campaign, CampaignReport, LinkClicks, Tracking
from .subscribers import check_categories, normalize_address

__all__ = [
    "CAMPAIGN_STATUSES", "Campaign", "CampaignReport", "LinkClicks", "Tracking", "create_campaign", "edit_campaign",
    "cancel_campaign", "send_campaign", "test_campaign", "campaign_report", "plan_due_campaigns", "set_tracking",
    "follow_click", "EDITABLE",
]

#: Statuses in which a campaign may still be edited or cancelled.
EDITABLE = ("draft", "scheduled")
#: The longest subject accepted (a subject line, not a paragraph).
MAX_SUBJECT = 200


def _subject(subject: str) -> str:
    s = " ".join((subject or "").split())
    if not s:
        raise InputError("the subject is empty; give one with --subject")
    if len(s) > MAX_SUBJECT:
        raise InputError(f"the subject is {len(s):,} characters long; at most {MAX_SUBJECT} fit a subject line")
    return s


def _body(body_markdown: str) -> str:
    if not (body_markdown or "").strip():
        raise InputError("the body is empty; write the announcement in Markdown")
    if "\x00" in body_markdown:
        raise InputError("the body holds a NUL character; is it a text file?")
    return body_markdown


def _send_at(send_at: datetime | None, now: datetime) -> datetime | None:
    if send_at is None:
        return None
    if send_at.tzinfo is None:
        raise InputError(f"send-at {send_at.isoformat()} has no time zone; add one, e.g. +07:00 or Z")
    if send_at <= now:
        raise InputError(f"send-at {send_at.isoformat()} is in the past (now is {now.isoformat(timespec='seconds')})")
    return send_at


def _categories(store: Store, list_id: int, categories: Sequence[str]) -> tuple[str, ...]:
    nl = store.get_list_by_id(list_id)
    return tuple(check_categories([slugify(c) for c in categories], nl))


def create_campaign(store: Store, settings: Settings, *, list_slug: str, subject: str, body_markdown: str,
                    send_at: datetime | None = None, categories: Sequence[str] = (),
                    now: datetime | None = None) -> Campaign:
    """A new campaign: a draft, or scheduled for ``send_at`` (a tz-aware time in the future).

    Raises :class:`InputError` (naming what is wrong) or :class:`NotFound` (an unknown list);
    nothing is stored then.
    """
    now = now or utcnow()
    nl = store.get_list(list_slug)
    assert nl.id is not None
    subj, body, when = _subject(subject), _body(body_markdown), _send_at(send_at, now)
    cats = _categories(store, nl.id, categories)
    return store.insert_campaign(nl.id, subj, body, cats, when, "scheduled" if when else "draft", now)


def edit_campaign(store: Store, id: int, *, now: datetime | None = None, **changes: Any) -> Campaign:
    """Change ``subject``, ``body_markdown``, ``send_at`` or ``categories`` while the campaign is a
    draft or scheduled; ``None`` values are left alone. ``clear_send_at=True`` makes it a draft again."""
    now = now or utcnow()
    c = store.get_campaign(id)
    unknown = set(changes) - {"subject", "body_markdown", "send_at", "categories", "clear_send_at"}
    if unknown:
        raise InputError(f"a campaign has no field {', '.join(sorted(unknown))} that can be changed")
    if c.status not in EDITABLE:
        raise InputError(f"campaign {id} is {c.status}; only a draft or scheduled campaign can be edited")
    subject = _subject(changes["subject"]) if changes.get("subject") is not None else c.subject
    body = _body(changes["body_markdown"]) if changes.get("body_markdown") is not None else c.body_md
    send_at = c.send_at
    if changes.get("clear_send_at"):
        send_at = None
    elif changes.get("send_at") is not None:
        send_at = _send_at(changes["send_at"], now)
    cats = c.categories
    if changes.get("categories") is not None:
        cats = _categories(store, c.list_id, changes["categories"])
    status = "scheduled" if send_at else "draft"
    if not store.update_campaign(id, subject=subject, body_md=body, categories=cats, send_at=send_at,
                                 status=status, allowed=EDITABLE):
        now_c = store.get_campaign(id)
        raise InputError(f"campaign {id} is {now_c.status}; only a draft or scheduled campaign can be edited")
    return store.get_campaign(id)


def cancel_campaign(store: Store, id: int) -> Campaign:
    """Cancel a draft or scheduled campaign (nothing of it has been planned, so nothing is sent)."""
    c = store.get_campaign(id)
    if store.cancel_campaign_rows(id, EDITABLE) is None:
        c = store.get_campaign(id)
        raise InputError(f"campaign {id} is {c.status}; only a draft or scheduled campaign can be cancelled")
    return store.get_campaign(c.id)


def send_campaign(store: Store, settings: Settings, id: int, now: datetime | None = None) -> int:
    """Plan the campaign now: one outbox row per active subscriber of its list (``syndicate send``
    delivers them). Returns the rows planned. A campaign whose planning was cut off is resumed;
    one already planned plans nothing new (0)."""
    now = now or utcnow()
    c = store.get_campaign(id)
    if c.status == "sending" and c.planned_at is None:
        return store.plan_campaign(id, now)
    if not store.start_campaign(id, EDITABLE):
        c = store.get_campaign(id)
        raise InputError(f"campaign {id} is {c.status}; only a draft or scheduled campaign can be sent")
    return store.plan_campaign(id, now)


def plan_due_campaigns(store: Store, now: datetime) -> int:
    """The send tick's part: plan every scheduled campaign whose time has come (and finish any
    planning cut off). Returns the rows planned."""
    planned = 0
    for cid in store.campaigns_to_plan(now):
        store.start_campaign(cid, ("scheduled",))
        if store.get_campaign(cid).status == "sending":
            planned += store.plan_campaign(cid, now)
    return planned


def test_campaign(store: Store, settings: Settings, id: int, to: str, now: datetime | None = None, *,
                  transport: Transport | None = None) -> str:
    """Send one real message of the campaign to ``to`` now (subject prefixed ``[TEST] ``), through
    ``transport`` or the configured one. Touches no outbox row. Returns its Message-ID.

    Its unsubscribe and preferences links are the list's generic ones (a test address is no
    subscriber), its body links are never tracked (its clicks count nowhere), and its envelope
    sender is the list's address, not a VERP one, so a bounce of it counts against nobody.
    """
    from .sender.build import MessageBuilder, address_domain

    now = now or utcnow()
    address = normalize_address(to)
    c = store.get_campaign(id)
    builder = MessageBuilder(store, settings)
    nl = builder.renderer.newslist(c.list_id)
    r = builder.render_campaign(c, None, prefix="[TEST] ")
    from_addr = nl.sender_address or settings.mail_sender_address
    domain = address_domain(from_addr)
    base = settings.base_url.rstrip("/")
    stamp = now.strftime("%Y%m%d%H%M%S%f")
    mail = builder.mail_for(nl, r, 0, address, "", f"campaign:{c.id}", now, 0,
                            message_id=f"<campaign-test.{c.id}.{stamp}@{domain}>", feedback="campaign-test",
                            links=(f"{base}/unsubscribe", f"{base}/preferences"))
    headers = [(k, v) for k, v in mail.headers if k.lower() not in ("list-unsubscribe", "list-unsubscribe-post")]
    mail = dataclasses.replace(mail, return_path=from_addr, headers=headers)
    raw = render_mail(mail, builder.signer)
    own = transport is None
    t = transport or make_transport(settings)

    async def go() -> None:
        try:
            await t.send(mail.envelope_from, [address], raw)
        finally:
            if own:
                await t.close()

    asyncio.run(go())
    return mail.message_id


def campaign_report(store: Store, id: int) -> CampaignReport:
    """Planned, sent, failed, bounced, complained and unsubscribed after it; clicks per link if tracked."""
    return store.campaign_report(id)


def check_tracking(store: Store, list_slug: str, *, track_clicks: bool | None = None,
                   per_person_stats: bool | None = None) -> Tracking:
    """The list's tracking with these changes, or InputError saying why not (nothing is written)."""
    nl = store.get_list(list_slug)
    assert nl.id is not None
    old = store.list_tracking(nl.id)
    new = Tracking(old.track_clicks if track_clicks is None else track_clicks,
                   old.per_person_stats if per_person_stats is None else per_person_stats)
    if new.per_person_stats and not new.track_clicks:
        raise InputError(f"list {list_slug!r}: per-person stats need click tracking; add --track-clicks")
    return new


def set_tracking(store: Store, list_slug: str, *, track_clicks: bool | None = None,
                 per_person_stats: bool | None = None) -> Tracking:
    """Turn a list's click counting (and per-person stats, which need click counting) on or off."""
    new = check_tracking(store, list_slug, track_clicks=track_clicks, per_person_stats=per_person_stats)
    list_id = store.get_list(list_slug).id
    assert list_id is not None
    store.set_list_tracking(list_id, new)
    return new


def follow_click(store: Store, settings: Settings, token: str, now: datetime | None = None) -> str | None:
    """The address a click token leads to, counting the click; None (nothing counted) for a token we
    did not sign or a link not stored for that campaign: the redirect never goes anywhere else."""
    from .campaign_render import read_click_token

    got = read_click_token(settings, token)
    if got is None:
        return None
    campaign_id, link_id, subscriber_id = got
    return store.record_click(campaign_id, link_id, subscriber_id, now)


test_campaign.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, whatever its name


def _iso(value: datetime | None) -> str | None:
    return to_iso(value) if value is not None else None


def campaign_dict(c: Campaign, with_body: bool = False) -> dict[str, Any]:
    """A campaign as JSON for `campaign ls/show --json` and the API."""
    out: dict[str, Any] = {
        "id": c.id, "list": c.list_slug, "status": c.status, "subject": c.subject, "categories": list(c.categories),
        "send_at": _iso(c.send_at), "created": _iso(c.created), "planned_at": _iso(c.planned_at),
        "sent_at": _iso(c.sent_at),
    }
    if with_body:
        out["body_markdown"] = c.body_md
    return out


def report_dict(r: CampaignReport) -> dict[str, Any]:
    """A campaign report as JSON for `campaign report --json` and the API."""
    return {
        "id": r.campaign_id, "status": r.status, "planned": r.planned, "sent": r.sent, "failed": r.failed,
        "bounced": r.bounced, "complained": r.complained, "unsubscribed": r.unsubscribed, "queued": r.queued,
        "sending": r.sending, "unknown": r.unknown, "cancelled": r.cancelled,
        "links": [{"url": k.url, "clicks": k.clicks, "people": k.people} for k in r.links],
    }
