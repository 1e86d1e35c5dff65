"""Campaigns (one-off announcements) over a real store file: lifecycle, planning, rendering, reports."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import syndicate.campaigns as campaigns
from syndicate.campaign_render import click_token, markdown_html, read_click_token
from syndicate.config import Settings
from syndicate.errors import InputError, NotFound
from syndicate.mailer import MemoryTransport
from syndicate.models import NewsList
from syndicate.sender import run_send
from syndicate.store import Store, open_store
from syndicate.subscribers import read_token, subscribe, unsubscribe_address
from syndicate.suppressions import suppress

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
AT = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # daily 07:00 digests are due in Ho Chi Minh City
BODY = "# Hội thảo khởi nghiệp\n\nMời bạn đến **Nhà hát lớn** ngày 5/12. [Đăng ký](https://events.example.org/a?x=1&y=2)\n"


def make_list(store: Store, slug: str = "tin-sang", **kw: Any) -> NewsList:
    return store.create_list(NewsList(slug=slug, name=kw.pop("name", "Tin sáng Sài Gòn"), **kw))


def people(store: Store, settings: Settings, slug: str, n: int, **kw: Any) -> list[str]:
    out = []
    for i in range(n):
        address = f"p{i}@example.org"
        subscribe(store, settings, address, slug, confirmed=True, now=T0, **kw)
        out.append(address)
    return out


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def drain(store: Store, settings: Settings, at: datetime = AT) -> MemoryTransport:
    t = MemoryTransport()
    report = run_send(store, settings, t, now=at, lock=False)
    assert report.failed == 0 and not report.fatal
    return t


# -- lifecycle and bad input ------------------------------------------------------------


def test_create_is_a_draft_and_send_at_schedules(store: Store, settings: Settings) -> None:
    make_list(store)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="  Hội   thảo ", body_markdown=BODY,
                                  now=T0)
    assert (c.status, c.subject, c.list_slug, c.send_at) == ("draft", "Hội thảo", "tin-sang", None)
    s = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="Later", body_markdown=BODY,
                                  send_at=T0 + timedelta(days=1), now=T0)
    assert (s.status, s.send_at) == ("scheduled", T0 + timedelta(days=1))
    assert [x.id for x in store.list_campaigns()] == [s.id, c.id]


@pytest.mark.parametrize(("kw", "message"), [
    ({"list_slug": "nope"}, "no list with slug 'nope' (see `syndicate list ls`)"),
    ({"subject": "  "}, "the subject is empty; give one with --subject"),
    ({"body_markdown": " \n "}, "the body is empty; write the announcement in Markdown"),
    ({"send_at": T0 - timedelta(minutes=1)},
     "send-at 2026-11-22T23:59:00+00:00 is in the past (now is 2026-11-23T00:00:00+00:00)"),
    ({"send_at": datetime(2026, 12, 1, 9, 0)}, "send-at 2026-12-01T09:00:00 has no time zone; add one, e.g. +07:00 or Z"),
    ({"categories": ["the-thao"]}, "list 'tin-sang' does not cover the-thao; choose from xa-hoi"),
])
def test_bad_input_is_named_and_nothing_is_stored(store: Store, settings: Settings, kw: dict[str, Any],
                                                  message: str) -> None:
    make_list(store, categories=["xa-hoi"])
    args: dict[str, Any] = {"list_slug": "tin-sang", "subject": "S", "body_markdown": BODY, "now": T0, **kw}
    with pytest.raises((InputError, NotFound)) as exc:
        campaigns.create_campaign(store, settings, **args)
    assert str(exc.value) == message
    assert store.list_campaigns() == []


def test_edit_only_while_draft_or_scheduled(store: Store, settings: Settings) -> None:
    make_list(store)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    e = campaigns.edit_campaign(store, c.id, subject="New", send_at=T0 + timedelta(hours=2), now=T0)
    assert (e.subject, e.status, e.body_md) == ("New", "scheduled", BODY)
    e = campaigns.edit_campaign(store, c.id, clear_send_at=True, now=T0)
    assert (e.status, e.send_at) == ("draft", None)
    campaigns.send_campaign(store, settings, c.id, T0)
    with pytest.raises(InputError) as exc:
        campaigns.edit_campaign(store, c.id, subject="Too late", now=T0)
    assert str(exc.value) == f"campaign {c.id} is sent; only a draft or scheduled campaign can be edited"
    with pytest.raises(InputError) as exc:
        campaigns.cancel_campaign(store, c.id)
    assert str(exc.value) == f"campaign {c.id} is sent; only a draft or scheduled campaign can be cancelled"
    assert store.get_campaign(c.id).subject == "New"
    with pytest.raises(NotFound) as nf:
        campaigns.edit_campaign(store, 999, subject="x")
    assert str(nf.value) == "no campaign with id 999 (see `syndicate campaign ls`)"


def test_cancelled_campaign_is_never_sent(store: Store, settings: Settings) -> None:
    make_list(store)
    people(store, settings, "tin-sang", 2)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY,
                                  send_at=AT - timedelta(minutes=5), now=T0)
    assert campaigns.cancel_campaign(store, c.id).status == "cancelled"
    with pytest.raises(InputError) as exc:
        campaigns.send_campaign(store, settings, c.id, AT)
    assert str(exc.value) == f"campaign {c.id} is cancelled; only a draft or scheduled campaign can be sent"
    t = drain(store, settings)
    assert not [m for m in t.sent if b"campaign." in m[2]]
    assert campaigns.campaign_report(store, c.id).planned == 0


# -- planning ---------------------------------------------------------------------------


def test_plans_every_active_subscriber_once_and_none_of_the_others(store: Store, settings: Settings) -> None:
    make_list(store)
    make_list(store, "khac", name="Khác")
    active = people(store, settings, "tin-sang", 5)
    subscribe(store, settings, "pending@example.org", "tin-sang", now=T0)  # never confirmed
    subscribe(store, settings, "left@example.org", "tin-sang", confirmed=True, now=T0)
    unsubscribe_address(store, settings, "left@example.org", "tin-sang")
    subscribe(store, settings, "gone@example.org", "tin-sang", confirmed=True, now=T0)
    suppress(store, settings, "gone@example.org", "complained")
    subscribe(store, settings, "other@example.org", "khac", confirmed=True, now=T0)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    assert campaigns.send_campaign(store, settings, c.id, AT) == 5
    assert store.plan_campaign(c.id, AT) == 0  # idempotent: planning twice plans nothing new
    with pytest.raises(sqlite3.IntegrityError):  # the schema itself refuses a second row
        store.conn.execute(
            "INSERT INTO deliveries (list_id, subscriber_id, subscription_id, period, created, kind, campaign_id) "
            "SELECT list_id, subscriber_id, subscription_id, 'other', created, 'campaign', campaign_id "
            "FROM deliveries WHERE campaign_id = ? LIMIT 1", [c.id])
    store.conn.rollback()
    t = drain(store, settings)
    got = sorted(r for _f, rcpts, raw in t.sent if b"Message-ID: <campaign." in raw for r in rcpts)
    assert got == sorted(active)
    report = campaigns.campaign_report(store, c.id)
    assert (report.planned, report.sent, report.failed, report.queued) == (5, 5, 0, 0)
    assert store.get_campaign(c.id).status == "sent"
    assert drain(store, settings, AT + timedelta(hours=1)).sent == []  # never twice


def test_categories_pick_only_subscribers_whose_topics_meet(store: Store, settings: Settings) -> None:
    make_list(store, categories=["xa-hoi", "the-thao"])
    subscribe(store, settings, "all@example.org", "tin-sang", confirmed=True, now=T0)
    subscribe(store, settings, "sport@example.org", "tin-sang", categories=["the-thao"], confirmed=True, now=T0)
    subscribe(store, settings, "soc@example.org", "tin-sang", categories=["xa-hoi"], confirmed=True, now=T0)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY,
                                  categories=["Thể thao"], now=T0)
    assert c.categories == ("the-thao",)
    assert campaigns.send_campaign(store, settings, c.id, AT) == 2
    rows = store.query("SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
                       "WHERE d.campaign_id = ? ORDER BY s.email", [c.id])
    assert [r[0] for r in rows] == ["all@example.org", "sport@example.org"]


def test_planning_streams_in_batches_and_resumes(store: Store, settings: Settings) -> None:
    make_list(store)
    people(store, settings, "tin-sang", 7)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    assert store.start_campaign(c.id, campaigns.EDITABLE)
    assert store.plan_campaign(c.id, AT, batch=3) == 7
    # a plan cut off before it recorded its end is picked up by the next send tick, queuing only the rest
    store.conn.execute("UPDATE campaigns SET planned_at = NULL, status = 'sending' WHERE id = ?", [c.id])
    store.conn.execute("DELETE FROM deliveries WHERE id = (SELECT max(id) FROM deliveries WHERE campaign_id = ?)",
                       [c.id])
    store.conn.commit()
    assert campaigns.plan_due_campaigns(store, AT) == 1
    assert campaigns.campaign_report(store, c.id).planned == 7


def test_scheduled_campaign_goes_out_with_the_send_tick_at_its_time_not_before(store: Store,
                                                                                settings: Settings) -> None:
    make_list(store)
    people(store, settings, "tin-sang", 3)
    when = AT + timedelta(hours=3)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="Lịch", body_markdown=BODY,
                                  send_at=when, now=T0)
    early = drain(store, settings, when - timedelta(seconds=1))
    assert not [m for m in early.sent if b"Message-ID: <campaign." in m[2]]
    assert store.get_campaign(c.id).status == "scheduled"
    late = drain(store, settings, when)
    assert len([m for m in late.sent if b"Message-ID: <campaign." in m[2]]) == 3
    assert store.get_campaign(c.id).status == "sent"


def test_an_empty_list_is_sent_at_once(store: Store, settings: Settings) -> None:
    make_list(store)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    assert campaigns.send_campaign(store, settings, c.id, AT) == 0
    assert store.get_campaign(c.id).status == "sent"


def test_a_suppression_after_planning_cancels_the_row_at_claim(store: Store, settings: Settings) -> None:
    make_list(store)
    people(store, settings, "tin-sang", 2)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    campaigns.send_campaign(store, settings, c.id, AT)
    suppress(store, settings, "p1@example.org", "bounced")
    t = drain(store, settings)
    assert [r for _f, rcpts, raw in t.sent if b"<campaign." in raw for r in rcpts] == ["p0@example.org"]
    report = campaigns.campaign_report(store, c.id)
    assert (report.sent, report.cancelled) == (1, 1)


# -- the message ------------------------------------------------------------------------


def test_message_in_the_lists_frame_and_language(store: Store, settings: Settings) -> None:
    settings = settings.with_(mail_sender_address="tin@news.example.org", mail_postal_address="1 Lê Lợi, Hà Nội")
    nl = make_list(store, language="en", name="Morning")
    r = subscribe(store, settings, "ann@example.org", "tin-sang", name="Ann", confirmed=True, now=T0)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="Our event",
                                  body_markdown=BODY + "\n<script>alert(1)</script><img src=x onerror=y>", now=T0)
    campaigns.send_campaign(store, settings, c.id, AT)
    [(_f, rcpts, raw)] = [m for m in drain(store, settings).sent if b"<campaign." in m[2]]
    msg = parsed(raw)
    assert rcpts == ["ann@example.org"]
    assert msg["Subject"] == "Our event"
    assert msg["Message-ID"] == f"<campaign.tin-sang.{c.id}.{r.subscriber.id}@news.example.org>"
    https = str(msg["List-Unsubscribe"]).split(",")[0].strip().strip("<>")
    assert read_token(settings, https.rsplit("/", 1)[1], "unsubscribe") == (r.subscriber.id, nl.id)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (msg["Auto-Submitted"], msg["X-Auto-Response-Suppress"]) == ("auto-generated", "All")  # no autoreplies
    html_part = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "<strong>Nhà hát lớn</strong>" in html_part and "<script" not in html_part and "onerror" not in html_part
    assert "Hello Ann," in html_part and "Hello Ann," in text
    assert 'href="https://events.example.org/a?x=1&amp;y=2"' in html_part  # no tracking unless the list opts in
    assert "Đăng ký (https://events.example.org/a?x=1&y=2)" in text
    assert "1 Lê Lợi, Hà Nội" in html_part and "1 Lê Lợi, Hà Nội" in text
    assert f"/archive/tin-sang/campaign-{c.id}" in text
    assert "You receive this because you subscribed to Morning." in text
    assert "click" not in text.lower()
    assert "/unsubscribe/" in text and "/preferences/" in text


def test_campaign_is_in_the_archive(store: Store, settings: Settings) -> None:
    nl = make_list(store)
    people(store, settings, "tin-sang", 1)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="Lưu trữ", body_markdown=BODY,
                                  now=T0)
    campaigns.send_campaign(store, settings, c.id, AT)
    drain(store, settings)
    assert nl.id is not None
    a = store.get_archived_digest(nl.id, f"campaign-{c.id}")
    assert a.subject == "Lưu trữ" and "Nhà hát lớn" in a.html and "@@SYN" not in a.html


def test_test_send_reaches_only_its_address_and_touches_no_row(store: Store, settings: Settings) -> None:
    make_list(store)
    people(store, settings, "tin-sang", 2)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="Thử", body_markdown=BODY, now=T0)
    t = MemoryTransport()
    mid = campaigns.test_campaign(store, settings, c.id, "Editor@Example.org", AT, transport=t)
    [(mail_from, rcpts, raw)] = t.sent
    msg = parsed(raw)
    assert rcpts == ["Editor@example.org"] and msg["Message-ID"] == mid
    assert msg["Subject"] == "[TEST] Thử"
    assert mail_from == settings.mail_sender_address
    assert "List-Unsubscribe" not in msg
    assert store.scalar("SELECT count(*) FROM deliveries") == 0
    assert store.get_campaign(c.id).status == "draft"
    with pytest.raises(InputError):
        campaigns.test_campaign(store, settings, c.id, "bob@", AT, transport=t)


def test_markdown_is_cleaned() -> None:
    out = markdown_html('[x](javascript:alert(1)) <a href="javascript:y()">y</a> <iframe src=//e></iframe>')
    assert "javascript" not in out.replace("[x](javascript:alert(1))", "") and "iframe" not in out


# -- report and clicks ------------------------------------------------------------------


def test_report_counts_bounces_complaints_and_unsubscribes_after_it(store: Store, settings: Settings) -> None:
    make_list(store)
    people(store, settings, "tin-sang", 4)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    campaigns.send_campaign(store, settings, c.id, AT)
    drain(store, settings)
    unsubscribe_address(store, settings, "p0@example.org", "tin-sang")
    rows = {r[1]: r[0] for r in store.query(
        "SELECT d.id, s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE campaign_id = ?",
        [c.id])}
    store.record_bounce(rows["p1@example.org"], hard=True, detail="550 no such user")
    report = campaigns.campaign_report(store, c.id)
    assert (report.planned, report.sent, report.bounced, report.unsubscribed) == (4, 4, 1, 1)


def test_click_tracking_only_when_the_list_opts_in(store: Store, settings: Settings) -> None:
    make_list(store)
    people(store, settings, "tin-sang", 2)
    tracking = campaigns.set_tracking(store, "tin-sang", track_clicks=True)
    assert tracking == campaigns.Tracking(True, False)
    with pytest.raises(InputError) as exc:
        campaigns.set_tracking(store, "tin-sang", track_clicks=False, per_person_stats=True)
    assert str(exc.value) == "list 'tin-sang': per-person stats need click tracking; add --track-clicks"
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    campaigns.send_campaign(store, settings, c.id, AT)
    sent = [m for m in drain(store, settings).sent if b"<campaign." in m[2]]
    html_part = parsed(sent[0][2]).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "events.example.org" not in html_part
    assert "This list" not in html_part  # the footer note is in the list's language (vi)
    assert "đếm số lượt bấm" in html_part
    token = html_part.split("https://news.example.org/r/")[1].split('"')[0]
    got = read_click_token(settings, token)
    assert got is not None and got[0] == c.id and got[2] is None  # not per person
    assert store.record_click(c.id, got[1], None) == "https://events.example.org/a?x=1&y=2"
    assert store.record_click(c.id + 1, got[1], None) is None  # a link of another campaign: refused
    assert read_click_token(settings, token[:-2] + "xx") is None
    assert read_click_token(settings.with_(secret_key=type(settings.secret_key)("other-secret-key-xxxxxxxxxxxxx")),
                            click_token(settings, c.id, got[1])) is None
    [link] = campaigns.campaign_report(store, c.id).links
    assert (link.url, link.clicks, link.people) == ("https://events.example.org/a?x=1&y=2", 1, None)
    t = MemoryTransport()
    campaigns.test_campaign(store, settings, c.id, "editor@example.org", AT, transport=t)
    test_html = parsed(t.sent[0][2]).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "/r/" not in test_html and 'href="https://events.example.org/a?x=1&amp;y=2"' in test_html


def test_migration_keeps_existing_deliveries(tmp_path: Path, settings: Settings) -> None:
    """A store made before campaigns keeps its outbox rows, indexes and constraints."""
    from syndicate.store import migrations as m

    path = tmp_path / "old.db"
    saved = list(m.ALL)
    later = ("syndicate.campaigns", "syndicate.webhooks")  # the webhooks set adds a trigger on campaigns
    m.ALL[:] = [x for x in saved if x.name not in later]
    try:
        old = open_store(path)
        make_list(old)
        subscribe(old, settings, "a@example.org", "tin-sang", confirmed=True, now=T0)
        old.queue_notices("welcome", [1], T0)
        old.close()
    finally:
        m.ALL[:] = saved
    new = open_store(path)
    try:
        assert new.scalar("SELECT count(*) FROM deliveries WHERE kind = 'welcome'") == 1
        names = {r[0] for r in new.query("SELECT name FROM sqlite_master WHERE tbl_name = 'deliveries'")}
        assert {"deliveries_status", "deliveries_queue", "deliveries_notice_queue", "deliveries_campaign"} <= names
        with pytest.raises(sqlite3.IntegrityError):
            new.conn.execute("UPDATE deliveries SET kind = 'nonsense'")
        with pytest.raises(sqlite3.IntegrityError):
            new.conn.execute("UPDATE deliveries SET status = 'nonsense'")
    finally:
        new.close()


def test_notices_sent_at_once_never_take_a_campaign_row(store: Store, settings: Settings) -> None:
    """The form sends a person's notices at once, outside the run lock: their queued campaign row
    waits for `syndicate send` like a digest."""
    make_list(store, welcome=True)
    people(store, settings, "tin-sang", 1)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    campaigns.send_campaign(store, settings, c.id, AT)
    sid = int(store.scalar("SELECT subscription_id FROM deliveries WHERE campaign_id = ?", [c.id]))
    welcome = store.queue_notices("welcome", [sid], AT)[0].delivery_id
    assert welcome is not None
    assert store.queued_notices([sid]) == [welcome]


def bulk_active(store: Store, nl: NewsList, n: int, start: int = 0) -> None:
    from syndicate.store.imports import ImportRow
    from syndicate.subscribers import address_hash

    rows = [ImportRow(line=i, email=f"bulk{i}@example.org", email_hash=address_hash(f"bulk{i}@example.org"),
                      status="active", confirmed=T0) for i in range(start, start + n)]
    store.import_batch(nl, rows, source="test", actor="", resubscribe=False, baseline=store.import_baseline(), now=T0)


def claim_cost(store: Store, limit: int) -> tuple[list[str], int]:
    """(kinds claimed, SQLite VM steps in thousands) of one claim."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    store.conn.set_progress_handler(tick, 1000)
    try:
        got = store.claim_deliveries("me", AT, AT + timedelta(minutes=5), limit)
    finally:
        store.conn.set_progress_handler(None, 0)
    store.release_claims("me", [d.id for d in got])
    return [d.kind for d in got], steps


