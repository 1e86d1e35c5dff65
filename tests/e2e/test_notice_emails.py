"""Confirmation and welcome emails end to end: the app on uvicorn, mail through a real aiosmtpd, `syndicate send`.

The relay is first down (a closed port on 127.0.0.1): the form still answers
as always, the confirmation waits in the outbox with the relay's error and a
log line says so; with the relay up, `syndicate send` delivers it exactly
once. Following the link sends one welcome email, never a second, and none
for a list that turned it off.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from click.testing import CliRunner
from loopback import SmtpSink, free_port, smtp_server

from syndicate.cli import main
from syndicate.config import Secret, Settings
from syndicate.mailer import parse_verp
from syndicate.models import Delivery, NewsList
from syndicate.store import Store, open_store
from syndicate.web import create_app

if TYPE_CHECKING:  # fixtures from tests/e2e/conftest.py
    from conftest import LiveServer


@dataclass
class Site:
    url: str
    settings: Settings
    store: Store
    http: httpx.Client
    sink: SmtpSink  # not listening until a test starts it on settings.smtp_port


@pytest.fixture
def site(tmp_path: Path, live_server: Callable[[], LiveServer]) -> Iterator[Site]:
    srv = live_server()
    port = free_port()  # nothing listens here until the test says so: the relay is down
    settings = Settings(
        db=str(tmp_path / "syndicate.db"), secret_key=Secret("e2e-secret-key-0123456789abcdefghij"), base_url=srv.url,
        smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=10, mail_sender_address="tin@news.example.org",
        mail_maildir=str(tmp_path / "maildir"), feeds_out=str(tmp_path / "site"), title="Tin Đà Nẵng", source="e2e",
    )
    store = open_store(settings.db)
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng Đà Nẵng", sender_address="tin@news.example.org",
                               language="vi"))
    store.create_list(NewsList(slug="quiet", name="Quiet weekly", language="en", cadence="weekly", welcome=False))
    srv.start(create_app(settings))
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        yield Site(srv.url, settings, store, http, SmtpSink(port=port))
    store.close()


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def plain(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def send(site: Site, at: datetime | None = None) -> str:
    """`syndicate send` as cron runs it (``--at`` past the first retry delay of a failed notice)."""
    s = site.settings
    env = {"SYNDICATE_DB": s.db, "SYNDICATE_SECRET_KEY": s.require_secret(), "SYNDICATE_BASE_URL": s.base_url,
           "SYNDICATE_SMTP_HOST": s.smtp_host, "SYNDICATE_SMTP_PORT": str(s.smtp_port), "SYNDICATE_CONFIG": "",
           "SYNDICATE_MAIL_SENDER_ADDRESS": s.mail_sender_address}
    args = ["send"] + (["--at", at.isoformat()] if at else [])
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def notices(site: Site, address: str, slug: str = "tin-sang") -> list[Delivery]:
    """The notice rows of a subscription; none yet while the form's background work has not run."""
    subscriber = site.store.find_subscriber(address)
    newslist = site.store.get_list(slug)
    if subscriber is None or subscriber.id is None or newslist.id is None:
        return []
    sub = site.store.find_subscription(subscriber.id, newslist.id)
    if sub is None or sub.id is None:
        return []
    return [d for d in site.store.deliveries_for(sub.id) if d.kind != "digest"]


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def follow_confirm_link(site: Site, link: str) -> httpx.Response:
    """What the person does with the link: open it and, where the page asks, press its button (a POST
    to the same URL). Works whether GET confirms or only shows the button."""
    path = link.removeprefix(site.url)
    r = site.http.get(path)
    if re.search(r"<form[^>]*method=\"post\"", r.text, re.IGNORECASE):
        r = site.http.post(path)
    return r


def subscribe_on_form(site: Site, address: str, slug: str = "tin-sang") -> httpx.Response:
    r = site.http.post("/subscribe", data={"email": address, "name": "Lan", "list": slug, "website": ""})
    assert r.status_code == 200
    return r


