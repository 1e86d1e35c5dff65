"""DSN parsing (RFC 3464) and applying bounces to a real store through VERP addresses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicate.bounces import parse_bounce, process_bounces
from syndicate.cli import main
from syndicate.config import Settings
from syndicate.errors import InputError
from syndicate.mailer import MaildirTransport, verp_address
from syndicate.models import NewsList
from syndicate.store import Store, open_store
from syndicate.store.outbox import PlannedDelivery
from syndicate.store.subscribers import HARD_BOUNCE_LIMIT
from syndicate.subscribers import create_list, subscribe


def postfix_dsn(to: str, *, action: str = "failed", status: str = "5.1.1",
                diagnostic: str = "smtp; 550 5.1.1 <an@example.org>: Recipient address rejected: User unknown") -> bytes:
    """A DSN as Postfix writes it: multipart/report with the returned headers."""
    return f"""Return-Path: <>
Delivered-To: {to}
Received: by mx.news.example.org (Postfix) id 4F1A2; Tue, 24 Nov 2026 07:01:02 +0700 (ICT)
Date: Tue, 24 Nov 2026 07:01:02 +0700 (ICT)
From: MAILER-DAEMON@mx.news.example.org (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4F1A2.1795500062/mx.news.example.org"
Message-Id: <20261124000102.4F1A2@mx.news.example.org>

This is a MIME-encapsulated message.

--4F1A2.1795500062/mx.news.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.news.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--4F1A2.1795500062/mx.news.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.news.example.org
X-Postfix-Queue-ID: 4F1A2
X-Postfix-Sender: rfc822; {to}
Arrival-Date: Tue, 24 Nov 2026 07:00:59 +0700 (ICT)

Final-Recipient: rfc822; an@example.org
Original-Recipient: rfc822;an@example.org
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: {diagnostic}

--4F1A2.1795500062/mx.news.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <{to}>
From: =?UTF-8?B?QuG6o24gdGluIFPDoGkgR8Oybg==?= <tin@news.example.org>
To: an@example.org
Subject: =?UTF-8?B?VGluIHPDoW5n?=

--4F1A2.1795500062/mx.news.example.org--
""".replace("\n", "\r\n").encode("ascii")


def exim_dsn_to_x_original(to: str) -> bytes:
    """Exim-style: the VERP address only in X-Original-To, To shows the rewritten mailbox."""
    return f"""X-Original-To: {to}
Delivered-To: bounces@news.example.org
From: Mail Delivery System <Mailer-Daemon@relay.example.net>
To: bounces@news.example.org
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: lan@example.net
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=1795500000-eximdsn-1

--1795500000-eximdsn-1
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.
  lan@example.net
    mailbox is full: retry timeout exceeded

--1795500000-eximdsn-1
Content-type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Action: failed
Final-Recipient: rfc822;lan@example.net
Status: 4.2.2

--1795500000-eximdsn-1--
""".encode("ascii")


def plain_bounce(to: str) -> bytes:
    """An old-style bounce with no DSN part (qmail-like)."""
    return f"""To: {to}
From: MAILER-DAEMON@mail.example.com
Subject: failure notice

Hi. This is the qmail-send program at mail.example.com.
I'm afraid I wasn't able to deliver your message to the following addresses.

<binh@example.com>:
Remote host said: 550 5.1.1 No such user here
""".encode("ascii")


def auto_reply(to: str) -> bytes:
    return f"""To: {to}
From: An <an@example.org>
Subject: =?UTF-8?B?VuG6r25nIG3hurd0?=
Auto-Submitted: auto-replied

Tôi vắng mặt đến thứ Hai.
""".encode()


@pytest.fixture
def delivery_ids(store: Store, settings: Settings) -> list[int]:
    nl = create_list(store, NewsList(slug="sang", name="Tin sáng", sender_address="tin@news.example.org"))
    ids = []
    for i, addr in enumerate(["an@example.org", "lan@example.net"]):
        r = subscribe(store, settings, addr, "sang", confirmed=True)
        assert nl.id is not None and r.subscriber.id is not None and r.subscription.id is not None
        start = datetime(2026, 11, 23, tzinfo=UTC)
        periods = [f"2026-11-{d}" for d in (20, 21, 22, 23)]
        store.plan_deliveries([
            PlannedDelivery(nl.id, r.subscriber.id, r.subscription.id, p, start, start, ()) for p in periods
        ])
        for d in store.deliveries_for(r.subscription.id):
            assert d.id is not None
            ids.append(d.id)
        _ = i
    return ids


def vs(settings: Settings) -> Settings:
    return settings.with_(mail_sender_address="tin@news.example.org")


def test_parse_hard_and_soft(settings: Settings) -> None:
    s = vs(settings)
    to = verp_address(s, 7)
    hard = parse_bounce(postfix_dsn(to), s)
    assert hard is not None
    assert (hard.delivery_id, hard.hard, hard.action, hard.status, hard.recipient) == (
        7, True, "failed", "5.1.1", "an@example.org")
    assert "User unknown" in hard.diagnostic and not hard.diagnostic.startswith("smtp;")
    soft = parse_bounce(postfix_dsn(to, action="delayed", status="4.4.1",
                                    diagnostic="smtp; 451 4.4.1 Connection timed out"), s)
    assert soft is not None and soft.hard is False and soft.status == "4.4.1" and soft.delivery_id == 7
    relayed = parse_bounce(postfix_dsn(to, action="relayed", status="2.0.0", diagnostic="smtp; 250 ok"), s)
    assert relayed is None


def test_parse_other_shapes(settings: Settings) -> None:
    s = vs(settings)
    to = verp_address(s, 8)
    exim = parse_bounce(exim_dsn_to_x_original(to), s)
    assert exim is not None and exim.delivery_id == 8
    assert exim.hard is False and exim.status == "4.2.2"  # failed, but a 4.x.x (mailbox full): soft
    qmail = parse_bounce(plain_bounce(to), s)
    assert qmail is not None and qmail.delivery_id == 8 and qmail.hard is True and qmail.status == "5.1.1"
    assert "No such user" in qmail.diagnostic
    assert parse_bounce(auto_reply(to), s) is None


def test_forged_or_foreign_verp_is_unmatched(settings: Settings) -> None:
    s = vs(settings)
    real = verp_address(s, 9)
    forged = real.replace("bounce+9-", "bounce+10-")
    b = parse_bounce(postfix_dsn(forged), s)
    assert b is not None and b.delivery_id is None and b.hard
    assert parse_bounce(postfix_dsn("someone@news.example.org"), s).delivery_id is None  # type: ignore[union-attr]


def test_process_maildir_applies_and_counts_once(store: Store, settings: Settings, delivery_ids: list[int],
                                                 tmp_path: Path) -> None:
    s = vs(settings)
    an = delivery_ids[:4]
    lan = delivery_ids[4:]
    box = MaildirTransport(tmp_path / "bounces")
    for did in an[:HARD_BOUNCE_LIMIT]:
        box.write("", postfix_dsn(verp_address(s, did)))
    box.write("", exim_dsn_to_x_original(verp_address(s, lan[0])))
    box.write("", postfix_dsn(verp_address(s, 999999)))  # valid MAC, unknown delivery
    box.write("", postfix_dsn(verp_address(s, an[0]).replace(f"+{an[0]}-", f"+{lan[1]}-")))  # forged
    box.write("", auto_reply(verp_address(s, an[0])))
    report = process_bounces(store, s, tmp_path / "bounces")
    assert (report.messages, report.hard, report.soft, report.ignored, report.unmatched, report.errors) == (
        7, HARD_BOUNCE_LIMIT, 1, 1, 2, [])
    assert report.newly_bounced == 1
    an_sub = store.get_delivery(an[0]).subscription_id
    lan_sub = store.get_delivery(lan[0]).subscription_id
    statuses = {row["id"]: (row["status"], row["hard_bounces"]) for row in store.db.query(
        "SELECT id, status, hard_bounces FROM subscriptions")}
    assert statuses[an_sub] == ("bounced", HARD_BOUNCE_LIMIT)
    assert statuses[lan_sub] == ("active", 0)
    events = [row["kind"] for row in store.db.query("SELECT kind FROM events ORDER BY id")]
    assert events.count("hard-bounce") == HARD_BOUNCE_LIMIT and events.count("soft-bounce") == 1
    # processed messages moved to cur/, so a rerun counts nothing twice
    assert list((tmp_path / "bounces" / "new").iterdir()) == []
    assert len(list((tmp_path / "bounces" / "cur").iterdir())) == 7
    again = process_bounces(store, s, tmp_path / "bounces")
    assert again.messages == 0


def test_process_single_file_and_errors(store: Store, settings: Settings, delivery_ids: list[int],
                                        tmp_path: Path) -> None:
    s = vs(settings)
    eml = tmp_path / "dsn.eml"
    eml.write_bytes(postfix_dsn(verp_address(s, delivery_ids[0])))
    report = process_bounces(store, s, eml)
    assert (report.messages, report.hard) == (1, 1)
    assert eml.exists()
    with pytest.raises(InputError, match="does not exist"):
        process_bounces(store, s, tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="not a Maildir"):
        process_bounces(store, s, tmp_path / "plain")


def test_cli_bounces_process(cli: CliRunner, tmp_path: Path) -> None:
    from syndicate.config import load_settings

    settings = load_settings(db=str(tmp_path / "syndicate.db"))
    store = open_store(settings.db)
    try:
        nl = create_list(store, NewsList(slug="sang", name="Tin sáng", sender_address="tin@news.example.org"))
        r = subscribe(store, settings, "an@example.org", "sang", confirmed=True)
        assert nl.id and r.subscriber.id and r.subscription.id
        start = datetime(2026, 11, 23, tzinfo=UTC)
        store.plan_deliveries([PlannedDelivery(nl.id, r.subscriber.id, r.subscription.id, "2026-11-23", start,
                                               start, ())])
        did = store.deliveries_for(r.subscription.id)[0].id
        assert did is not None
    finally:
        store.close()
    eml = tmp_path / "dsn.eml"
    eml.write_bytes(postfix_dsn(verp_address(settings, did)))
    result = cli.invoke(main, ["bounces", "process", str(eml)])
    assert result.exit_code == 0, result.output
    assert f"hard  5.1.1    delivery {did}" in result.output
    assert "1 messages: 1 hard, 0 soft bounces, 0 ignored, 0 unmatched" in result.output
    result = cli.invoke(main, ["bounces", "process", str(eml), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["hard"], data["duplicates"]) == (0, 1)  # the same DSN again: that delivery counted already
    assert data["bounces"][0]["delivery_id"] == did
    result = cli.invoke(main, ["bounces", "process", str(tmp_path / "nope")])
    assert result.exit_code == 65
    assert result.output.strip() == f"error: {tmp_path / 'nope'} does not exist (give a Maildir folder or one .eml file)"


def test_hard_bounces_at_the_limit_suppress_the_address(store: Store, settings: Settings) -> None:
    """The sender's bounce path uses the same rule as the subscriber library: bounced means suppressed."""
    from syndicate import subscribers as lib
    from syndicate.models import NewsList

    lib.create_list(store, NewsList(slug="tin", name="Tin"))
    r = lib.subscribe(store, settings, "gone@example.org", "tin", confirmed=True)
    ids = store.plan_deliveries(
        [PlannedDelivery(list_id=r.newslist.id or 0, subscriber_id=r.subscriber.id or 0,
                         subscription_id=r.subscription.id or 0, period=f"2026-11-{day:02d}",
                         window_start=datetime(2026, 11, day - 1, tzinfo=UTC),
                         window_end=datetime(2026, 11, day, tzinfo=UTC), categories=(), skipped=False)
         for day in range(2, 2 + HARD_BOUNCE_LIMIT)],
        now=datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert ids == (HARD_BOUNCE_LIMIT, 0)
    delivery_ids = [row[0] for row in store.conn.execute("SELECT id FROM deliveries ORDER BY id")]
    for did in delivery_ids:
        store.record_bounce(did, True, "550 5.1.1 no such user")
    assert store.get_subscription(r.subscriber.id or 0, r.newslist.id or 0).status == "bounced"
    import pytest

    from syndicate.errors import InputError

    with pytest.raises(InputError, match=r"gone@example.org is suppressed \(bounced\); add --resubscribe"):
        lib.subscribe(store, settings, "gone@example.org", "tin", confirmed=True, source="cli")


def test_mailto_unsubscribe_from_a_real_digest(store: Store, settings: Settings, tmp_path: Path) -> None:
    """Reply to the digest's List-Unsubscribe mailto: exactly as a mail client would; the token decides."""
    import email
    import email.policy
    import urllib.parse

    from syndicate.mailer import MemoryTransport
    from syndicate.models import Article
    from syndicate.sender import run_send

    nl = create_list(store, NewsList(slug="tin", name="Tin", sender_address="tin@news.example.org"))
    lan = subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=datetime(2026, 11, 1, tzinfo=UTC))
    kim = subscribe(store, settings, "kim@example.org", "tin", confirmed=True, now=datetime(2026, 11, 1, tzinfo=UTC))
    store.upsert_articles([Article(guid="a", slug="a", title="Tin mới", published=datetime(2026, 11, 23, 12, tzinfo=UTC))])
    transport = MemoryTransport()
    sent = transport.sent
    assert run_send(store, settings, transport, now=datetime(2026, 11, 24, 3, tzinfo=UTC)).sent == 2
    raw = next(m for _, rcpts, m in sent if rcpts == ["lan@example.org"])
    header = email.message_from_bytes(raw, policy=email.policy.default)["List-Unsubscribe"]
    mailto = next(u.strip(" <>") for u in str(header).split(",") if "mailto:" in u)
    target = urllib.parse.urlsplit(mailto)
    subject = urllib.parse.parse_qs(target.query)["subject"][0]
    assert target.path == "unsubscribe@news.example.org" and subject.startswith("unsubscribe ")

    box = tmp_path / "box"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.reply").write_bytes(
        f"From: Lan <lan@example.org>\r\nTo: {target.path}\r\nSubject: {subject}\r\n\r\n\r\n".encode())
    forged = subject[:-3] + ("AAA" if not subject.endswith("AAA") else "BBB")
    (box / "new" / "2.forged").write_bytes(
        f"From: Kim <kim@example.org>\r\nTo: {target.path}\r\nSubject: Re: {forged}\r\n\r\n\r\n".encode())
    report = process_bounces(store, settings, box)
    assert (report.unsubscribed, report.unmatched, report.hard) == (1, 1, 0)
    assert store.get_subscription(lan.subscriber.id or 0, nl.id or 0).status == "unsubscribed"
    assert store.get_subscription(kim.subscriber.id or 0, nl.id or 0).status == "active"
    assert [e.source for e in store.events_for(lan.subscriber.id or 0)][-1] == "email"


