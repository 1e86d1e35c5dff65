"""Campaigns end to end: real `syndicate` processes, aiosmtpd on 127.0.0.1, uvicorn for the click redirect.

- a test send reaches only its address and touches no outbox row;
- a campaign reaches every active subscriber exactly once and none of the suppressed, pending or
  unsubscribed ones, also after a SIGKILL of `syndicate send` mid-campaign (``SYNDICATE_TRIALS``);
- a scheduled campaign is sent by the send tick at its time and not before;
- the click redirect counts and refuses a forged token.

(Bad input and its exact errors are checked in-process, in tests/test_campaigns.py.)
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import random
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopback import smtp_server

import syndicate.campaigns as campaigns
from syndicate.config import Secret, Settings
from syndicate.models import NewsList
from syndicate.store import open_store
from syndicate.subscribers import subscribe, unsubscribe_address
from syndicate.suppressions import suppress

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_send_faults import RecordingSink, run, syndicate  # noqa: E402
from test_send_smtp import ROOT, TIMEOUT, wait_for  # noqa: E402

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
ACTIVE = 12
#: SIGKILL trials of a campaign send (each runs real processes); ``SYNDICATE_TRIALS=50`` asks for more.
TRIALS = int(os.environ.get("SYNDICATE_TRIALS", "1"))
EXCLUDED = ["pending@example.org", "left@example.org", "bounced@example.org", "complained@example.org"]


class KeepingSink(RecordingSink):
    """The fault trials' sink (each Message-ID fsynced before the 250), keeping each message too."""

    raw: list[bytes]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)
        with self.lock:
            self.raw.append(bytes(envelope.original_content))
        return reply


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[KeepingSink, int]]:
    handler = KeepingSink(tmp_path / "accepted.txt")
    handler.raw = []
    with smtp_server(handler) as port:
        yield handler, port


def populate(tmp_path: Path, port: int, n: int = ACTIVE) -> tuple[dict[str, str], Settings]:
    """``n`` active subscribers of tin-sang, and one of each kind that must never get a campaign."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(
        SYNDICATE_DB=str(tmp_path / "s.db"), SYNDICATE_SECRET_KEY="e2e-secret-key-0123456789-abcdefghij",
        SYNDICATE_SMTP_HOST="127.0.0.1", SYNDICATE_SMTP_PORT=str(port), SYNDICATE_SMTP_POOL_SIZE="2",
        SYNDICATE_MAIL_SENDER_ADDRESS="tin@news.example.org", SYNDICATE_BASE_URL="https://news.example.org",
        PYTHONPATH=str(ROOT),
    )
    settings = Settings(db=env["SYNDICATE_DB"], secret_key=Secret(env["SYNDICATE_SECRET_KEY"]),
                        base_url="https://news.example.org", mail_sender_address="tin@news.example.org", source="e2e")
    store = open_store(settings.db)
    try:
        store.create_list(NewsList(slug="tin-sang", name="Tin sáng", welcome=False))
        for i in range(n):
            subscribe(store, settings, f"r{i:03d}@example.org", "tin-sang", confirmed=True, now=T0)
        subscribe(store, settings, "pending@example.org", "tin-sang", now=T0)
        for address in EXCLUDED[1:]:
            subscribe(store, settings, address, "tin-sang", confirmed=True, now=T0)
        unsubscribe_address(store, settings, "left@example.org", "tin-sang")
        suppress(store, settings, "bounced@example.org", "bounced")
        suppress(store, settings, "complained@example.org", "complained")
        store.conn.execute("DELETE FROM deliveries")  # confirmation emails of the set-up: not under test here
        store.conn.commit()
    finally:
        store.close()
    (tmp_path / "event.md").write_text("# Hội thảo\n\nMời bạn đến [Nhà hát lớn](https://events.example.org/x).\n",
                                       encoding="utf-8")
    return env, settings


def create(env: dict[str, str], tmp_path: Path, *extra: str) -> int:
    code, out, err = run(env, "campaign", "create", "--list", "tin-sang", "--subject", "Hội thảo 5/12",
                         "--body", str(tmp_path / "event.md"), *extra)
    assert code == 0, (out, err)
    return int(out.strip())


def create_here(settings: Settings, tmp_path: Path, *, send: bool = False, **kw: Any) -> int:
    """The same campaign made in this process (the CLI's own path is the first test's): one process less."""
    store = open_store(settings.db)
    try:
        c = campaigns.create_campaign(store, settings, list_slug="tin-sang", subject="Hội thảo 5/12",
                                      body_markdown=(tmp_path / "event.md").read_text(encoding="utf-8"), **kw)
        if send:
            campaigns.send_campaign(store, settings, c.id)
        return c.id
    finally:
        store.close()


def settle(env: dict[str, str], at: str) -> None:
    for _ in range(5):
        code, out, err = run(env, "send", "--at", at)
        assert code in (0, 4), (code, out, err)
        if out.startswith("sent 0, failed 0, skipped 0, retry later 0"):
            return
    raise AssertionError("the outbox did not settle")


def subscriber_ids(db: str) -> dict[int, str]:
    store = open_store(db)
    try:
        return {int(r[0]): str(r[1]) for r in store.query("SELECT id, email FROM subscribers")}
    finally:
        store.close()


def check(db: str, sink: RecordingSink, campaign_id: int, max_unknown: int) -> dict[str, int]:
    """Exactly once: every active subscriber's row is sent (or unknown: on the wire when the run died)."""
    ids = sink.ids()
    assert len(ids) == len(set(ids)), "a Message-ID reached the relay twice"
    people = subscriber_ids(db)
    store = open_store(db)
    try:
        rows = store.query("SELECT status, message_id, subscriber_id FROM deliveries WHERE campaign_id = ?",
                           [campaign_id])
        by_status: dict[str, int] = {}
        for r in rows:
            by_status[r[0]] = by_status.get(r[0], 0) + 1
        assert sorted(people[r[2]] for r in rows) == [f"r{i:03d}@example.org" for i in range(ACTIVE)]
        assert set(by_status) <= {"sent", "unknown"}, by_status
        sent = {r[1] for r in rows if r[0] == "sent"}
        unknown = {f"<campaign.tin-sang.{campaign_id}.{r[2]}@news.example.org>" for r in rows if r[0] == "unknown"}
        assert sent <= set(ids), "recorded sent but the relay never accepted it"
        assert set(ids) <= sent | unknown, "the relay accepted it but the store lost track of it"
        assert len(unknown) <= max_unknown, unknown
        reached = {people[int(m.split(".")[3].split("@")[0])] for m in ids}
        assert not reached & set(EXCLUDED)
        if not unknown:
            assert store.get_campaign(campaign_id).status == "sent"
        return by_status
    finally:
        store.close()