def test_relay_down_the_confirmation_waits_in_the_outbox_then_send_delivers_it_once(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="syndicate")
    before = datetime.now(UTC)
    answer = subscribe_on_form(site, "lan@example.org")
    assert "Hãy kiểm tra hộp thư của bạn" in answer.text  # the same answer as when the relay is up
    other = subscribe_on_form(site, "minh@example.org")
    assert answer.text.replace("lan@example.org", "@") == other.text.replace("minh@example.org", "@")

    # both background attempts over (else the cron run below could find minh's row still on its way)
    wait_until("the failed attempts to be recorded",
               lambda: all(any(d.error for d in notices(site, a)) for a in ("lan@example.org", "minh@example.org")))
    [row] = notices(site, "lan@example.org")
    assert (row.kind, row.status, row.attempts) == ("confirm", "queued", 1)
    assert "cannot connect to SMTP 127.0.0.1:" in row.error and row.next_attempt is not None

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if f"(delivery {row.id}," in r.getMessage()]

    wait_until("the log line", lambda: bool(lines()))
    [line] = lines()
    assert line.startswith(f"confirm email for subscription {row.subscription_id} not delivered (delivery {row.id}, "
                           "attempt 1): cannot connect to SMTP 127.0.0.1:")
    assert line.endswith("it stays queued and the next `syndicate send` retries it")

    with smtp_server(site.sink, site.sink.port):
        send(site, before + timedelta(minutes=5))  # cron, after the first retry delay
        sent = site.sink.wait_for(2)
        send(site, before + timedelta(minutes=30))  # and again: nothing more
    assert len(site.sink.messages) == 2
    to_lan = [(f, m) for f, r, m in sent if r == ["lan@example.org"]]
    assert len(to_lan) == 1
    envelope_from, raw = to_lan[0]
    message = parse(raw)
    assert message["Subject"] == "Xác nhận đăng ký Tin sáng Đà Nẵng"
    [row] = notices(site, "lan@example.org")
    assert row.status == "sent" and row.message_id == message["Message-ID"] and row.error == ""
    assert parse_verp(envelope_from, site.settings) == row.id  # bounces come back to this row
    assert re.search(re.escape(site.url) + r"/confirm/[A-Za-z0-9_.\-]+", plain(message))


def test_confirming_sends_one_welcome_and_none_when_the_list_turns_it_off(site: Site) -> None:
    with smtp_server(site.sink, site.sink.port):
        subscribe_on_form(site, "lan@example.org")
        [(_, _, raw)] = site.sink.wait_for(1)  # sent at once: the relay is up
        link = re.search(re.escape(site.url) + r"/confirm/[A-Za-z0-9_.\-]+", plain(parse(raw)))
        assert link
        assert follow_confirm_link(site, link.group(0)).status_code == 200
        [_, (_, rcpts, raw)] = site.sink.wait_for(2)  # the welcome, at once too
        welcome = parse(raw)
        assert rcpts == ["lan@example.org"] and welcome["Subject"] == "Chào mừng bạn đến với Tin sáng Đà Nẵng"
        assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert site.url + "/preferences/" in plain(welcome)

        assert follow_confirm_link(site, link.group(0)).status_code == 200  # again: already confirmed
        subscribe_on_form(site, "an@example.org", "quiet")
        [*_, (_, rcpts, raw)] = site.sink.wait_for(3)
        assert rcpts == ["an@example.org"]
        quiet = re.search(re.escape(site.url) + r"/confirm/[A-Za-z0-9_.\-]+", plain(parse(raw)))
        assert quiet and follow_confirm_link(site, quiet.group(0)).status_code == 200
        wait_until("the quiet list's subscription to be active", lambda: quiet_active(site))
        send(site)  # anything still queued would go now
        send(site)
    assert [r for _, r, _ in site.sink.messages] == [["lan@example.org"], ["lan@example.org"], ["an@example.org"]]
    wait_until("the welcome to be recorded", lambda: notices(site, "lan@example.org")[-1].status == "sent")
    assert [(d.kind, d.status) for d in notices(site, "lan@example.org")] == [("confirm", "sent"), ("welcome", "sent")]
    assert [d.kind for d in notices(site, "an@example.org", "quiet")] == ["confirm"]


def quiet_active(site: Site) -> bool:
    subscriber = site.store.get_subscriber("an@example.org")
    newslist = site.store.get_list("quiet")
    assert subscriber.id is not None and newslist.id is not None
    return site.store.get_subscription(subscriber.id, newslist.id).status == "active"
