"""Webhooks end to end: the app on uvicorn delivers in the background to a real receiver on 127.0.0.1.

People subscribe, confirm and unsubscribe through the web pages (the links
taken from the emails a real aiosmtpd received), an admin suppresses an
address with the CLI, and a feedback-loop report is read by `syndicate
bounces process`; the receiver gets each event signed, while a stuck
receiver never holds up a web request. A `syndicate webhook deliver`
killed mid-request leaves its claim to come back when the lease ends.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from click.testing import CliRunner
from test_webhooks import HOOK_SECRET, Receiver, check_signature, receivers, wait_until

from syndicate.cli import main
from syndicate.config import Secret, Settings
from syndicate.models import NewsList, utcnow
from syndicate.store import Store, open_store
from syndicate.subscribers import subscribe
from syndicate.web import create_app
from syndicate.webhooks import WebhookPolicy, deliver

if TYPE_CHECKING:  # fixtures from tests/e2e/conftest.py
    from conftest import LiveServer, SmtpSink

SECRET_KEY = "e2e-webhooks-secret-key-0123456789abcdef"
EVENTS = "subscribe,confirm,unsubscribe,bounce,complaint"


@dataclass
class Site:
    url: str
    settings: Settings
    store: Store
    http: httpx.Client
    sink: SmtpSink

    def cli(self, *args: str) -> str:
        s = self.settings
        env = {"SYNDICATE_DB": s.db, "SYNDICATE_SECRET_KEY": SECRET_KEY, "SYNDICATE_BASE_URL": s.base_url,
               "SYNDICATE_SMTP_HOST": s.smtp_host, "SYNDICATE_SMTP_PORT": str(s.smtp_port), "SYNDICATE_CONFIG": "",
               "SYNDICATE_MAIL_SENDER_ADDRESS": s.mail_sender_address, "SYNDICATE_FETCH_ALLOW_PRIVATE": "true"}
        done = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return done.stdout

    def mail_to(self, address: str, count: int) -> list[tuple[str, EmailMessage, bytes]]:
        """The first ``count`` messages the relay took for ``address`` (waiting for them): (envelope from, parsed, raw)."""
        out: list[tuple[str, EmailMessage, bytes]] = []

        def arrived() -> bool:
            out[:] = [(f, parse(raw), raw) for f, rcpts, raw in self.sink.messages if rcpts == [address]]
            return len(out) >= count

        wait_until(arrived, f"{count} message(s) to {address}")
        return out[:count]


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def link(message: EmailMessage, site: Site, kind: str) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    found = re.search(re.escape(site.url) + rf"/{kind}/[A-Za-z0-9_.\-]+", str(part.get_content()))
    assert found, f"no {kind} link in {message['Subject']!r}"
    return found.group(0).removeprefix(site.url)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    with receivers() as make:
        yield make


@pytest.fixture
def site(tmp_path: Path, smtp_sink: SmtpSink, live_server: Callable[[], LiveServer]) -> Iterator[Site]:
    srv = live_server()
    settings = Settings(
        db=str(tmp_path / "syndicate.db"), secret_key=Secret(SECRET_KEY), base_url=srv.url,
        smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_timeout=10, mail_sender_address="tin@news.example.org",
        mail_maildir=str(tmp_path / "maildir"), feeds_out=str(tmp_path / "site"), source="e2e",
        fetch_allow_private=True, webhooks_serve_interval=0.1, webhooks_timeout=60,
    )
    store = open_store(settings.db)
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng Đà Nẵng", sender_address="tin@news.example.org"))
    srv.start(create_app(settings))
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        yield Site(srv.url, settings, store, http, smtp_sink)
    # The server goes before the sink: its notice sender keeps an SMTP connection open between batches, and a
    # sink stopped under an open connection leaves its end unclosed (a ResourceWarning, so a failed test).
    srv.stop()
    store.close()


def test_web_and_cli_events_reach_a_receiver_signed_and_a_stuck_receiver_blocks_no_request(
        site: Site, receiver: Callable[..., Receiver], tmp_path: Path) -> None:
    hook = receiver(hold=threading.Event())
    out = site.cli("webhook", "add", hook.url, "--events", EVENTS, "--secret", HOOK_SECRET)
    assert out == f"webhook 1: {hook.url} gets subscribe, confirm, unsubscribe, bounce, complaint\n"

    def form(address: str) -> None:
        r = site.http.post("/subscribe", data={"email": address, "name": "Lan", "list": "tin-sang", "website": ""})
        assert r.status_code == 200

    def confirm(address: str) -> EmailMessage:
        [(_f, confirmation, _raw)] = site.mail_to(address, 1)
        path = link(confirmation, site, "confirm")
        assert site.http.post(path).status_code == 200
        return site.mail_to(address, 2)[1][1]  # the welcome

    form("lan@example.org")
    wait_until(hook.arrived.is_set, "the first event to reach the (stuck) receiver")
    # The receiver holds that request; every web request still answers at once.
    welcome = confirm("lan@example.org")
    assert site.http.post(link(welcome, site, "unsubscribe")).status_code == 200
    for address in ("kim@example.org", "minh@example.org"):
        form(address)
        confirm(address)
    assert len(hook.got) == 1  # nothing else went out while the first POST hung: one endpoint, in order
    assert hook.hold is not None
    hook.hold.set()

    site.cli("suppression", "add", "kim@example.org", "--reason", "bounced")
    mail_from, _welcome, raw = site.mail_to("minh@example.org", 2)[1]
    box = tmp_path / "fbl"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.report").write_bytes(arf(f"Return-Path: <{mail_from}>\r\n".encode() + raw))
    assert "1 complaints (1 subscriptions set complained)" in site.cli("bounces", "process", str(box))

    wait_until(lambda: len(hook.got) >= 9, "nine events at the receiver")
    seen = []
    for got in hook.got:
        check_signature(got)
        seen.append((got.doc["data"]["email"], got.doc["event"]))  # type: ignore[index]
    assert sorted(seen) == sorted([
        ("lan@example.org", "subscribe"), ("lan@example.org", "confirm"), ("lan@example.org", "unsubscribe"),
        ("kim@example.org", "subscribe"), ("kim@example.org", "confirm"), ("kim@example.org", "bounce"),
        ("minh@example.org", "subscribe"), ("minh@example.org", "confirm"), ("minh@example.org", "complaint"),
    ])
    assert [e for who, e in seen if who == "lan@example.org"] == ["subscribe", "confirm", "unsubscribe"]
    assert len({g.headers["syndicate-delivery"] for g in hook.got}) == 9
    wait_until(lambda: site.store.webhook_queue().counts["delivered"] == 9, "the store to record nine deliveries")


def arf(original: bytes) -> bytes:
    return (
        b"From: Feedback Loop <fbl@mail.example.net>\r\nTo: fbl@news.example.org\r\n"
        b"Subject: complaint about message\r\nMessage-ID: <fbl.9@mail.example.net>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\r\n"
        b"--b1\r\nContent-Type: message/feedback-report\r\n\r\n"
        b"Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/2.0\r\nVersion: 1\r\n\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"\r\n--b1--\r\n"
    )


def test_a_killed_deliverers_claim_is_delivered_again_after_its_lease(
        tmp_path: Path, receiver: Callable[..., Receiver]) -> None:
    settings = Settings(db=str(tmp_path / "s.db"), secret_key=Secret(SECRET_KEY), fetch_allow_private=True,
                        webhooks_timeout=60, mail_maildir=str(tmp_path / "maildir"), source="e2e")
    hook = receiver(hold=threading.Event())
    with open_store(settings.db) as store:
        store.create_list(NewsList(slug="tin-sang", name="Tin sáng"))
        from syndicate.webhooks import add_webhook

        add_webhook(store, settings, hook.url, ["subscribe"], HOOK_SECRET)
        subscribe(store, settings, "lan@example.org", "tin-sang")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(SYNDICATE_DB=settings.db, SYNDICATE_SECRET_KEY=SECRET_KEY, SYNDICATE_FETCH_ALLOW_PRIVATE="true",
               SYNDICATE_WEBHOOKS_TIMEOUT="60")
    proc = subprocess.Popen([sys.executable, "-m", "syndicate", "webhook", "deliver"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(hook.arrived.is_set, "the deliverer's POST to reach the receiver")
    finally:
        proc.send_signal(signal.SIGKILL)  # killed while the receiver holds the request: no answer recorded
        proc.communicate(timeout=120)
    assert hook.hold is not None
    hook.hold.set()
    with open_store(settings.db) as store:
        assert store.webhook_queue().counts == {"queued": 1, "delivered": 0, "failed": 0}
        assert deliver(store, settings).delivered == 0  # its lease still holds the row
        later = utcnow() + WebhookPolicy.from_settings(settings).lease + timedelta(seconds=1)
        assert deliver(store, settings, now=later).delivered == 1
        assert store.webhook_queue().counts == {"queued": 0, "delivered": 1, "failed": 0}
    first, again = hook.got
    assert first.body == again.body and first.headers["syndicate-delivery"] == again.headers["syndicate-delivery"]
    check_signature(again)