AT = "2026-11-24T06:00:00+07:00"


def test_a_test_send_reaches_only_its_address(tmp_path: Path, sink: tuple[KeepingSink, int]) -> None:
    handler, port = sink
    env, settings = populate(tmp_path, port, 3)
    cid = create_here(settings, tmp_path)
    code, out, err = run(env, "campaign", "test", str(cid), "--to", "editor@example.org")
    assert code == 0, (out, err)
    [mid] = handler.ids()
    assert out == f"sent a test of campaign {cid} to editor@example.org ({mid})\n"
    store = open_store(settings.db)
    try:
        assert store.scalar("SELECT count(*) FROM deliveries") == 0
        assert store.get_campaign(cid).status == "draft"
    finally:
        store.close()


def test_campaign_reaches_every_active_subscriber_exactly_once(tmp_path: Path,
                                                               sink: tuple[KeepingSink, int]) -> None:
    handler, port = sink
    env, settings = populate(tmp_path, port)
    cid = create(env, tmp_path)
    code, out, err = run(env, "campaign", "send", str(cid))
    assert (code, out) == (0, f"campaign {cid}: {ACTIVE} message(s) queued; `syndicate send` (cron) delivers them\n"), err
    settle(env, AT)
    assert check(settings.db, handler, cid, max_unknown=0) == {"sent": ACTIVE}
    code, out, err = run(env, "campaign", "report", str(cid), "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["status"], report["planned"], report["sent"], report["failed"]) == ("sent", ACTIVE, ACTIVE, 0)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_mid_campaign_loses_and_repeats_nothing(tmp_path: Path, sink: tuple[KeepingSink, int],
                                                         trial: int) -> None:
    handler, port = sink
    env, settings = populate(tmp_path, port)
    cid = create_here(settings, tmp_path, send=True)
    at_least = random.Random(trial).randrange(0, ACTIVE)
    first = syndicate(env, "send", "--at", AT)
    wait_for(lambda: len(handler.ids()) >= at_least or first.poll() is not None)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=TIMEOUT)
    wait_for(handler.idle)
    settle(env, AT)
    check(settings.db, handler, cid, max_unknown=2)


def test_scheduled_campaign_goes_with_the_send_tick_at_its_time_not_before(
        tmp_path: Path, sink: tuple[KeepingSink, int]) -> None:
    handler, port = sink
    env, settings = populate(tmp_path, port, 4)
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    cid = create_here(settings, tmp_path, send_at=when)
    code, out, err = run(env, "send", "--at", (when - timedelta(seconds=1)).isoformat())
    assert code == 0, (out, err)
    assert handler.ids() == []
    code, out, err = run(env, "send", "--at", when.isoformat())
    assert code == 0, (out, err)
    assert len(handler.ids()) == 4
    store = open_store(settings.db)
    try:
        assert store.get_campaign(cid).status == "sent"
    finally:
        store.close()


def test_click_redirect_counts_and_refuses_a_forged_token(tmp_path: Path, sink: tuple[KeepingSink, int],
                                                          live_server: Any) -> None:
    from syndicate.web import create_app

    handler, port = sink
    env, settings = populate(tmp_path, port, 2)
    store = open_store(settings.db)
    try:
        campaigns.set_tracking(store, "tin-sang", track_clicks=True)
    finally:
        store.close()
    cid = create_here(settings, tmp_path, send=True)
    settle(env, AT)
    msg = email.message_from_bytes(handler.raw[0], policy=email.policy.default)
    body = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "events.example.org" not in body
    token = body.split("https://news.example.org/r/")[1].split('"')[0]
    srv = live_server()
    srv.start(create_app(settings))
    with httpx.Client(base_url=srv.url, follow_redirects=False, timeout=TIMEOUT) as client:
        r = client.get(f"/r/{token}")
        assert (r.status_code, r.headers["location"]) == (302, "https://events.example.org/x")
        assert client.get(f"/r/{token}").status_code == 302
        assert client.get(f"/r/{token[:-3]}abc").status_code == 404
        assert client.get("/r/WzEsMV0.forged").status_code == 404
    store = open_store(settings.db)
    try:
        [link] = store.campaign_report(cid).links
        assert (link.url, link.clicks, link.people) == ("https://events.example.org/x", 2, None)
    finally:
        store.close()
