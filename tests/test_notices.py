"""Confirmation and welcome emails as outbox rows: the store's rules, the drain (memory transport and a real
aiosmtpd on 127.0.0.1), the import and the CLI."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from loopback import free_port, smtp_server

from syndicate import subscribers as lib
from syndicate.cli import main
from syndicate.config import Settings
from syndicate.errors import TransportError
from syndicate.mailer import MemoryTransport, SmtpTransport, parse_verp
from syndicate.models import Article, NewsList, utcnow
from syndicate.sender import deliver_notices, notify, run_send
from syndicate.store import Store, open_store
from syndicate.store.notices import CONFIRM_WINDOW
from syndicate.subscriber_csv import CsvImport

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def make_list(store: Store, slug: str = "tin-sang", **kw: Any) -> NewsList:
    return store.create_list(NewsList(slug=slug, name=kw.pop("name", "Tin sáng Sài Gòn"), **kw))


def parsed(transport: MemoryTransport) -> list[EmailMessage]:
    out = []
    for _f, _r, raw in transport.sent:
        m = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(m, EmailMessage)
        out.append(m)
    return out


def plain(m: EmailMessage) -> str:
    part = m.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def pending(store: Store, settings: Settings, address: str, slug: str = "tin-sang", **kw: Any) -> int:
    r = lib.subscribe(store, settings, address, slug, **kw)
    assert r.subscription.id is not None and r.subscription.status == "pending"
    return r.subscription.id


def notice_rows(store: Store, subscription_id: int) -> list[tuple[str, str]]:
    return [(d.kind, d.status) for d in store.deliveries_for(subscription_id) if d.kind != "digest"]


def confirm_token(m: EmailMessage) -> str:
    link = re.search(r"/confirm/([A-Za-z0-9_.\-]+)", plain(m))
    assert link, plain(m)
    return link.group(1)


def test_the_store_queues_notices_only_when_the_rules_allow(store: Store, settings: Settings) -> None:
    make_list(store)
    make_list(store, "quiet", welcome=False)
    sid = pending(store, settings, "lan@example.org")
    [q] = store.queue_notices("confirm", [sid], now=NOW)
    assert q.delivery_id is not None and q.reason == ""
    d = store.get_delivery(q.delivery_id)
    assert (d.kind, d.status, d.period) == ("confirm", "queued", "confirm:2026-12-01T09:00:00+00:00")
    # asked again a minute later (a second form post): nothing new
    [again] = store.queue_notices("confirm", [sid], now=NOW + timedelta(minutes=1))
    assert again.delivery_id is None
    assert again.reason == ("a confirmation email was already queued at 2026-12-01T09:00:00+00:00 "
                            "(at most one per 10 minutes)")
    # asked again later: a new one, while the first stays what it was
    [later] = store.queue_notices("confirm", [sid], now=NOW + CONFIRM_WINDOW + timedelta(seconds=1))
    assert later.delivery_id is not None and later.delivery_id != q.delivery_id
    first = store.get_delivery(q.delivery_id)  # never sent (the relay was down, say): one email, not two
    assert (first.status, first.error) == ("cancelled", "superseded by a newer confirmation email")
    assert store.queue_notices("welcome", [sid], now=NOW)[0].reason == "the subscription is pending, not active"

    active = lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True).subscription.id
    assert active is not None
    assert store.queue_notices("confirm", [active])[0].reason == "the subscription is active, not pending"
    [w] = store.queue_notices("welcome", [active])
    assert w.delivery_id is not None
    assert store.queue_notices("welcome", [active], now=NOW + timedelta(days=400))[0].reason == (
        "a welcome email was already queued or sent")
    quiet = lib.subscribe(store, settings, "an@example.org", "quiet", confirmed=True).subscription.id
    assert quiet is not None
    assert store.queue_notices("welcome", [quiet])[0].reason == "the list sends no welcome email"
    assert store.queue_notices("confirm", [999])[0].reason == "no such subscription"
    with pytest.raises(ValueError, match="unknown notice kind 'digest'"):
        store.queue_notices("digest", [sid])


def test_a_suppressed_address_gets_no_notice_but_one_who_left_may_ask_again(store: Store, settings: Settings) -> None:
    make_list(store)
    bounced = pending(store, settings, "gone@example.org")
    store.add_suppression(lib.address_hash("gone@example.org"), "bounced")
    assert store.queue_notices("confirm", [bounced])[0].reason == "the address is suppressed (bounced)"
    # someone who unsubscribed asks again on the form: their confirmation is the way back
    left = lib.subscribe(store, settings, "back@example.org", "tin-sang", confirmed=True)
    assert left.subscriber.id is not None and left.newslist.id is not None
    lib.unsubscribe(store, settings, left.subscriber.id, left.newslist.id, source="web")
    store.add_suppression(lib.address_hash("back@example.org"), "unsubscribed")
    again = lib.subscribe(store, settings, "back@example.org", "tin-sang", source="web")
    assert again.needs_confirmation and again.subscription.id is not None
    assert store.queue_notices("confirm", [again.subscription.id])[0].delivery_id is not None
    assert store.queue_notices("welcome", [again.subscription.id])[0].reason == (
        "the subscription is pending, not active")
    assert notice_rows(store, bounced) == []


def test_confirming_queues_one_welcome_once_unless_the_list_turns_it_off(store: Store, settings: Settings) -> None:
    nl = make_list(store, language="en", name="Morning News")
    quiet = make_list(store, "quiet", welcome=False)
    assert nl.id is not None and quiet.id is not None
    sid = pending(store, settings, "lan@example.org", "tin-sang", name="Lan")
    subscriber = store.get_subscriber("lan@example.org")
    assert subscriber.id is not None
    token = lib.make_token(settings, "confirm", subscriber.id, nl.id, subscriber.email)
    assert lib.confirm(store, settings, token).created is True
    assert lib.confirm(store, settings, token).created is False  # the link used again
    assert notice_rows(store, sid) == [("welcome", "queued")]
    transport = MemoryTransport()
    [outcome] = deliver_notices(store, settings, [sid], transport=transport)
    assert outcome.delivered and transport.closed
    [m] = parsed(transport)
    assert m["Subject"] == "Welcome to Morning News" and m["To"] == "Lan <lan@example.org>"
    assert m["Message-ID"] == outcome.message_id == store.get_delivery(outcome.delivery_id or 0).message_id
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and m["Auto-Submitted"] == "auto-generated"
    assert "https://news.example.org/preferences/" in plain(m)
    assert parse_verp(transport.sent[0][0], settings) == outcome.delivery_id
    # a later send has nothing more for them
    later = MemoryTransport()
    run_send(store, settings, later, now=utcnow() + timedelta(hours=1))
    assert later.sent == [] and notice_rows(store, sid) == [("welcome", "sent")]

    # an admin confirming a pending person (subscriber add --confirmed) welcomes them too
    admin = pending(store, settings, "an@example.org")
    lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    assert notice_rows(store, admin) == [("welcome", "queued")]
    # an address added as already confirmed, and a list without welcome: none
    fresh = lib.subscribe(store, settings, "new@example.org", "tin-sang", confirmed=True).subscription.id
    q = pending(store, settings, "lan@example.org", "quiet")
    lib.confirm(store, settings, lib.make_token(settings, "confirm", subscriber.id, quiet.id, subscriber.email))
    assert notice_rows(store, fresh or 0) == [] and notice_rows(store, q) == []


def test_relay_down_the_row_stays_queued_with_its_error_a_log_line_then_send_delivers_it_once(
    store: Store, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syndicate")
    make_list(store)
    sid = pending(store, settings, "lan@example.org")
    down = MemoryTransport(fail=lambda *_: TransportError("SMTP replied 451 4.7.1 try again later", code=451))
    outcome = notify(store, settings, "confirm", sid, transport=down)
    assert (outcome.status, outcome.error) == ("queued", "SMTP replied 451 4.7.1 try again later")
    assert outcome.describe() == ("confirmation email queued but not yet delivered (SMTP replied 451 4.7.1 try again "
                                  "later); the next `syndicate send` retries it")
    assert outcome.delivery_id is not None
    row = store.get_delivery(outcome.delivery_id)
    assert (row.status, row.attempts, row.error) == ("queued", 1, "SMTP replied 451 4.7.1 try again later")
    assert row.next_attempt is not None and row.next_attempt > utcnow()
    assert [r.getMessage() for r in caplog.records if r.name == "syndicate.sender.notices"] == [
        f"confirm email for subscription {sid} not delivered (delivery {row.id}, attempt 1): SMTP replied 451 4.7.1 "
        "try again later; it stays queued and the next `syndicate send` retries it"
    ]
    assert store.outbox_status().by_kind == {"confirm": {**{s: 0 for s in store.outbox_status().counts}, "queued": 1}}
    up = MemoryTransport()
    assert run_send(store, settings, up).sent == 0  # not due before its retry time
    report = run_send(store, settings, MemoryTransport(), now=utcnow() + timedelta(minutes=5))
    assert report.sent == 1
    assert run_send(store, settings, up, now=utcnow() + timedelta(hours=2)).sent == 0
    row = store.get_delivery(outcome.delivery_id)
    assert (row.status, row.attempts, row.error) == ("sent", 2, "")
    assert row.message_id == f"<confirm.tin-sang.1.{row.id}@localhost>"


def test_a_rejected_confirmation_fails_and_counts_as_a_hard_bounce(store: Store, settings: Settings) -> None:
    make_list(store)
    sid = pending(store, settings, "nobody@example.org")
    refused = MemoryTransport(fail=lambda *_: TransportError("SMTP refused nobody@example.org: 550 no such user",
                                                             temporary=False, code=550))
    outcome = notify(store, settings, "confirm", sid, transport=refused)
    assert outcome.status == "failed"
    assert outcome.describe() == "confirmation email failed, not retried: SMTP refused nobody@example.org: 550 no such user"
    assert store.get_subscription_by_id(sid).hard_bounces == 1


def test_notices_are_claimed_before_digests_and_cancelled_when_no_longer_fitting(store: Store,
                                                                                 settings: Settings) -> None:
    make_list(store)
    for i in range(30):
        lib.subscribe(store, settings, f"r{i}@example.org", "tin-sang", confirmed=True,
                      now=datetime(2026, 11, 20, tzinfo=UTC))
    at = (utcnow() + timedelta(days=1)).replace(hour=1, minute=0, second=0)  # 08:00 in Ho Chi Minh City
    store.upsert_articles([Article(guid="a1", title="Tin mới", slug="tin-moi", published=at - timedelta(hours=3),
                                   summary="Tóm tắt.", category="Xã hội")])
    from syndicate.digest import plan

    assert store.plan_deliveries(plan(store, at)) == (30, 0)
    late = pending(store, settings, "late@example.org")
    assert notify(store, settings, "confirm", late, send=False).status == "queued"
    claimed = store.claim_deliveries("t", at + timedelta(days=30), at + timedelta(days=31), 5)
    assert [d.kind for d in claimed] == ["confirm", "digest", "digest", "digest", "digest"]
    store.release_claims("t", [d.id for d in claimed])

    # confirmed by another way before it went out: cancelled, and the welcome goes instead
    who = pending(store, settings, "quick@example.org")
    notify(store, settings, "confirm", who, send=False)
    lib.subscribe(store, settings, "quick@example.org", "tin-sang", confirmed=True)
    # a complaint arrives for the one still pending
    store.add_suppression(lib.address_hash("late@example.org"), "complained")
    transport = MemoryTransport()
    run_send(store, settings, transport, now=at + timedelta(days=30))
    assert notice_rows(store, late) == [("confirm", "cancelled")]
    assert [d.error for d in store.deliveries_for(late)] == ["address suppressed (complained)"]
    assert notice_rows(store, who) == [("confirm", "cancelled"), ("welcome", "sent")]
    assert [d.error for d in store.deliveries_for(who) if d.kind == "confirm"] == ["already confirmed"]
    assert "late@example.org" not in {r[0] for _f, r, _m in transport.sent}


def test_sending_one_notice_at_once_sends_nothing_else(store: Store, settings: Settings) -> None:
    make_list(store)
    a, b = pending(store, settings, "a@example.org"), pending(store, settings, "b@example.org")
    notify(store, settings, "confirm", a, send=False)
    transport = MemoryTransport()
    outcome = notify(store, settings, "confirm", b, transport=transport)
    assert outcome.delivered and [r for _f, r, _m in transport.sent] == [["b@example.org"]]
    assert notice_rows(store, a) == [("confirm", "queued")]


def test_the_confirmation_over_a_real_smtp_server_links_back_and_escapes_the_name(store: Store,
                                                                                  settings: Settings) -> None:
    got: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
            got.append(envelope.original_content)
            return "250 OK"

    nl = make_list(store, language="en", name="Morning News")
    sid = pending(store, settings, "new@example.org", nl.slug, name="Ann & Bob")
    with smtp_server(Handler()) as port:
        smtp = settings.with_(smtp_host="127.0.0.1", smtp_port=port, mail_sender_address="tin@news.example.org")
        outcome = notify(store, smtp, "confirm", sid, transport=SmtpTransport(smtp))
    assert outcome.delivered
    [raw] = got
    m = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(m, EmailMessage)
    assert m["Message-ID"] == outcome.message_id and m["Subject"] == "Confirm your subscription to Morning News"
    html = m.get_body(("html",))
    assert html is not None and "Ann &amp; Bob" in html.get_content()
    assert lib.confirm(store, settings, confirm_token(m)).subscription.status == "active"


def write_csv(path: Path, n: int, start: int = 0) -> Path:
    path.write_text("email,name\n" + "".join(f"p{i}@example.org,Người {i}\n" for i in range(start, start + n)),
                    encoding="utf-8")
    return path


def test_import_as_pending_queues_one_confirmation_per_new_row_in_batches(store: Store, settings: Settings,
                                                                         tmp_path: Path) -> None:
    make_list(store)
    lib.subscribe(store, settings, "p3@example.org", "tin-sang")  # already pending: not asked again by the import
    job = CsvImport(store, settings, write_csv(tmp_path / "a.csv", 23), "tin-sang", batch_size=5)
    report = job.run()
    assert report.confirmations_queued == 22
    assert report.summary().endswith("; queued 22 confirmation emails for the pending subscribers "
                                     "(the next `syndicate send` sends them)")
    transport = MemoryTransport()
    assert run_send(store, settings, transport).sent == 22
    sent_to = sorted(r[0] for _f, r, _m in transport.sent)
    assert sent_to == sorted(f"p{i}@example.org" for i in range(23) if i != 3)
    assert all(m["Subject"] == "Xác nhận đăng ký Tin sáng Sài Gòn" for m in parsed(transport))
    again = CsvImport(store, settings, tmp_path / "a.csv", "tin-sang", batch_size=5).run()
    assert again.confirmations_queued == 0 and run_send(store, settings, MemoryTransport()).sent == 0

    off = CsvImport(store, settings, write_csv(tmp_path / "b.csv", 4, 100), "tin-sang",
                    confirmation_email=False).run()
    assert off.summary().endswith("; no confirmation email queued for pending subscribers (--no-confirmation-email)")
    confirmed = CsvImport(store, settings, write_csv(tmp_path / "c.csv", 4, 200), "tin-sang", confirmed=True).run()
    assert confirmed.confirmations_queued == 0 and confirmed.summary().endswith("0 errors")
    assert run_send(store, settings, MemoryTransport()).sent == 0
    assert store.outbox_status().by_kind["confirm"]["sent"] == 22


def cli_env(tmp_path: Path, port: int) -> dict[str, str]:
    return {"SYNDICATE_SMTP_HOST": "127.0.0.1", "SYNDICATE_SMTP_PORT": str(port),
            "SYNDICATE_MAIL_SENDER_ADDRESS": "tin@news.example.org", "SYNDICATE_SMTP_TIMEOUT": "10"}


def test_cli_subscriber_add_says_whether_the_email_went_out(cli: CliRunner, tmp_path: Path) -> None:
    store = open_store(tmp_path / "syndicate.db")
    make_list(store)
    store.close()
    port = free_port()  # the relay is down
    r = cli.invoke(main, ["subscriber", "add", "lan@example.org", "--list", "tin-sang"], env=cli_env(tmp_path, port))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "added lan@example.org on tin-sang: pending"
    assert lines[1].startswith(f"confirmation email queued but not yet delivered (cannot connect to SMTP 127.0.0.1:{port}: ")
    assert lines[1].endswith("); the next `syndicate send` retries it")
    assert lines[2].startswith("confirm link: ")

    got: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
            got.append(envelope.original_content)
            return "250 OK"

    with smtp_server(Handler(), port):
        r = cli.invoke(main, ["subscriber", "add", "an@example.org", "--list", "tin-sang"], env=cli_env(tmp_path, port))
        assert r.output.splitlines()[1] == "confirmation email sent via smtp (<confirm.tin-sang.2.2@news.example.org>)"
        r = cli.invoke(main, ["subscriber", "add", "an@example.org", "--list", "tin-sang", "--confirmed", "--json"],
                       env=cli_env(tmp_path, port))
        out = json.loads(r.output)
        assert [(n["kind"], n["status"]) for n in out["notices"]] == [("welcome", "sent")]
        r = cli.invoke(main, ["subscriber", "add", "an@example.org", "--list", "tin-sang"], env=cli_env(tmp_path, port))
        assert r.output == "already an@example.org on tin-sang: active\n"
    assert len(got) == 2
    status = cli.invoke(main, ["outbox", "status"])
    assert status.output.endswith("by kind:\n  confirm 1 queued, 1 sent\n  welcome 1 sent\n")
    data = json.loads(cli.invoke(main, ["outbox", "status", "--json"]).output)
    assert data["by_kind"]["confirm"]["queued"] == 1 and data["queued"] == 1


def test_cli_import_flag_and_list_welcome_option(cli: CliRunner, tmp_path: Path) -> None:
    assert cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin", "--no-welcome"]).exit_code == 0
    shown = json.loads(cli.invoke(main, ["list", "show", "tin-sang", "--json"]).output)
    assert shown["welcome"] is False
    assert cli.invoke(main, ["list", "update", "tin-sang", "--welcome"]).exit_code == 0
    assert json.loads(cli.invoke(main, ["list", "show", "tin-sang", "--json"]).output)["welcome"] is True
    (tmp_path / "lists.toml").write_text('[[list]]\nslug = "quiet"\nname = "Quiet"\nwelcome = false\n', "utf-8")
    assert cli.invoke(main, ["list", "create", "--from", str(tmp_path / "lists.toml")]).exit_code == 0
    assert json.loads(cli.invoke(main, ["list", "show", "quiet", "--json"]).output)["welcome"] is False
    r = cli.invoke(main, ["subscriber", "import", str(write_csv(tmp_path / "x.csv", 3)), "--list", "tin-sang",
                          "--no-confirmation-email"])
    assert r.exit_code == 0, r.output
    assert r.output.rstrip().endswith("; no confirmation email queued for pending subscribers (--no-confirmation-email)")
    r = cli.invoke(main, ["subscriber", "import", str(write_csv(tmp_path / "y.csv", 3, 10)), "--list", "tin-sang"])
    assert r.output.rstrip().endswith("; queued 3 confirmation emails for the pending subscribers "
                                      "(the next `syndicate send` sends them)")


def test_a_notice_sender_that_died_mid_send_is_settled_from_its_journal(store: Store, settings: Settings) -> None:
    from syndicate.sender.journal import SendJournal
    from syndicate.sender.notices import notice_journal_dir, recover_notice_journals

    make_list(store)
    ids = [pending(store, settings, f"{who}@example.org") for who in ("accepted", "wire", "waiting", "alive")]
    rows = [notify(store, settings, "confirm", sid, send=False).delivery_id for sid in ids]
    assert all(rows)
    now = utcnow()
    dead, alive = "notice:web:1:dead", "notice:web:2:alive"
    gone = store.claim_deliveries(dead, now, now - timedelta(seconds=1), 10, only=rows[:3])  # lease already over
    assert [d.id for d in gone] == rows[:3]
    store.claim_deliveries(alive, now, now + timedelta(minutes=10), 10, only=rows[3:])
    journal = SendJournal(notice_journal_dir(settings), dead)  # what the killed process left behind
    journal.started(rows[0] or 0)
    journal.accepted(rows[0] or 0, "<confirm.tin-sang.1.1@localhost>")
    journal.started(rows[1] or 0)
    live = SendJournal(notice_journal_dir(settings), alive)
    live.started(rows[3] or 0)
    # a run's own recovery leaves these journals alone; the notice recovery settles the dead one only
    assert recover_notice_journals(store, settings) == (1, 1, 1)
    assert [store.get_delivery(r or 0).status for r in rows] == ["sent", "unknown", "queued", "sending"]
    assert store.get_delivery(rows[0] or 0).message_id == "<confirm.tin-sang.1.1@localhost>"
    assert not journal.path.exists() and live.path.exists()
    # a cron run settles nothing more while the live one holds its lease, and sends the one given back
    transport = MemoryTransport()
    report = run_send(store, settings, transport)
    assert report.sent == 1 and [r for _f, r, _m in transport.sent] == [["waiting@example.org"]]
    assert store.get_delivery(rows[3] or 0).status == "sending"
    journal.close(delete=False)
    live.close(delete=False)


def test_a_journal_whose_sender_finishes_during_recovery_is_left_alone(store: Store, settings: Settings,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Two web signups at once: one sender's recovery read the other's journal, then the other finished and
    # deleted it; the stat that followed raised FileNotFoundError and failed the first signup's send.
    from syndicate.sender.journal import SendJournal
    from syndicate.sender.notices import notice_journal_dir, recover_notice_journals

    make_list(store)
    finished = SendJournal(notice_journal_dir(settings), "notice:web:9:finishing")  # no row claimed any more
    real = store.sending_ids

    def finishes_now(run_id: str) -> list[int]:
        finished.path.unlink()  # the other sender committed its results and removed its journal just now
        return real(run_id)

    monkeypatch.setattr(store, "sending_ids", finishes_now)
    assert recover_notice_journals(store, settings) == (0, 0, 0)
    assert not finished.path.exists()