def test_a_big_campaign_does_not_slow_the_claim_of_a_notice(tmp_path: Path, settings: Settings) -> None:
    """Notices are claimed first through their own small index: a queued campaign of thousands of
    rows must not be walked by it (each claim pass would cost the campaign's size)."""
    costs = []
    for n in (20, 4000):
        store = open_store(tmp_path / f"{n}.db")
        try:
            nl = make_list(store)
            bulk_active(store, nl, n)
            c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY,
                                          now=T0)
            assert campaigns.send_campaign(store, settings, c.id, AT) == n
            r = subscribe(store, settings, "new@example.org", "tin-sang", now=AT)
            assert r.subscription.id is not None
            assert store.queue_notices("confirm", [r.subscription.id], AT)[0].delivery_id is not None
            kinds, steps = claim_cost(store, 1)
            assert kinds == ["confirm"]
            costs.append(steps)
            kinds, _ = claim_cost(store, 3)  # then campaigns (and digests) in the order they were planned
            assert kinds == ["confirm", "campaign", "campaign"]
        finally:
            store.close()
    assert costs[1] <= costs[0] + 5, costs


def test_a_campaign_row_left_sending_by_a_dead_run_is_unknown_at_the_next_run(store: Store,
                                                                               settings: Settings) -> None:
    """Campaign rows are claimed only under the run lock (like digests), so a run holding the lock
    knows any other run's live lease is an orphan: it is `unknown` (never resent), and the campaign settles."""
    make_list(store)
    people(store, settings, "tin-sang", 2)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    campaigns.send_campaign(store, settings, c.id, AT)
    [dead] = store.claim_deliveries("dead-run", AT, AT + timedelta(days=1), 1)
    assert store.mark_orphans_unknown("next-run", AT, all_foreign=True) == 1
    assert store.get_delivery(dead.id).status == "unknown"
    drain(store, settings)
    assert store.get_campaign(c.id).status == "sent"
    report = campaigns.campaign_report(store, c.id)
    assert (report.sent, report.unknown) == (1, 1)