# -- issue 10: one bounce per delivery, autoreplies, complaints (ARF) -----------------------------


def test_the_same_dsn_three_times_counts_once(store: Store, settings: Settings, delivery_ids: list[int],
                                             tmp_path: Path) -> None:
    s = vs(settings)
    box = MaildirTransport(tmp_path / "bounces")
    for _ in range(HARD_BOUNCE_LIMIT):  # a provider that resends its DSN, or an admin who feeds it again
        box.write("", postfix_dsn(verp_address(s, delivery_ids[0])))
    report = process_bounces(store, s, tmp_path / "bounces")
    assert (report.messages, report.hard, report.duplicates, report.newly_bounced) == (HARD_BOUNCE_LIMIT, 1, 2, 0)
    eml = tmp_path / "again.eml"
    eml.write_bytes(postfix_dsn(verp_address(s, delivery_ids[0])))
    assert process_bounces(store, s, eml).duplicates == 1
    sub = store.get_subscription_by_id(store.get_delivery(delivery_ids[0]).subscription_id)
    assert (sub.status, sub.hard_bounces) == ("active", 1)
    assert "2 already counted" in report.summary()
    # three different deliveries still make it bounced
    for did in delivery_ids[1:HARD_BOUNCE_LIMIT]:
        eml.write_bytes(postfix_dsn(verp_address(s, did)))
        process_bounces(store, s, eml)
    assert store.get_subscription_by_id(sub.id or 0).status == "bounced"


