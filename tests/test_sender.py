"""The sender against a real aiosmtpd server on 127.0.0.1: headers, retries,
bounces, dropped connections, concurrent runs, the lock and the CLI."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dkim
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from loopback import free_port, smtp_server

from syndicate.cli import main
from syndicate.config import Settings
from syndicate.errors import LockError
from syndicate.mailer import SmtpTransport, parse_verp
from syndicate.models import Article, NewsList
from syndicate.sender import run_lock, run_send
from syndicate.store import Store, open_store
from syndicate.subscribers import read_token, subscribe, unsubscribe

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # before everyone's first send moment
AT = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 08:00 in Ho Chi Minh City: daily 07:00 digests are due


class Sink:
    """Collects messages; per-recipient rules: 451 once, 550 always, drop the connection."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.temp_once: set[str] = set()
        self.reject: set[str] = set()
        self.drop: set[str] = set()  # dropped after the message arrived: the client cannot know
        self.drop_rcpt: set[str] = set()  # dropped at RCPT TO, before DATA: certainly not delivered
        self.delay = 0.0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.drop_rcpt:
            server.transport.abort()
            return "250 OK"
        if address in self.reject:
            return "550 5.1.1 no such user here"
        if address in self.temp_once:
            self.temp_once.discard(address)
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if any(r in self.drop for r in envelope.rcpt_tos):
            server.transport.abort()
            return "250 OK"
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    def parsed(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(m[2], policy=email.policy.default) for m in self.messages]  # type: ignore[misc]


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    with smtp_server(handler) as port:
        yield handler, port


@pytest.fixture
def smtp_settings(settings: Settings, sink: tuple[Sink, int]) -> Settings:
    return settings.with_(smtp_host="127.0.0.1", smtp_port=sink[1], mail_sender_address="tin@news.example.org",
                          mail_sender_name="Báo Mới", smtp_pool_size=2, smtp_timeout=5.0)


def make_list(store: Store, slug: str = "tin-sang", **kw: Any) -> NewsList:
    return store.create_list(NewsList(slug=slug, name=kw.pop("name", "Tin sáng Sài Gòn"), **kw))


def add_articles(store: Store, n: int, start: datetime = T0, category: str = "Xã hội", prefix: str = "a") -> None:
    store.upsert_articles([
        Article(guid=f"{prefix}{i}", title=f"Tin {prefix}{i}: khởi nghiệp ở Hà Nội", slug=f"{prefix}-{i}",
                published=start + timedelta(hours=i), summary="Tóm tắt bài viết.", category=category)
        for i in range(1, n + 1)
    ])


def send(store: Store, settings: Settings, at: datetime = AT, **kw: Any) -> Any:
    return run_send(store, settings, SmtpTransport(settings), now=at, **kw)


def test_every_header_checked_in_the_received_message(store: Store, smtp_settings: Settings,
                                                      sink: tuple[Sink, int], tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    (tmp_path / "dkim.pem").write_bytes(pem)
    settings = smtp_settings.with_(dkim_domain="news.example.org", dkim_selector="s1",
                                   dkim_key_file=str(tmp_path / "dkim.pem"), mail_feedback_id="syndicate")
    nl = make_list(store, sender_name="Tin Sáng", sender_address="tin@news.example.org")
    r = subscribe(store, settings, "lan@example.org", nl.slug, name='Lan "Ly" <script>', confirmed=True, now=T0)
    add_articles(store, 3)
    report = send(store, settings)
    assert (report.sent, report.failed) == (1, 0)
    handler, _ = sink
    [(mail_from, rcpts, raw)] = handler.messages
    msg = handler.parsed()[0]
    assert rcpts == ["lan@example.org"]
    delivery = store.deliveries_for(r.subscription.id)[0]  # type: ignore[arg-type]
    assert parse_verp(mail_from, settings) == delivery.id
    assert msg["Subject"] == "Tin sáng Sài Gòn: Tin a3: khởi nghiệp ở Hà Nội"  # the lead headline
    assert b"Subject: =?UTF-8?" in raw
    assert msg["From"].addresses[0].display_name == "Tin Sáng"
    assert msg["To"].addresses[0].addr_spec == "lan@example.org"
    assert msg["To"].addresses[0].display_name == 'Lan "Ly" <script>'
    assert msg["Message-ID"] == f"<digest.tin-sang.{r.subscriber.id}.2026-11-24@news.example.org>"
    assert delivery.message_id == msg["Message-ID"]
    assert msg["List-Id"] == "Tin sáng Sài Gòn <tin-sang.news.example.org>"
    https, mailto = [u.strip().strip("<>") for u in str(msg["List-Unsubscribe"]).split(",")]
    assert https.startswith("https://news.example.org/unsubscribe/")
    assert read_token(settings, https.rsplit("/", 1)[1], "unsubscribe") == (r.subscriber.id, nl.id)
    assert mailto.startswith("mailto:unsubscribe@news.example.org")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Feedback-ID"] == "tin-sang:digest:syndicate"
    assert msg["Date"].datetime.tzinfo is not None
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert all(p["Content-Transfer-Encoding"] in ("base64", "quoted-printable") for p in (text, html))
    body_text, body_html = text.get_content(), html.get_content()
    assert 'Xin chào Lan "Ly" <script>,' in body_text
    assert "<script>" not in body_html and "Xin chào Lan \"Ly\" &lt;script&gt;," in body_html
    assert "Tin a3: khởi nghiệp ở Hà Nội" in body_text and body_text.index("a3") < body_text.index("a1")
    assert 'style="' in body_html and "color-scheme" in body_html and 'width="600"' in body_html
    assert https in body_text and https.replace("&", "&amp;") in body_html
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record)
    # the archive holds the generic rendering for "view in browser"
    archived = store.get_archived_digest(nl.id, "2026-11-24")  # type: ignore[arg-type]
    assert archived.subject == msg["Subject"] and "Lan" not in archived.html and archived.article_count == 3