def test_a_digest_planned_in_the_same_tick_does_not_supersede_the_campaign(store: Store, settings: Settings) -> None:
    """A new digest replaces the same subscription's older digests still queued, never its campaign row."""
    from syndicate.models import Article

    make_list(store)
    people(store, settings, "tin-sang", 3)
    store.upsert_articles([Article(guid=f"g{i}", title=f"Tin {i}", slug=f"tin-{i}", published=T0 + timedelta(hours=i),
                                   category="Xã hội") for i in range(1, 3)])
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY,
                                  send_at=AT - timedelta(minutes=1), now=T0)
    sent = drain(store, settings).sent  # the tick plans the campaign, then the due digests, then drains
    kinds = sorted(raw.split(b"Message-ID: <")[1].split(b".")[0].decode() for _f, _r, raw in sent)
    assert kinds == ["campaign"] * 3 + ["digest"] * 3
    assert campaigns.campaign_report(store, c.id).sent == 3


# -- the CLI ----------------------------------------------------------------------------


def test_cli_lifecycle_and_json(cli: Any, tmp_path: Path) -> None:
    import json

    from syndicate.cli import main

    assert cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng"]).exit_code == 0
    (tmp_path / "a.md").write_text(BODY, encoding="utf-8")
    r = cli.invoke(main, ["campaign", "create", "--list", "tin-sang", "--subject", "Hội thảo", "--body", "a.md",
                          "--send-at", "2099-01-02T08:00"])
    assert r.exit_code == 0, r.output
    cid = int(r.output)
    shown = json.loads(cli.invoke(main, ["campaign", "show", str(cid), "--json"]).output)
    # without an offset, --send-at is the site's time zone (Asia/Ho_Chi_Minh, UTC+7)
    assert (shown["status"], shown["send_at"], shown["body_markdown"]) == ("scheduled", "2099-01-02T01:00:00+00:00", BODY)
    r = cli.invoke(main, ["campaign", "edit", str(cid), "--subject", "Dời lịch", "--draft"])
    assert (r.exit_code, r.output) == (0, f"campaign {cid} is draft\n")
    listed = json.loads(cli.invoke(main, ["campaign", "ls", "--json"]).output)
    assert [(x["id"], x["subject"], x["status"]) for x in listed] == [(cid, "Dời lịch", "draft")]
    r = cli.invoke(main, ["campaign", "ls"])
    assert f"{cid:>5}  draft      tin-sang" in r.output and "Dời lịch" in r.output
    r = cli.invoke(main, ["campaign", "send", str(cid)])
    assert (r.exit_code, r.output) == (0, f"campaign {cid}: 0 message(s) queued; `syndicate send` (cron) delivers them\n")
    r = cli.invoke(main, ["campaign", "edit", str(cid), "--subject", "x"])
    assert (r.exit_code, r.output) == (65, f"error: campaign {cid} is sent; only a draft or scheduled campaign can be edited\n")
    r = cli.invoke(main, ["campaign", "cancel", str(cid)])
    assert r.output == f"error: campaign {cid} is sent; only a draft or scheduled campaign can be cancelled\n"
    report = json.loads(cli.invoke(main, ["campaign", "report", str(cid), "--json"]).output)
    assert (report["status"], report["planned"], report["links"]) == ("sent", 0, [])
    r = cli.invoke(main, ["campaign", "report", str(cid)])
    assert r.output.splitlines()[:3] == [f"campaign {cid} (sent)", "  planned:             0", "  sent:                0"]
    r = cli.invoke(main, ["campaign", "show", "99"])
    assert (r.exit_code, r.output) == (1, "error: no campaign with id 99 (see `syndicate campaign ls`)\n")
    r = cli.invoke(main, ["campaign", "edit", str(cid), "--draft", "--send-at", "2099-01-01T00:00Z"])
    assert r.output == "error: give --send-at or --draft, not both\n"


