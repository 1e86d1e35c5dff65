"""The sender against a real aiosmtpd server on 127.0.0.1: headers, retries,
bounces, dropped connections, concurrent runs, the lock and the CLI."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dkim
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from loopback import smtp_server

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
        self.drop: set[str] = set()
        self.delay = 0.0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
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
    assert msg["Subject"] == "Tin sáng Sài Gòn: Thứ Ba, 24/11/2026"
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


def test_dropped_connection_is_temporary(store: Store, smtp_settings: Settings, sink: tuple[Sink, int]) -> None:
    handler, _ = sink
    make_list(store)
    subscribe(store, smtp_settings, "drop@example.org", "tin-sang", confirmed=True, now=T0)
    subscribe(store, smtp_settings, "ok@example.org", "tin-sang", confirmed=True, now=T0)
    add_articles(store, 1)
    handler.drop.add("drop@example.org")
    report = send(store, smtp_settings)
    assert (report.sent, report.retry_later, report.failed) == (1, 1, 0)
    handler.drop.clear()
    again = send(store, smtp_settings, AT + timedelta(minutes=3))
    assert again.sent == 1
    assert sorted(r[0] for _f, r, _b in handler.messages) == ["drop@example.org", "ok@example.org"]


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
    assert "Xin chào Lan," in preview.output and "Đây là 24 tin mới" in preview.output and "và 4 tin khác" in preview.output
    cli.invoke(main, ["digest", "preview", "lan@example.org", "--list", "tin-sang", "--at", at,
                      "--format", "eml", "--out", "d.eml"])
    eml = email.message_from_bytes((tmp_path / "d.eml").read_bytes(), policy=email.policy.default)
    assert eml["Subject"] == "Tin sáng Sài Gòn: Thứ Ba, 24/11/2026"
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
    [job] = jobs
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