def vacation(to: str, extra: str = "", subject: str = "I have returned to the office") -> bytes:
    return (f"To: {to}\r\nFrom: An <an@example.org>\r\nSubject: {subject}\r\n{extra}"
            "\r\nI am back; I will read your message soon.\r\n").encode()


@pytest.mark.parametrize("extra", ["", "X-Autoreply: yes\r\n", "Precedence: junk\r\n", "Precedence: auto_reply\r\n"])
def test_autoreplies_are_not_bounces(settings: Settings, extra: str) -> None:
    s = vs(settings)
    to = verp_address(s, 7)
    assert parse_bounce(vacation(to, extra), s) is None
    assert parse_bounce(vacation(to, extra, subject="Returned mail: see transcript"), s) is None
    # a real daemon bounce is still one
    assert parse_bounce(plain_bounce(to), s) is not None


def arf(to: str, original: bytes, *, embedded: str = "message/rfc822", feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 abuse report as a mailbox provider's feedback loop sends it."""
    return (
        f"From: Feedback Loop <fbl@mail.example.net>\r\nTo: {to}\r\nSubject: FW: complaint about a message\r\n"
        "Date: Wed, 25 Nov 2026 09:00:00 +0000\r\nMessage-ID: <fbl.1@mail.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="fbl"\r\n\r\n'
        "--fbl\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is an email abuse report.\r\n\r\n"
        "--fbl\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n"
        "Arrival-Date: Wed, 25 Nov 2026 08:00:00 +0000\r\n\r\n"
        f"--fbl\r\nContent-Type: {embedded}\r\n\r\n"
    ).encode() + original + b"\r\n--fbl--\r\n"


def _one_digest(store: Store, settings: Settings) -> tuple[str, bytes, int, int]:
    from syndicate.mailer import MemoryTransport
    from syndicate.models import Article
    from syndicate.sender import run_send

    create_list(store, NewsList(slug="tin", name="Tin", sender_address="tin@news.example.org"))
    create_list(store, NewsList(slug="tuan", name="Tuần", sender_address="tin@news.example.org", cadence="weekly"))
    lan = subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=datetime(2026, 11, 1, tzinfo=UTC))
    other = subscribe(store, settings, "lan@example.org", "tuan", confirmed=True,
                      now=datetime(2026, 11, 1, tzinfo=UTC))
    store.upsert_articles([Article(guid="a", slug="a", title="Tin mới", published=datetime(2026, 11, 23, 12, tzinfo=UTC))])
    transport = MemoryTransport()
    # By arrival, both lists' first digests carry the article; the complaint is about the daily one.
    assert run_send(store, settings, transport, now=datetime(2026, 11, 24, 3, tzinfo=UTC)).sent == 2
    envelope_from, _rcpts, raw = next(m for m in transport.sent if b"List-Id: Tin <" in m[2] or b"List-Id: Tin\r\n" in m[2])
    return envelope_from, raw, lan.subscription.id or 0, other.subscription.id or 0