def test_cli_tracking_options_on_list_update(cli: Any) -> None:
    from syndicate.cli import main

    assert cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng"]).exit_code == 0
    r = cli.invoke(main, ["list", "update", "tin-sang", "--per-person-stats"])
    assert (r.exit_code, r.output) == (65, "error: list 'tin-sang': per-person stats need click tracking; "
                                           "add --track-clicks\n")
    r = cli.invoke(main, ["list", "update", "tin-sang", "--track-clicks", "--sender-address", "bob@"])
    assert r.exit_code == 65 and "'bob@'" in r.output, r.output
    store = open_store(Path.cwd() / "syndicate.db")
    try:  # a refused field leaves the tracking as it was too
        assert store.list_tracking(store.get_list("tin-sang").id or 0) == campaigns.Tracking(False, False)
    finally:
        store.close()
    assert cli.invoke(main, ["list", "update", "tin-sang", "--track-clicks", "--per-person-stats"]).exit_code == 0
    store = open_store(Path.cwd() / "syndicate.db")
    try:
        assert store.list_tracking(store.get_list("tin-sang").id or 0) == campaigns.Tracking(True, True)
    finally:
        store.close()


def test_per_person_stats_count_people_when_the_list_opts_in(store: Store, settings: Settings) -> None:
    make_list(store)
    people(store, settings, "tin-sang", 2)
    campaigns.set_tracking(store, "tin-sang", track_clicks=True, per_person_stats=True)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    campaigns.send_campaign(store, settings, c.id, AT)
    sent = [m for m in drain(store, settings).sent if b"<campaign." in m[2]]
    tokens = [parsed(raw).get_body(("html",)).get_content()  # type: ignore[union-attr]
              .split("https://news.example.org/r/")[1].split('"')[0] for _f, _r, raw in sent]
    assert len(set(tokens)) == 2  # one per person
    assert "ghi lại liên kết bạn bấm" in parsed(sent[0][2]).get_body(("html",)).get_content()  # type: ignore[union-attr]
    for token in tokens + tokens[:1]:
        assert campaigns.follow_click(store, settings, token) == "https://events.example.org/a?x=1&y=2"
    assert campaigns.follow_click(store, settings, "forged") is None
    [link] = campaigns.campaign_report(store, c.id).links
    assert (link.clicks, link.people) == (3, 2)


