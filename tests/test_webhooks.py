"""Webhooks: events recorded by the store's triggers, delivered signed to a real HTTP receiver on 127.0.0.1.

The receiver is ``http.server`` on a loopback port; every request it gets is
checked against the HMAC a receiver would compute. Clocks are passed in
(``now=``) so retries and lifetimes are tested without waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

import syndicate.campaigns as campaigns
from syndicate import subscribers as subs
from syndicate.cli import main
from syndicate.config import Secret, Settings
from syndicate.errors import InputError
from syndicate.mailer import MemoryTransport
from syndicate.models import NewsList, utcnow
from syndicate.sender import run_send
from syndicate.store import Store, open_store
from syndicate.webhooks import WebhookPolicy, add_webhook, deliver, deliver_async, sign, verify

SECRET_KEY = "webhooks-test-secret-0123456789-abcdefghij"
HOOK_SECRET = "whsec_receiver-test-secret-1234"


# -- a real receiver ------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def doc(self) -> dict[str, object]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """A threaded HTTP server on 127.0.0.1 that records each POST and answers from ``statuses`` (then 200)."""

    statuses: list[int] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)
    hold: threading.Event | None = None  # when set up, each request waits for it before answering
    arrived: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.got.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(120)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@contextmanager
def receivers() -> Iterator[Callable[..., Receiver]]:
    """A factory of started receivers, all stopped (sockets closed) when the block ends."""
    made: list[Receiver] = []

    def make(**kw: object) -> Receiver:
        r = Receiver(**kw).start()  # type: ignore[arg-type]
        made.append(r)
        return r

    try:
        yield make
    finally:
        for r in made:
            r.stop()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    with receivers() as make:
        yield make


def wait_until(test: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll for a condition (never a fixed sleep); fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def check_signature(r: Received, secret: str = HOOK_SECRET) -> None:
    """What a receiver does: recompute HMAC-SHA256 over "t.body" and compare; t must be recent."""
    parts = dict(p.split("=", 1) for p in r.headers["syndicate-signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + r.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"]), "bad signature"
    assert abs(time.time() - int(parts["t"])) < 300
    assert r.headers["syndicate-event"] == r.doc["event"]
    assert r.headers["syndicate-delivery"] == r.doc["id"]
    assert r.headers["content-type"] == "application/json; charset=utf-8"


# -- a store with a list --------------------------------------------------------------


def make_settings(tmp_path: Path, **kw: object) -> Settings:
    base: dict[str, object] = dict(
        db=str(tmp_path / "s.db"), secret_key=Secret(SECRET_KEY), base_url="https://news.example.org",
        mail_maildir=str(tmp_path / "maildir"), fetch_allow_private=True, webhooks_timeout=20.0,
    )
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings.db)
    subs.create_list(s, NewsList(slug="sang", name="Tin sáng"))
    yield s
    s.close()


def queued(store: Store) -> list[tuple[str, str, str]]:
    """(event, email, status) of every queued row, in order."""
    return [(event, str(p.get("email", "")), status) for _id, _w, event, status, p in store.webhook_deliveries()]


def life_of_an_address(store: Store, settings: Settings, email: str = "an@example.org") -> None:
    """subscribe -> confirm -> unsubscribe, through the library calls the web pages and CLI use."""
    result = subs.subscribe(store, settings, email, "sang", source="web")
    assert result.subscription.id is not None and result.subscriber.id is not None
    token = subs.make_token(settings, "confirm", result.subscriber.id, result.newslist.id or 0, email)
    subs.confirm(store, settings, token)
    subs.unsubscribe_address(store, settings, email, "sang", source="web")


# -- recording: the triggers ------------------------------------------------------------


def test_each_status_change_queues_one_event_per_webhook_that_wants_it(store: Store, settings: Settings) -> None:
    every, _ = add_webhook(store, settings, "https://a.example.org/h", ["subscribe", "confirm", "unsubscribe",
                                                                       "bounce", "complaint"])
    leaves, _ = add_webhook(store, settings, "https://b.example.org/h", ["unsubscribe", "complaint"])
    life_of_an_address(store, settings)
    rows = store.webhook_deliveries()
    assert [(w, e) for _id, w, e, _s, _p in rows] == [
        (every.id, "subscribe"), (every.id, "confirm"), (every.id, "unsubscribe"), (leaves.id, "unsubscribe")]
    payload = rows[1][4]
    assert payload["email"] == "an@example.org" and payload["list"] == "sang" and payload["list_name"] == "Tin sáng"
    assert payload["status"] == "active" and payload["previous_status"] == "pending"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", str(payload["at"]))
    assert rows[0][4]["previous_status"] is None


def test_bounce_and_complaint_are_events_whoever_records_them(store: Store, settings: Settings) -> None:
    add_webhook(store, settings, "https://a.example.org/h", ["bounce", "complaint"])
    a = subs.subscribe(store, settings, "an@example.org", "sang", confirmed=True)
    b = subs.subscribe(store, settings, "binh@example.org", "sang", confirmed=True)
    assert a.subscription.id is not None and b.subscription.id is not None
    for _ in range(3):  # the third hard bounce makes the subscription bounced
        store.record_hard_bounce(a.subscription.id, 3, detail="550 no such user")
    store.record_subscription_complaint(b.subscription.id, "abuse report")
    assert queued(store) == [("bounce", "an@example.org", "queued"), ("complaint", "binh@example.org", "queued")]
    bounce = store.webhook_deliveries()[0][4]
    assert bounce["hard_bounces"] == 3 and bounce["status"] == "bounced" and bounce["previous_status"] == "active"


def test_no_event_is_queued_when_no_webhook_wants_it(store: Store, settings: Settings) -> None:
    life_of_an_address(store, settings, "an@example.org")
    assert store.webhook_deliveries() == []  # no webhook at all
    add_webhook(store, settings, "https://a.example.org/h", ["bounce"])
    life_of_an_address(store, settings, "binh@example.org")
    assert store.webhook_deliveries() == []  # one that wants other events
    hook, _ = add_webhook(store, settings, "https://b.example.org/h", ["confirm"])
    store.set_webhook_enabled(hook.id, False, "test")
    life_of_an_address(store, settings, "chi@example.org")
    assert store.webhook_deliveries() == []  # a disabled one


def test_erasing_a_subscriber_removes_the_queued_events_that_carry_their_address(
        store: Store, settings: Settings) -> None:
    add_webhook(store, settings, "https://a.example.org/h", ["subscribe", "confirm", "unsubscribe"])
    life_of_an_address(store, settings, "an@example.org")
    subs.subscribe(store, settings, "binh@example.org", "sang")
    subs.erase(store, settings, "an@example.org")
    assert queued(store) == [("subscribe", "binh@example.org", "queued")]


def test_campaign_sent_is_one_event_when_the_last_row_of_a_campaign_is_settled(store: Store,
                                                                               settings: Settings) -> None:
    add_webhook(store, settings, "https://a.example.org/h", ["campaign.sent"])
    for i in range(3):
        subs.subscribe(store, settings, f"p{i}@example.org", "sang", confirmed=True)
    c = campaigns.create_campaign(store, settings, list_slug="sang", subject="Lễ hội hoa", body_markdown="Xin chào")
    now = utcnow()
    assert campaigns.send_campaign(store, settings, c.id, now) == 3
    assert [e for _i, _w, e, _s, _p in store.webhook_deliveries()] == []  # planned, not sent yet
    report = run_send(store, settings, MemoryTransport(), now=now, lock=False)
    assert report.failed == 0 and store.get_campaign(c.id).status == "sent"
    run_send(store, settings, MemoryTransport(), now=now + timedelta(minutes=5), lock=False)  # nothing new
    rows = store.webhook_deliveries()
    assert [(e, p["subject"], p["list"], p["campaign_id"]) for _i, _w, e, _s, p in rows] == [
        ("campaign.sent", "Lễ hội hoa", "sang", c.id)]


# -- delivering ---------------------------------------------------------------------------


def test_events_arrive_signed_and_are_delivered_once(store: Store, settings: Settings,
                                                      receiver: Callable[..., Receiver]) -> None:
    r = receiver()
    add_webhook(store, settings, r.url, ["subscribe", "confirm", "unsubscribe"], HOOK_SECRET)
    life_of_an_address(store, settings)
    report = deliver(store, settings)
    assert (report.delivered, report.retried, report.failed) == (3, 0, 0)
    assert [g.doc["event"] for g in r.got] == ["subscribe", "confirm", "unsubscribe"]
    for g in r.got:
        check_signature(g)
        assert verify(HOOK_SECRET, g.headers["syndicate-signature"], g.body)
        assert not verify("whsec_another-secret-entirely", g.headers["syndicate-signature"], g.body)
        assert g.headers["user-agent"].startswith("syndicate/")
    assert r.got[1].doc["data"]["email"] == "an@example.org"  # type: ignore[index]
    assert deliver(store, settings).delivered == 0  # nothing twice
    assert len(r.got) == 3
    assert {s for *_x, s, _p in store.webhook_deliveries()} == {"delivered"}


def test_a_500_is_retried_with_backoff_and_later_succeeds(store: Store, settings: Settings,
                                                          receiver: Callable[..., Receiver]) -> None:
    r = receiver(statuses=[500, 503])
    add_webhook(store, settings, r.url, ["subscribe"], HOOK_SECRET)
    subs.subscribe(store, settings, "an@example.org", "sang")
    t0 = utcnow()
    assert deliver(store, settings, now=t0).retried == 1
    assert deliver(store, settings, now=t0 + timedelta(seconds=29)).summary() == \
        "delivered 0, retry later 0, failed 0"  # not due before retry_base_seconds (30)
    assert deliver(store, settings, now=t0 + timedelta(seconds=31)).retried == 1  # second failure: wait 60 s
    assert deliver(store, settings, now=t0 + timedelta(seconds=31 + 59)).delivered == 0
    assert deliver(store, settings, now=t0 + timedelta(seconds=31 + 61)).delivered == 1
    assert len(r.got) == 3 and len({g.body for g in r.got}) == 1  # the same bytes each time
    assert len({g.headers["syndicate-delivery"] for g in r.got}) == 1
    for g in r.got:
        check_signature(g)
    log = store.webhook_attempts()
    assert [(a.attempt, a.status_code, a.outcome, a.error) for a in log] == [
        (3, 200, "delivered", ""), (2, 503, "retry", "HTTP 503"), (1, 500, "retry", "HTTP 500")]


def test_an_event_is_given_up_after_its_lifetime(tmp_path: Path, receiver: Callable[..., Receiver]) -> None:
    settings = make_settings(tmp_path, webhooks_lifetime_hours=1.0, webhooks_max_retry_minutes=20.0)
    r = receiver(statuses=[500] * 20)
    with open_store(settings.db) as store:
        subs.create_list(store, NewsList(slug="sang", name="Tin sáng"))
        add_webhook(store, settings, r.url, ["subscribe"], HOOK_SECRET)
        subs.subscribe(store, settings, "an@example.org", "sang")
        created = store.query_one("SELECT created FROM webhook_deliveries")
        assert created is not None
        now = datetime.fromisoformat(created[0])
        start, waits = now, []
        for _ in range(30):
            report = deliver(store, settings, now=now)
            if report.failed:
                break
            upcoming = store.webhook_queue(now).next_attempt
            assert upcoming is not None
            waits.append(int((upcoming - now).total_seconds()))
            now = upcoming
        # doubling from 30 s, capped at 20 minutes, the last one cut to the end of the hour
        assert waits == [30, 60, 120, 240, 480, 960, 1200, 510]
        assert now - start == timedelta(hours=1)
        assert report.failed == 1 and report.exit_code == 1
        last = store.webhook_attempts(1)[0]
        assert (last.outcome, last.attempt, last.error) == ("failed", 9, "HTTP 500; gave up after 9 attempts in 1 h")
        assert deliver(store, settings, now=now + timedelta(hours=1)).summary() == "delivered 0, retry later 0, failed 0"
        assert len(r.got) == 9


def test_410_gone_disables_the_webhook(store: Store, settings: Settings, receiver: Callable[..., Receiver]) -> None:
    r = receiver(statuses=[410])
    hook, _ = add_webhook(store, settings, r.url, ["subscribe"], HOOK_SECRET)
    subs.subscribe(store, settings, "an@example.org", "sang")
    subs.subscribe(store, settings, "binh@example.org", "sang")
    report = deliver(store, settings)
    assert report.failed == 1 and report.disabled == [hook.id]
    assert report.summary() == f"delivered 0, retry later 1, failed 1; disabled webhook {hook.id} (the receiver answered 410 Gone)"
    assert not store.get_webhook(hook.id).enabled
    assert store.get_webhook(hook.id).disabled_reason.startswith("HTTP 410 Gone: webhook disabled on ")
    subs.subscribe(store, settings, "chi@example.org", "sang")
    assert deliver(store, settings).summary() == "delivered 0, retry later 0, failed 0"
    assert len(r.got) == 1 and len(store.webhook_deliveries()) == 2  # nothing new queued for a disabled hook
    store.set_webhook_enabled(hook.id, True)
    assert deliver(store, settings).delivered == 1  # binh's event was kept and goes now


def test_a_private_address_is_refused_without_allow_private(tmp_path: Path,
                                                            receiver: Callable[..., Receiver]) -> None:
    r = receiver()
    allowed = make_settings(tmp_path)
    with open_store(allowed.db) as store:
        subs.create_list(store, NewsList(slug="sang", name="Tin sáng"))
        with pytest.raises(InputError) as refused:
            add_webhook(store, allowed.with_(fetch_allow_private=False), r.url, ["subscribe"])
        assert str(refused.value) == (f"{r.url!r}: 127.0.0.1 is not a public address "
                                      "(set [fetch] allow_private = true to deliver to it)")
        # A name that resolves to loopback passes the literal check, and the fetcher refuses it at delivery.
        by_name = r.url.replace("127.0.0.1", "localhost")
        add_webhook(store, allowed.with_(fetch_allow_private=False), by_name, ["subscribe"], HOOK_SECRET)
        subs.subscribe(store, allowed, "an@example.org", "sang")
        report = deliver(store, allowed.with_(fetch_allow_private=False))
        assert report.retried == 1 and r.got == []
        error = store.webhook_attempts(1)[0].error
        assert re.fullmatch(r"refused: localhost \((127\.0\.0\.1|::1)\) is a loopback address "
                            r"\(set \[fetch\] allow_private = true to allow it\)", error), error


def test_a_slow_receiver_does_not_hold_up_the_others(tmp_path: Path, receiver: Callable[..., Receiver]) -> None:
    settings = make_settings(tmp_path, webhooks_concurrency=2)
    slow = receiver(hold=threading.Event())
    fast = receiver()
    with open_store(settings.db) as store:
        subs.create_list(store, NewsList(slug="sang", name="Tin sáng"))
        add_webhook(store, settings, slow.url, ["subscribe"], HOOK_SECRET)
        add_webhook(store, settings, fast.url, ["subscribe"], HOOK_SECRET)
        for n in range(5):
            subs.subscribe(store, settings, f"p{n}@example.org", "sang")
    done: list[object] = []

    def run() -> None:
        with open_store(settings.db) as own:
            done.append(deliver(own, settings))

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_until(lambda: len(fast.got) == 5, "the fast receiver to get all 5 events while the slow one hangs")
        assert len(slow.got) == 1  # its events go one after another: the first is still waiting
    finally:
        assert slow.hold is not None
        slow.hold.set()
        worker.join(120)
    assert done and done[0].delivered == 10  # type: ignore[attr-defined]


def test_a_failing_endpoint_is_not_retried_in_the_same_pass(store: Store, settings: Settings,
                                                            receiver: Callable[..., Receiver]) -> None:
    down = receiver(statuses=[500] * 10)
    add_webhook(store, settings, down.url, ["subscribe"], HOOK_SECRET)
    for n in range(4):
        subs.subscribe(store, settings, f"p{n}@example.org", "sang")
    report = deliver(store, settings)
    assert (report.retried, report.postponed, len(down.got)) == (1, 3, 1)
    assert report.summary() == "delivered 0, retry later 4, failed 0"
    assert deliver(store, settings).summary() == "delivered 0, retry later 3, failed 0"  # one more try per pass
    assert len(down.got) == 2


def test_an_expired_lease_is_claimed_again_and_a_live_one_is_not(store: Store, settings: Settings) -> None:
    add_webhook(store, settings, "https://a.example.org/h", ["subscribe"], HOOK_SECRET)
    subs.subscribe(store, settings, "an@example.org", "sang")
    policy = WebhookPolicy.from_settings(settings)
    now = utcnow()
    first = store.claim_webhook_deliveries("dead", now, policy.lease, 10, 10)
    assert len(first) == 1
    assert store.claim_webhook_deliveries("other", now + policy.lease - timedelta(seconds=1), policy.lease, 10, 10) == []
    again = store.claim_webhook_deliveries("other", now + policy.lease, policy.lease, 10, 10)
    assert [d.id for d in again] == [first[0].id]


def test_a_stalled_deliverers_late_answer_counts_only_if_it_is_a_delivery(store: Store, settings: Settings) -> None:
    from syndicate.store.webhooks import WebhookOutcome

    add_webhook(store, settings, "https://a.example.org/h", ["subscribe"], HOOK_SECRET)
    subs.subscribe(store, settings, "an@example.org", "sang")
    subs.subscribe(store, settings, "binh@example.org", "sang")
    lease = WebhookPolicy.from_settings(settings).lease
    now = utcnow() + timedelta(seconds=5)
    first, second = store.claim_webhook_deliveries("stalled", now, lease, 10, 10)
    later = now + lease
    assert len(store.claim_webhook_deliveries("fresh", later, lease, 10, 10)) == 2
    retry = WebhookOutcome(first.id, "retry", later, 500, "HTTP 500", next_attempt=later + timedelta(hours=1))
    assert not store.finish_webhook_delivery(first, "stalled", retry)  # the fresh claim's word counts
    assert store.finish_webhook_delivery(second, "stalled", WebhookOutcome(second.id, "delivered", later, 200))
    assert [s for _i, _w, _e, s, _p in store.webhook_deliveries()] == ["queued", "delivered"]
    assert store.query_one("SELECT lease_owner FROM webhook_deliveries WHERE id = ?", [first.id])[0] == "fresh"


def test_serve_background_task_delivers_and_stops(tmp_path: Path, receiver: Callable[..., Receiver]) -> None:
    from syndicate.webhooks import run_in_background

    settings = make_settings(tmp_path, webhooks_serve_interval=0.05)
    r = receiver()
    with open_store(settings.db) as store:
        subs.create_list(store, NewsList(slug="sang", name="Tin sáng"))
        add_webhook(store, settings, r.url, ["subscribe"], HOOK_SECRET)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_in_background(settings, stop))
        with open_store(settings.db) as store:
            await asyncio.to_thread(subs.subscribe, store, settings, "an@example.org", "sang")
        deadline = time.monotonic() + 120
        while not r.got and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 120)

    asyncio.run(scenario())
    assert [g.doc["event"] for g in r.got] == ["subscribe"]
    check_signature(r.got[0])


def test_deliver_async_with_nothing_due_takes_no_write_lock(store: Store, settings: Settings,
                                                             receiver: Callable[..., Receiver]) -> None:
    r = receiver()
    add_webhook(store, settings, r.url, ["subscribe"], HOOK_SECRET)
    subs.subscribe(store, settings, "an@example.org", "sang")
    assert deliver(store, settings).delivered == 1  # a finished row and an attempt, younger than keep_days
    other = open_store(settings.db)
    try:
        other.conn.execute("BEGIN IMMEDIATE")  # someone else is writing (a send, an import)
        report = asyncio.run(deliver_async(store, WebhookPolicy.from_settings(settings)))
        assert report.summary() == "delivered 0, retry later 0, failed 0"
    finally:
        other.conn.rollback()
        other.close()


# -- signing ---------------------------------------------------------------------------------


def test_sign_and_verify_reject_old_and_tampered_requests() -> None:
    body = b'{"event":"confirm"}'
    header = sign(HOOK_SECRET, 1_700_000_000, body)
    assert header == "t=1700000000,v1=" + hmac.new(HOOK_SECRET.encode(), b"1700000000." + body,
                                                   hashlib.sha256).hexdigest()
    assert verify(HOOK_SECRET, header, body, now=1_700_000_100)
    assert not verify(HOOK_SECRET, header, body, now=1_700_000_400)  # a replay, 400 s later
    assert not verify(HOOK_SECRET, header, body + b" ", now=1_700_000_000)
    assert not verify(HOOK_SECRET, "t=x,v1=00", body)
    assert not verify(HOOK_SECRET, "", body)


# -- the CLI ----------------------------------------------------------------------------------


def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    env = {"SYNDICATE_SECRET_KEY": SECRET_KEY, "SYNDICATE_FETCH_ALLOW_PRIVATE": "true"}
    done = runner.invoke(main, ["--db", settings.db, *args], env=env, catch_exceptions=False)
    return done.exit_code, done.stdout, done.stderr


def test_cli_add_ls_log_remove(store: Store, settings: Settings, receiver: Callable[..., Receiver]) -> None:
    r = receiver(statuses=[500])
    code, out, _ = cli(settings, "webhook", "add", r.url, "--events", "subscribe,confirm")
    assert code == 0
    first, second = out.splitlines()
    assert first == f"webhook 1: {r.url} gets subscribe, confirm"
    secret = second.rsplit(" ", 1)[1]
    assert second == f"signing secret (shown only now; receivers check Syndicate-Signature with it): {secret}"
    assert secret.startswith("whsec_") and len(secret) > 40
    code, out, _ = cli(settings, "webhook", "add", "https://b.example.org/h", "--events", "bounce",
                       "--secret", "a-secret-of-my-own-choice")
    assert (code, out) == (0, "webhook 2: https://b.example.org/h gets bounce\n")  # a given secret is not echoed
    subs.subscribe(store, settings, "an@example.org", "sang")
    code, out, _ = cli(settings, "webhook", "deliver")
    assert (code, out) == (0, "delivered 0, retry later 1, failed 0\n")
    check_signature(r.got[0], secret)
    code, out, _ = cli(settings, "webhook", "ls")
    assert out.splitlines() == [
        "  id  state     queued    done  failed  url  (events)",
        f"   1  on             1       0       0  {r.url}  (subscribe,confirm)",
        "   2  on             0       0       0  https://b.example.org/h  (bounce)",
    ]
    listed = json.loads(cli(settings, "webhook", "ls", "--json")[1])
    assert [h["events"] for h in listed] == [["subscribe", "confirm"], ["bounce"]] and "secret" not in listed[0]
    log = json.loads(cli(settings, "webhook", "log", "--json")[1])
    assert [(a["event"], a["url"], a["status_code"], a["attempt"], a["outcome"]) for a in log] == [
        ("subscribe", r.url, 500, 1, "retry")]
    code, out, _ = cli(settings, "webhook", "log", "--limit", "5")
    assert re.fullmatch(rf"\S+  #1   subscribe     try 1   500  retry     {re.escape(r.url)}  \(HTTP 500\)\n", out)
    assert cli(settings, "webhook", "remove", "1")[1] == f"removed webhook 1 ({r.url}); dropped 1 queued event\n"
    assert cli(settings, "webhook", "ls")[1].count("\n") == 2


def test_cli_errors_name_the_input(store: Store, settings: Settings) -> None:
    assert cli(settings, "webhook", "add", "ftp://x.example.org/", "--events", "confirm")[:3:2] == (
        65, "error: 'ftp://x.example.org/': a webhook URL must start with http:// or https://\n")
    assert cli(settings, "webhook", "add", "https://x.example.org/", "--events", "confirm,bounced")[:3:2] == (
        65, "error: --events: 'bounced' is not an event; choose from subscribe, confirm, unsubscribe, bounce, "
            "complaint, campaign.sent\n")
    assert cli(settings, "webhook", "add", "https://x.example.org/", "--events", "confirm", "--secret", "short")[:3:2] == (
        65, "error: --secret is 5 characters long; use at least 16 (or leave it out to get one)\n")
    assert cli(settings, "webhook", "add", "https://x.example.org/a b", "--events", "confirm")[:3:2] == (
        65, "error: 'https://x.example.org/a b': a URL may not contain spaces or control characters "
            "(percent-encode them)\n")
    assert cli(settings, "webhook", "add", "https://[::1/", "--events", "confirm")[:3:2] == (
        65, "error: 'https://[::1/' is not a valid URL\n")
    assert cli(settings, "webhook", "remove", "9")[:3:2] == (1, "error: no webhook with id 9 (see `syndicate webhook ls`)\n")
    assert store.all_webhooks() == []


# -- the README --------------------------------------------------------------------------------


def readme_receiver_snippet() -> str:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("## Webhooks", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)[0]


def test_readme_receiver_snippet_verifies_a_real_delivery(store: Store, settings: Settings,
                                                          receiver: Callable[..., Receiver]) -> None:
    namespace: dict[str, object] = {}
    exec(compile(readme_receiver_snippet(), "README.md (Webhooks)", "exec"), namespace)
    check = namespace["verify_webhook"]
    r = receiver()
    add_webhook(store, settings, r.url, ["subscribe"], HOOK_SECRET)
    subs.subscribe(store, settings, "an@example.org", "sang")
    deliver(store, settings)
    got = r.got[0]
    event = check(got.body, got.headers["syndicate-signature"], HOOK_SECRET)  # type: ignore[operator]
    assert event["event"] == "subscribe" and event["data"]["email"] == "an@example.org"
    with pytest.raises(ValueError):
        check(got.body + b" ", got.headers["syndicate-signature"], HOOK_SECRET)  # type: ignore[operator]
    with pytest.raises(ValueError):
        check(got.body, got.headers["syndicate-signature"], "whsec_wrong-secret-000000")  # type: ignore[operator]
    stale = sign(HOOK_SECRET, int(time.time()) - 3600, got.body)
    with pytest.raises(ValueError):
        check(got.body, stale, HOOK_SECRET)  # type: ignore[operator]