def test_temporary_failure_is_retried_with_backoff(store: Store, smtp_settings: Settings,
                                                   sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    make_list(store)
    subscribe(store, smtp_settings, "grey@example.org", "tin-sang", confirmed=True, now=T0)
    subscribe(store, smtp_settings, "ok@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 2)
    handler.temp_once.add("grey@example.org")
    first = send(store, smtp_settings)
    assert (first.sent, first.retry_later, first.failed) == (1, 1, 0)
    assert first.summary() == "sent 1, failed 0, skipped 0, retry later 1"
    too_soon = send(store, smtp_settings, AT + timedelta(seconds=30))
    assert too_soon.sent == 0 and store.outbox_status(AT).counts["queued"] == 1
    later = send(store, smtp_settings, AT + timedelta(minutes=2))
    assert (later.sent, later.failed) == (1, 0)
    assert sorted(r[0] for _f, r, _b in handler.messages) == ["grey@example.org", "ok@example.org"]
    assert len({m["Message-ID"] for m in handler.parsed()}) == 2


def test_gives_up_after_max_attempts(store: Store, smtp_settings: Settings, sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    settings = smtp_settings.with_(smtp_max_attempts=2)
    make_list(store)
    subscribe(store, settings, "grey@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    handler.temp_once.add("grey@example.org")
    assert send(store, settings).retry_later == 1
    handler.temp_once.add("grey@example.org")
    last = send(store, settings, AT + timedelta(minutes=5))
    assert (last.failed, last.sent) == (1, 0)
    assert "gave up after 2 attempts" in last.errors[0]
    assert handler.messages == []


def test_permanent_failure_is_a_hard_bounce(store: Store, smtp_settings: Settings, sink: tuple[Sink, int],
                                            cli: CliRunner) -> None:
    handler, _ = sink
    nl = make_list(store)
    r = subscribe(store, smtp_settings, "gone@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    handler.reject.add("gone@example.org")
    report = send(store, smtp_settings)
    assert (report.failed, report.retry_later, report.sent) == (1, 0, 0)
    assert "550" in report.errors[0]
    sub = store.get_subscription(r.subscriber.id, nl.id)  # type: ignore[arg-type]
    assert sub.hard_bounces == 1 and sub.status == "active"
    assert [e.kind for e in store.events_for(r.subscriber.id)][-1] == "hard-bounce"  # type: ignore[arg-type]
    # retry does not resend a hard bounce
    assert store.retry_failed() == 0
    # the limit of hard bounces turns the subscription off
    [delivery] = store.deliveries_for(sub.id)  # type: ignore[arg-type]
    store.record_bounce(delivery.id, True, "550 again")  # type: ignore[arg-type]
    outcome = store.record_bounce(delivery.id, True, "550 and again")  # type: ignore[arg-type]
    assert (outcome.hard_bounces, outcome.status) == (3, "bounced")


def test_connection_dropped_before_data_is_retried(store: Store, smtp_settings: Settings,
                                                  sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    make_list(store)
    subscribe(store, smtp_settings, "drop@example.org", "tin-sang", confirmed=True, now=T0)
    subscribe(store, smtp_settings, "ok@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    handler.drop_rcpt.add("drop@example.org")
    report = send(store, smtp_settings)
    assert (report.sent, report.retry_later, report.failed, report.unknown) == (1, 1, 0, 0)
    assert report.exit_code == 3
    handler.drop_rcpt.clear()
    again = send(store, smtp_settings, AT + timedelta(minutes=3))
    assert again.sent == 1 and again.exit_code == 0
    assert sorted(r[0] for _f, r, _b in handler.messages) == ["drop@example.org", "ok@example.org"]


def test_connection_dropped_after_data_is_unknown_and_not_resent(store: Store, smtp_settings: Settings,
                                                                  sink: tuple[Sink, int]) -> None:
    """The relay got the whole message, then the connection died before its reply: it may have
    queued it (accept-then-drop), so a retry could duplicate; the row is `unknown`."""
    handler, _ = sink
    make_list(store)
    r = subscribe(store, smtp_settings, "drop@example.org", "tin-sang", confirmed=True, now=T0)
    subscribe(store, smtp_settings, "ok@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    handler.drop.add("drop@example.org")
    report = send(store, smtp_settings)
    assert (report.sent, report.retry_later, report.failed, report.unknown) == (1, 0, 0, 1)
    assert report.exit_code == 4
    [row] = store.deliveries_for(r.subscription.id)  # type: ignore[arg-type]
    assert row.status == "unknown" and "the relay may have it" in row.error
    handler.drop.clear()
    again = send(store, smtp_settings, AT + timedelta(hours=1))
    assert (again.sent, again.unknown) == (0, 0)
    assert [rc[0] for _f, rc, _b in handler.messages] == ["ok@example.org"]


def test_two_concurrent_drains_send_each_row_once(settings: Settings, smtp_settings: Settings,
                                                  sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    handler.delay = 0.01
    store = open_store(settings.db)
    make_list(store)
    for i in range(60):
        subscribe(store, smtp_settings, f"r{i}@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 2)
    queued, _ = store.plan_deliveries(__import__("syndicate.digest", fromlist=["plan"]).plan(store, AT))
    assert queued == 60
    reports: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        s = open_store(settings.db)
        try:
            reports.append(run_send(s, smtp_settings, SmtpTransport(smtp_settings), now=AT, lock=False))
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.sent for r in reports) == 60
    assert all(r.sent > 0 for r in reports), [r.sent for r in reports]  # both really took part
    ids = [m["Message-ID"] for m in handler.parsed()]
    assert len(ids) == 60 and len(set(ids)) == 60
    assert store.outbox_status(AT).counts["sent"] == 60
    store.close()


def test_a_second_run_meets_the_lock(store: Store, smtp_settings: Settings, cli: CliRunner) -> None:
    with run_lock(smtp_settings), pytest.raises(LockError, match="another `syndicate send` is running"):
        send(store, smtp_settings)
    with run_lock(smtp_settings):  # released: can be taken again
        pass


def test_unsubscribe_cancels_queued_and_skips_empty(store: Store, smtp_settings: Settings,
                                                    sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    nl = make_list(store)
    a = subscribe(store, smtp_settings, "a@example.org", "tin-sang", confirmed=True, now=T0)
    subscribe(store, smtp_settings, "b@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    from syndicate.digest import plan

    store.plan_deliveries(plan(store, AT))
    unsubscribe(store, smtp_settings, a.subscriber.id, nl.id, source="cli")  # type: ignore[arg-type]
    report = send(store, smtp_settings)
    assert report.sent == 1 and [r[0] for _f, r, _b in handler.messages] == ["b@example.org"]
    assert store.outbox_status(AT).counts["cancelled"] == 1
    # next day: no new articles, no email, the period recorded as skipped
    nextday = send(store, smtp_settings, AT + timedelta(days=1))
    assert (nextday.sent, nextday.skipped) == (0, 1)
    assert len(handler.messages) == 1


def test_cli_send_status_retry_and_preview(cli: CliRunner, tmp_path: Path, sink: tuple[Sink, int],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    handler, port = sink
    monkeypatch.setenv("SYNDICATE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SYNDICATE_SMTP_PORT", str(port))
    monkeypatch.setenv("SYNDICATE_MAIL_SENDER_ADDRESS", "tin@news.example.org")
    store = open_store(tmp_path / "syndicate.db")
    from syndicate.config import load_settings

    settings = load_settings()
    make_list(store)
    subscribe(store, settings, "lan@example.org", "tin-sang", name="Lan", confirmed=True, now=T0)
    subscribe(store, settings, "gone@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 25)
    store.close()
    at = "2026-11-24T08:00:00+07:00"
    dry = cli.invoke(main, ["send", "--dry-run", "--at", at])
    assert dry.exit_code == 0 and "would send 2" in dry.output and handler.messages == []
    preview = cli.invoke(main, ["digest", "preview", "LAN@example.org", "--list", "tin-sang", "--at", at])
    assert preview.exit_code == 0, preview.output
    # all 25 arrived before this first digest and are public at 08:00 (the 25th was published at that instant)
    assert "Xin chào Lan," in preview.output and "Đây là 25 tin mới" in preview.output and "và 5 tin khác" in preview.output
    cli.invoke(main, ["digest", "preview", "lan@example.org", "--list", "tin-sang", "--at", at,
                      "--format", "eml", "--out", "d.eml"])
    eml = email.message_from_bytes((tmp_path / "d.eml").read_bytes(), policy=email.policy.default)
    assert eml["Subject"] == "Tin sáng Sài Gòn: Tin a25: khởi nghiệp ở Hà Nội"  # the lead is the newest
    handler.reject.add("gone@example.org")
    result = cli.invoke(main, ["send", "--at", at])
    assert result.exit_code == 1
    assert result.stdout == "sent 1, failed 1, skipped 0, retry later 0\n"
    assert eml["Message-ID"] in {m["Message-ID"] for m in handler.parsed()}
    status = json.loads(cli.invoke(main, ["outbox", "status", "--json"]).output)
    assert (status["sent"], status["failed"], status["total"]) == (1, 1, 2)
    assert cli.invoke(main, ["outbox", "retry"]).output.startswith("requeued 0 deliveries")
    bad = cli.invoke(main, ["send", "--at", "yesterday"])
    assert bad.exit_code == 65
    assert bad.stderr == "error: --at 'yesterday' is not an ISO 8601 time such as 2026-11-24T07:00:00+07:00\n"


def test_cron_examples_call_syndicate_send() -> None:
    import configparser

    root = Path(__file__).resolve().parent.parent / "cron"
    jobs = [line for line in (root / "crontab").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    [job] = [j for j in jobs if " send " in j]  # the other line runs `fetch`
    fields = job.split(None, 5)
    assert fields[:5] == ["*/5", "*", "*", "*", "*"] and " send " in fields[5] and "syndicate" in fields[5]
    units = {}
    for name in ("syndicate-send.service", "syndicate-send.timer"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string((root / name).read_text(encoding="utf-8"))
        units[name] = parser
    service = units["syndicate-send.service"]
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].endswith("/syndicate send")
    assert service["Service"]["SuccessExitStatus"] == "75"  # LockError.exit_code
    assert units["syndicate-send.timer"]["Timer"]["OnUnitActiveSec"] == "5min"
    assert LockError.exit_code == 75


def test_rows_left_sending_become_unknown_and_are_resent_only_on_request(
        store: Store, smtp_settings: Settings, sink: tuple[Sink, int], cli: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    handler, port = sink
    make_list(store)
    subscribe(store, smtp_settings, "lan@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    from syndicate.digest import plan

    store.plan_deliveries(plan(store, AT))
    # a run that claimed the row and died (its lease has not even expired)
    [claimed] = store.claim_deliveries("dead-run", AT, datetime.now(UTC) + timedelta(minutes=10), 10)
    report = send(store, smtp_settings)
    assert (report.unknown, report.sent) == (1, 0) and handler.messages == []
    assert "unknown 1 (not resent" in report.summary()
    assert "interrupted while sending" in store.get_delivery(claimed.id).error
    assert store.retry_failed() == 0  # plain retry leaves unknown rows alone
    assert store.retry_failed(unknown=True) == 1
    again = send(store, smtp_settings)
    assert again.sent == 1
    assert handler.parsed()[0]["Message-ID"] == f"<digest.tin-sang.{claimed.subscriber_id}.2026-11-24@news.example.org>"


def test_a_dead_runs_journal_settles_its_claims_exactly(store: Store, smtp_settings: Settings,
                                                        sink: tuple[Sink, int]) -> None:
    """Accepted by the server -> sent; on the wire -> unknown; never started -> queued and sent now."""
    from syndicate.sender import SendJournal, journal_dir

    nl = make_list(store)
    people = [subscribe(store, smtp_settings, f"p{i}@example.org", nl.slug, confirmed=True, now=T0)
              for i in range(5)]
    add_articles(store, 2)
    from syndicate.digest import plan

    store.plan_deliveries(plan(store, AT), now=AT)
    dead = "otherhost:4242:dead"
    claimed = store.claim_deliveries(dead, AT, AT + timedelta(minutes=10), 5)
    ids = [d.id for d in claimed]
    journal = SendJournal(journal_dir(smtp_settings), dead)
    journal.started(ids[0])
    journal.accepted(ids[0], "<accepted@news.example.org>")
    journal.started(ids[1])  # on the wire when the run died
    os.close(journal._fd)  # the process died here: nothing more was written, and the file stays

    report = send(store, smtp_settings)
    status = {d.id: d for r in people for d in store.deliveries_for(r.subscription.id)}  # type: ignore[arg-type]
    assert status[ids[0]].status == "sent" and status[ids[0]].message_id == "<accepted@news.example.org>"
    assert status[ids[1]].status == "unknown"
    assert [status[i].status for i in ids[2:]] == ["sent"] * 3
    assert (report.recovered, report.unknown, report.sent) == (1, 1, 3)
    assert report.summary().endswith("unknown 1 (not resent; see `syndicate outbox retry --unknown`); "
                                      "recorded 1 sent by an interrupted run")
    sent_to = sorted(rcpt for _, rcpts, _ in sink[0].messages for rcpt in rcpts)
    assert sent_to == sorted(f"p{i}@example.org" for i in range(2, 5))  # the accepted one is not sent again
    assert not list(journal_dir(smtp_settings).glob("*.log"))


def test_send_purges_stale_pending_by_the_real_clock(store: Store, settings: Settings) -> None:
    from syndicate.mailer import MemoryTransport
    from syndicate.models import utcnow

    make_list(store)
    subscribe(store, settings, "old@example.org", "tin-sang", now=utcnow() - timedelta(days=8))
    subscribe(store, settings, "new@example.org", "tin-sang", now=utcnow() - timedelta(days=1))
    far_future = utcnow() + timedelta(days=30)  # a replay at any --at must not purge early
    report = run_send(store, settings, MemoryTransport(), now=far_future)
    assert report.purged == 1 and report.summary().endswith("; purged 1 never confirmed in time")
    assert [e.kind for e in store.events_for(store.get_subscriber("old@example.org").id or 0)][-1] == "purge"
    assert store.get_subscriber("new@example.org").id is not None
    off = settings.with_(mail_pending_max_age_days=0)
    subscribe(store, off, "older@example.org", "tin-sang", now=utcnow() - timedelta(days=90))
    assert run_send(store, off, MemoryTransport(), now=AT).purged == 0


# -- durability: the journal, the claim transaction, the lock, retry by time ------------------------


class GateSink(Sink):
    """Holds every DATA until :attr:`gate` is set, counting the messages held."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.in_data = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.in_data += 1
        while not self.gate.is_set():
            await asyncio.sleep(0.005)
        return await super().handle_DATA(server, session, envelope)


def wait_until(cond: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def journal_lines(settings: Settings) -> list[str]:
    from syndicate.sender import journal_dir

    return [line for p in journal_dir(settings).glob("*.log") for line in p.read_text().splitlines()]


def test_started_means_data_began_not_waiting_for_a_connection(store: Store, smtp_settings: Settings) -> None:
    """With 2 connections and 4 messages in flight, only the 2 in DATA are journalled as started: a
    SIGKILL at that moment leaves 2 rows `unknown`, never the 2 still waiting for a connection."""
    handler = GateSink()
    with smtp_server(handler) as port:
        settings = smtp_settings.with_(smtp_port=port, smtp_pool_size=2)
        make_list(store)
        for i in range(6):
            subscribe(store, settings, f"r{i}@example.org", "tin-sang", confirmed=True, now=T0)
        add_articles(store, 1)
        reports: list[Any] = []
        worker = threading.Thread(target=lambda: reports.append(send(store, settings)))
        worker.start()
        try:
            wait_until(lambda: handler.in_data == 2)
            started = [line for line in journal_lines(settings) if line.startswith("S ")]
            assert len(started) == 2, started
        finally:
            handler.gate.set()
            worker.join(120)
    assert reports[0].sent == 6 and reports[0].exit_code == 0


def test_an_error_inside_the_claim_transaction_loses_nothing(store: Store, smtp_settings: Settings,
                                                             sink: tuple[Sink, int],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The second claim transaction fails after writing the first batch's results into it: the
    rollback must not lose them (before the fix they became `unknown` and the journal was deleted)."""
    handler, _ = sink
    make_list(store)
    for i in range(20):
        subscribe(store, smtp_settings, f"r{i:02d}@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    monkeypatch.setenv("SYNDICATE_FAULT", "claim@2")
    first = send(store, smtp_settings)
    assert first.fatal == "InjectedFault: fault injected at claim pass 2 (SYNDICATE_FAULT)"
    assert first.exit_code == 1 and first.unknown == 0
    counts = store.outbox_status(AT).counts
    assert counts["sent"] == len(handler.messages) == first.sent >= 4  # every message the relay took
    assert first.sent + first.given_back == 8  # the first claim (2 x 2 x 2 rows): sent or given back
    assert counts["unknown"] == counts["sending"] == 0
    monkeypatch.delenv("SYNDICATE_FAULT")
    second = send(store, smtp_settings)
    assert (second.sent, second.unknown, second.exit_code) == (20 - first.sent, 0, 0)
    ids = [m["Message-ID"] for m in handler.parsed()]
    assert len(ids) == len(set(ids)) == 20


def test_a_journal_is_kept_until_the_store_holds_what_it_knew(store: Store, smtp_settings: Settings,
                                                              sink: tuple[Sink, int],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """When even the final recording fails, the journal stays and the next run settles from it."""
    handler, _ = sink
    make_list(store)
    for i in range(5):
        subscribe(store, smtp_settings, f"r{i}@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    real_mark_sent = store.mark_sent

    def full_disk(*args: Any, **kw: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "mark_sent", full_disk)  # the store itself is real; only this write fails
    first = send(store, smtp_settings)
    assert first.fatal == f"cannot write the database {smtp_settings.db}: database or disk is full"
    accepted = len(handler.messages)
    assert first.exit_code == 1 and 1 <= accepted <= 5
    assert sum(line.startswith("D ") for line in journal_lines(smtp_settings)) == accepted
    assert store.outbox_status(AT).counts["sent"] == 0
    monkeypatch.setattr(store, "mark_sent", real_mark_sent)
    second = send(store, smtp_settings)
    assert (second.recovered, second.sent, second.unknown, second.exit_code) == (accepted, 5 - accepted, 0, 0)
    assert store.outbox_status(AT).counts["sent"] == 5 and len(handler.messages) == 5
    assert journal_lines(smtp_settings) == []


def test_a_symlinked_database_takes_the_same_lock(tmp_path: Path, smtp_settings: Settings) -> None:
    real = Settings(db=str(tmp_path / "syn.db"))
    (tmp_path / "link.db").symlink_to(tmp_path / "syn.db")
    link = Settings(db=str(tmp_path / "link.db"))
    with run_lock(real), pytest.raises(LockError, match="another `syndicate send` is running"), run_lock(link):
        pass
    from syndicate.sender import journal_dir

    assert journal_dir(real) == journal_dir(link)  # a run through either name recovers the other's journal


def test_the_sender_commits_durably(store: Store, settings: Settings) -> None:
    from syndicate.mailer import MemoryTransport

    make_list(store)
    run_send(store, settings, MemoryTransport(), now=AT)
    assert store.scalar("PRAGMA synchronous") == 2  # FULL


def test_journal_lines_are_on_disk_before_data_and_before_the_store_records(
        store: Store, smtp_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fsync contract, observed: when the relay sees DATA, the message's S line has been
    fdatasync'ed; when the store records a row sent, its D line has been."""
    synced: list[int] = []  # journal size in lines at each fdatasync
    real = os.fdatasync

    def spy(fd: int) -> None:
        real(fd)
        synced.append(len(journal_lines(smtp_settings)))

    monkeypatch.setattr(os, "fdatasync", spy)
    seen_at_data: list[tuple[int, int]] = []  # (index of this message's S line, synced lines so far)

    class Checking(Sink):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            lines = journal_lines(smtp_settings)
            did = parse_verp(envelope.mail_from, smtp_settings)
            [mine] = [i for i, line in enumerate(lines) if line == f"S {did}"]
            seen_at_data.append((mine, max(synced, default=0)))
            return await super().handle_DATA(server, session, envelope)

    handler = Checking()
    with smtp_server(handler) as port:
        settings = smtp_settings.with_(smtp_port=port)
        make_list(store)
        for i in range(6):
            subscribe(store, settings, f"r{i}@example.org", "tin-sang", confirmed=True, now=T0)
        add_articles(store, 1)
        real_mark_sent = store.mark_sent
        at_record: list[tuple[int, int]] = []

        def checked(owner: str, items: Any, sent_at: datetime) -> None:
            at_record.append((len(journal_lines(settings)), max(synced, default=0)))
            real_mark_sent(owner, items, sent_at)

        monkeypatch.setattr(store, "mark_sent", checked)
        assert send(store, settings).sent == 6
    assert len(seen_at_data) == 6 and all(synced_lines > s_index for s_index, synced_lines in seen_at_data)
    assert at_record and all(lines == synced_lines for lines, synced_lines in at_record)


def test_a_40_minute_relay_outage_then_every_digest_goes_out(store: Store, smtp_settings: Settings,
                                                             sink: tuple[Sink, int]) -> None:
    """Cron every 5 minutes; the relay is down for 40 (nothing listens on its port). Nothing fails,
    each run exits 3 (deferred), and once the relay is back later runs send everything, once."""
    handler, port = sink
    make_list(store)
    for i in range(30):
        subscribe(store, smtp_settings, f"r{i:02d}@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 2)
    down = smtp_settings.with_(smtp_port=free_port())
    for minute in range(0, 45, 5):
        report = send(store, down, AT + timedelta(minutes=minute))
        assert (report.sent, report.failed, report.exit_code) == (0, 0, 3), report
    status = store.outbox_status(AT + timedelta(minutes=45))
    assert status.counts["failed"] == 0 and status.counts["queued"] == 30
    sent = 0
    for minute in range(45, 240, 5):
        report = send(store, smtp_settings, AT + timedelta(minutes=minute))
        assert report.failed == 0
        sent += report.sent
        if sent == 30:
            break
    assert sent == 30 and report.exit_code == 0
    ids = [m["Message-ID"] for m in handler.parsed()]
    assert len(ids) == len(set(ids)) == 30


def test_an_unreachable_relay_stops_the_run_early(store: Store, smtp_settings: Settings) -> None:
    make_list(store)
    for i in range(60):
        subscribe(store, smtp_settings, f"r{i:02d}@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    down = smtp_settings.with_(smtp_port=free_port())
    report = send(store, down)
    assert report.stopped.startswith("the relay is unreachable: cannot connect to SMTP 127.0.0.1:")
    assert report.retry_later < 20 and report.exit_code == 3  # it did not try all 60
    assert report.summary().startswith(f"sent 0, failed 0, skipped 0, retry later {report.retry_later}; "
                                       "stopped early (the relay is unreachable: ")
    assert report.summary().endswith(f", {60 - report.retry_later} left for the next run")
    assert store.outbox_status(AT).counts["sending"] == 0


def test_retries_give_up_after_the_queue_lifetime(store: Store, smtp_settings: Settings) -> None:
    make_list(store)
    r = subscribe(store, smtp_settings, "r@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    down = smtp_settings.with_(smtp_port=free_port(), send_queue_lifetime_hours=2.0)
    send(store, down, AT)
    status = store.outbox_status(AT)
    assert (status.deferred, status.next_retry, status.oldest_deferred) == (1, AT + timedelta(minutes=1), AT)
    at = AT + timedelta(minutes=1)
    for _ in range(20):
        report = send(store, down, at)
        [row] = store.deliveries_for(r.subscription.id)  # type: ignore[arg-type]
        if row.status != "queued":
            break
        assert row.next_attempt is not None and row.next_attempt <= AT + timedelta(hours=2)
        at = row.next_attempt
    assert row.status == "failed" and row.error.startswith(f"gave up after {row.attempts} attempts: cannot connect")
    assert at == AT + timedelta(hours=2)  # the last try falls at the end of the lifetime
    assert report.failed == 1 and report.exit_code == 1


def test_the_next_periods_digest_supersedes_a_deferred_one(store: Store, smtp_settings: Settings,
                                                           sink: tuple[Sink, int]) -> None:
    """Down all day: the next morning one digest goes out, carrying both days' articles."""
    handler, _ = sink
    make_list(store)
    r = subscribe(store, smtp_settings, "r@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 2)
    down = smtp_settings.with_(smtp_port=free_port())
    assert send(store, down).retry_later == 1
    add_articles(store, 2, start=AT + timedelta(hours=2), prefix="b")  # tomorrow's news
    report = send(store, smtp_settings, AT + timedelta(days=1))
    assert report.sent == 1
    rows = {d.period: d for d in store.deliveries_for(r.subscription.id)}  # type: ignore[arg-type]
    assert rows["2026-11-24"].status == "skipped"
    assert rows["2026-11-24"].error == "superseded by the 2026-11-25 digest, which carries its articles"
    assert rows["2026-11-25"].status == "sent"
    [msg] = handler.parsed()
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert all(f"Tin {p}{i}:" in text for p in "ab" for i in (1, 2)), text
    status_out = CliRunner().invoke(main, ["--db", smtp_settings.db, "outbox", "status"]).output
    assert "skipped" in status_out


def test_cli_outbox_ls_report_and_retry_unknown(cli: CliRunner, tmp_path: Path, sink: tuple[Sink, int],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    handler, port = sink
    monkeypatch.setenv("SYNDICATE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SYNDICATE_SMTP_PORT", str(port))
    monkeypatch.setenv("SYNDICATE_MAIL_SENDER_ADDRESS", "tin@news.example.org")
    from syndicate.config import load_settings

    store = open_store(tmp_path / "syndicate.db")
    settings = load_settings()
    make_list(store)
    for who in ("ok", "gone", "drop", "grey"):
        subscribe(store, settings, f"{who}@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 2)
    store.close()
    handler.reject.add("gone@example.org")
    handler.drop.add("drop@example.org")
    handler.temp_once.add("grey@example.org")
    at = "2026-11-24T08:00:00+07:00"
    result = cli.invoke(main, ["send", "--at", at])
    assert result.exit_code == 1  # a hard bounce is a failure, and it outranks unknown and deferred
    assert result.stdout == ("sent 1, failed 1, skipped 0, retry later 1, "
                             "unknown 1 (not resent; see `syndicate outbox retry --unknown`)\n")

    ls = cli.invoke(main, ["outbox", "ls"])
    lines = ls.output.splitlines()
    assert len(lines) == 4 and ls.exit_code == 0
    assert lines[0].split()[1:6] == ["sent", "1", "tin-sang", "2026-11-24", "ok@example.org"]
    assert lines[0].endswith("<digest.tin-sang.1.2026-11-24@news.example.org>")
    assert lines[1].split()[1:3] == ["failed", "1"] and "550 5.1.1 no such user here" in lines[1]
    assert lines[3].split()[1] == "queued" and "retry at 2026-11-24 01:01 UTC: SMTP refused" in lines[3]
    unknown = json.loads(cli.invoke(main, ["outbox", "ls", "--status", "unknown", "--json"]).output)
    assert [(u["email"], u["status"], u["attempts"]) for u in unknown] == [("drop@example.org", "unknown", 1)]
    assert "the relay may have it" in unknown[0]["last_reply"]
    deferred = cli.invoke(main, ["outbox", "ls", "--status", "deferred", "--email", "GREY@example.org"])
    assert deferred.output.split()[1:6] == ["queued", "1", "tin-sang", "2026-11-24", "grey@example.org"]
    assert cli.invoke(main, ["outbox", "ls", "--period", "2026-11-25"]).stderr == "no deliveries match\n"

    no = cli.invoke(main, ["outbox", "retry", "--unknown"], input="n\n")
    assert no.exit_code == 1
    assert no.stdout.startswith("1 deliveries are unknown: the relay may already have delivered them, so "
                                "resending may deliver them twice:\n  drop@example.org  tin-sang 2026-11-24  ")
    assert no.stderr == "Resend these 1? [y/N]: n\nnothing requeued\n"
    assert cli.invoke(main, ["outbox", "ls", "--status", "unknown"]).output.count("\n") == 1
    yes = cli.invoke(main, ["outbox", "retry", "--unknown", "--yes"])
    assert yes.exit_code == 0 and yes.stdout.endswith("requeued 1 deliveries; the next `syndicate send` sends them\n")

    report = json.loads(cli.invoke(main, ["outbox", "report", "--json"]).output)
    assert report == [{"list_slug": "tin-sang", "period": "2026-11-24", "planned": 4, "sent": 1, "skipped": 0,
                       "queued": 1, "deferred": 1, "sending": 0, "failed": 0, "bounced": 1, "unknown": 0,
                       "cancelled": 0, "complained": 0, "unsubscribed": 0}]
    table = cli.invoke(main, ["outbox", "report", "--list", "tin-sang"]).output.splitlines()
    assert table[0].split() == ["list", "period", "planned", "sent", "skipped", "queued", "deferred", "failed",
                                "bounced", "unknown", "complained", "unsubscribed"]
    assert table[1].split() == ["tin-sang", "2026-11-24", "4", "1", "0", "1", "1", "0", "1", "0", "0", "0"]


def test_default_workers_is_the_usable_cores_but_one_per_few_hundred_due() -> None:
    from syndicate.sender.workers import ROWS_PER_WORKER, default_workers

    cores = len(os.sched_getaffinity(0))
    assert default_workers() == cores
    assert default_workers(due=10**6) == cores
    assert default_workers(due=0) == default_workers(due=1) == default_workers(due=ROWS_PER_WORKER) == 1
    assert default_workers(due=ROWS_PER_WORKER + 1) == min(cores, 2)