def test_a_dry_run_counts_due_campaigns_and_writes_nothing(store: Store, settings: Settings) -> None:
    make_list(store)
    people(store, settings, "tin-sang", 3)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY,
                                  send_at=AT - timedelta(minutes=1), now=T0)
    report = run_send(store, settings, MemoryTransport(), now=AT, dry_run=True, lock=False)
    assert report.queued == 3
    assert store.get_campaign(c.id).status == "scheduled"
    assert store.scalar("SELECT count(*) FROM deliveries WHERE campaign_id = ?", [c.id]) == 0
    assert run_send(store, settings, MemoryTransport(), now=AT - timedelta(minutes=2), dry_run=True,
                    lock=False).queued == 0


def test_cli_bad_input_names_it(cli: Any, tmp_path: Path) -> None:
    from syndicate.cli import main

    assert cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng"]).exit_code == 0
    (tmp_path / "event.md").write_text(BODY, encoding="utf-8")
    (tmp_path / "empty.md").write_text("\n", encoding="utf-8")
    (tmp_path / "latin1.md").write_bytes("Tin t\xe9".encode("latin-1"))
    cases: list[tuple[list[str], str]] = [
        (["--list", "nope", "--body", "event.md"], "error: no list with slug 'nope' (see `syndicate list ls`)\n"),
        (["--list", "tin-sang", "--body", "empty.md"], "error: the body is empty; write the announcement in Markdown\n"),
        (["--list", "tin-sang", "--body", "latin1.md"],
         "error: latin1.md: not UTF-8 text (byte 5); save the Markdown as UTF-8\n"),
        (["--list", "tin-sang", "--body", "event.md", "--send-at", "tomorrow"],
         "error: --send-at 'tomorrow' is not an ISO 8601 time such as 2026-12-05T08:00+07:00\n"),
        (["--list", "tin-sang", "--body", "event.md", "--send-at", "2020-01-01T00:00Z"],
         "error: send-at 2020-01-01T00:00:00+00:00 is in the past (now is "),
    ]
    for args, message in cases:
        r = cli.invoke(main, ["campaign", "create", "--subject", "S", *args])
        assert r.exit_code != 0 and r.output.startswith(message), r.output
    r = cli.invoke(main, ["campaign", "create", "--list", "tin-sang", "--subject", "S", "--body", "event.md"])
    cid = int(r.output)
    r = cli.invoke(main, ["campaign", "test", str(cid), "--to", "bob@"])
    assert r.exit_code == 65 and r.output.startswith("error: ") and "bob@" in r.output, r.output
    store = open_store(tmp_path / "syndicate.db")
    try:
        assert [c.id for c in store.list_campaigns()] == [cid]  # nothing else was stored
        assert store.scalar("SELECT count(*) FROM deliveries WHERE kind = 'campaign'") == 0
    finally:
        store.close()