@pytest.mark.parametrize("how", ["verp", "message-id"])
def test_an_abuse_report_marks_the_subscription_complained(store: Store, settings: Settings, tmp_path: Path,
                                                          how: str) -> None:
    s = vs(settings)
    envelope_from, raw, sub_id, other_id = _one_digest(store, s)
    if how == "verp":  # the whole message, with the Return-Path the receiving server added
        report_bytes = arf("fbl@news.example.org", f"Return-Path: <{envelope_from}>\r\n".encode() + raw)
    else:  # only the headers, the address redacted, the Return-Path gone: the Message-ID still names it
        headers = raw.split(b"\r\n\r\n", 1)[0].replace(b"lan@example.org", b"redacted@example.org")
        report_bytes = arf("fbl@news.example.org", headers + b"\r\n", embedded="text/rfc822-headers")
    box = MaildirTransport(tmp_path / "fbl")
    box.write("", report_bytes)
    box.write("", report_bytes)  # the same complaint twice changes nothing more
    report = process_bounces(store, s, tmp_path / "fbl")
    assert (report.messages, report.complaints, report.newly_complained, report.hard, report.errors) == (
        2, 2, 1, 0, [])
    assert "2 complaints (1 subscriptions set complained)" in report.summary()
    assert store.get_subscription_by_id(sub_id).status == "complained"
    assert store.get_subscription_by_id(other_id).status == "complained"  # suppressed: no list mails them
    from syndicate.subscribers import address_hash

    assert store.suppression(address_hash("lan@example.org")) == "complained"
    events = [(e.kind, e.source, e.detail) for e in store.events_for(store.get_subscription_by_id(sub_id).subscriber_id)]
    assert ("complaint", "complaint", "abuse report (ExampleFBL/1.0)") in events


def test_reports_that_are_not_complaints_or_not_ours(store: Store, settings: Settings, tmp_path: Path) -> None:
    s = vs(settings)
    envelope_from, raw, sub_id, _ = _one_digest(store, s)
    box = MaildirTransport(tmp_path / "fbl")
    box.write("", arf("fbl@news.example.org", f"Return-Path: <{envelope_from}>\r\n".encode() + raw,
                      feedback_type="not-spam"))
    foreign = raw.replace(b"Message-ID: <digest.", b"Message-ID: <other.").replace(b"Message-Id: <digest.",
                                                                                    b"Message-Id: <other.")
    box.write("", arf("fbl@news.example.org", foreign, embedded="message/rfc822"))
    report = process_bounces(store, s, tmp_path / "fbl")
    assert (report.complaints, report.ignored, report.unmatched) == (0, 1, 1)
    assert store.get_subscription_by_id(sub_id).status == "active"


def test_cli_reports_complaints(cli: CliRunner, tmp_path: Path) -> None:
    from syndicate.config import load_settings

    settings = load_settings(db=str(tmp_path / "syndicate.db")).with_(mail_sender_address="tin@news.example.org")
    store = open_store(settings.db)
    try:
        envelope_from, raw, _sub, _ = _one_digest(store, settings)
    finally:
        store.close()
    eml = tmp_path / "fbl.eml"
    eml.write_bytes(arf("fbl@news.example.org", f"Return-Path: <{envelope_from}>\r\n".encode() + raw))
    result = cli.invoke(main, ["bounces", "process", str(eml), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["complaints"], data["newly_complained"]) == (1, 1)
    text = cli.invoke(main, ["bounces", "process", str(eml)])
    assert "complaint  abuse" in text.output and "1 complaints (0 subscriptions set complained)" in text.output


def test_a_complaint_about_the_confirmation_email(store: Store, settings: Settings, tmp_path: Path) -> None:
    """Someone who reports the confirmation email as spam did not ask: complained and suppressed."""
    s = vs(settings)
    create_list(store, NewsList(slug="tin", name="Tin", sender_address="tin@news.example.org"))
    r = subscribe(store, s, "lan@example.org", "tin", source="web")
    store.set_confirmation_message_id(r.subscription.id or 0, "<confirm.tin.1.1796000000.ab12cd34@news.example.org>")
    headers = (b"From: Tin <tin@news.example.org>\r\nTo: redacted@example.org\r\nSubject: Confirm\r\n"
               b"Message-ID: <confirm.tin.1.1796000000.ab12cd34@news.example.org>\r\n")
    eml = tmp_path / "fbl.eml"
    eml.write_bytes(arf("fbl@news.example.org", headers, embedded="text/rfc822-headers"))
    report = process_bounces(store, s, eml)
    assert (report.complaints, report.newly_complained, report.unmatched) == (1, 1, 0)
    assert store.get_subscription_by_id(r.subscription.id or 0).status == "complained"
    from syndicate.subscribers import address_hash

    assert store.suppression(address_hash("lan@example.org")) == "complained"
    assert store.events_for(r.subscriber.id or 0)[-1].detail == "abuse report (ExampleFBL/1.0) about the confirmation email"