def test_a_retried_row_puts_its_sent_campaign_back_to_sending_until_it_goes(store: Store, settings: Settings) -> None:
    """`outbox retry` on a campaign already settled as sent: the campaign reads `sending` while the row
    waits (it read `sent` with a row still to go), and `sent` again once it went."""
    make_list(store)
    people(store, settings, "tin-sang", 2)
    c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="S", body_markdown=BODY, now=T0)
    campaigns.send_campaign(store, settings, c.id, AT)
    [dead] = store.claim_deliveries("dead-run", AT, AT + timedelta(days=1), 1)
    store.mark_orphans_unknown("next-run", AT, all_foreign=True)
    drain(store, settings)
    assert store.get_campaign(c.id).status == "sent"
    assert store.retry_failed(unknown=True) == 1
    assert store.get_delivery(dead.id).status == "queued"
    assert store.get_campaign(c.id).status == "sending"
    later = AT + timedelta(minutes=5)
    t = drain(store, settings, later)
    assert len([raw for _f, _r, raw in t.sent if b"Message-ID: <campaign." in raw]) == 1  # that row alone
    assert store.get_campaign(c.id).status == "sent"
    report = campaigns.campaign_report(store, c.id)
    assert (report.sent, report.unknown, report.queued) == (2, 0, 0)
