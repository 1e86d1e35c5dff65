"""``syndicate send`` as real processes against a real aiosmtpd sink on 127.0.0.1:
killed with SIGKILL mid-send then rerun (no duplicate, no silent loss), and two
runs started at once (each digest sent once)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from loopback import smtp_server

from syndicate.config import Secret, Settings
from syndicate.models import Article, NewsList
from syndicate.store import open_store
from syndicate.subscribers import subscribe

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
AT = "2026-11-24T08:00:00+07:00"
ROOT = Path(__file__).resolve().parents[2]


class SlowSink:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.messages: list[bytes] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        with self.lock:
            self.messages.append(envelope.original_content)
        return "250 OK"

    def ids(self) -> list[str]:
        with self.lock:
            raw = list(self.messages)
        return [str(email.message_from_bytes(m, policy=email.policy.default)["Message-ID"]) for m in raw]

    def recipients(self) -> list[str]:
        with self.lock:
            raw = list(self.messages)
        return [email.message_from_bytes(m, policy=email.policy.default)["To"].addresses[0].addr_spec for m in raw]


@pytest.fixture
def slow_sink() -> Iterator[tuple[SlowSink, int]]:
    sink = SlowSink(0.03)
    with smtp_server(sink) as port:
        yield sink, port


def populate(tmp_path: Path, port: int, n: int) -> tuple[dict[str, str], Settings]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(
        SYNDICATE_DB=str(tmp_path / "s.db"), SYNDICATE_SECRET_KEY="e2e-secret-key-0123456789",
        SYNDICATE_SMTP_HOST="127.0.0.1", SYNDICATE_SMTP_PORT=str(port), SYNDICATE_SMTP_POOL_SIZE="2",
        SYNDICATE_MAIL_SENDER_ADDRESS="tin@news.example.org", SYNDICATE_BASE_URL="https://news.example.org",
        PYTHONPATH=str(ROOT),
    )
    settings = Settings(db=env["SYNDICATE_DB"], secret_key=Secret(env["SYNDICATE_SECRET_KEY"]),
                        base_url="https://news.example.org", source="e2e")
    store = open_store(settings.db)
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng"))
    for i in range(n):
        subscribe(store, settings, f"r{i:03d}@example.org", "tin-sang", confirmed=True, now=T0)
    store.upsert_articles([
        Article(guid=f"g{i}", title=f"Tin {i}", slug=f"tin-{i}", published=T0 + timedelta(hours=i), category="Xã hội")
        for i in range(1, 4)
    ])
    store.close()
    return env, settings


def syndicate(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "syndicate", *args], env=env, cwd=str(Path(env["SYNDICATE_DB"]).parent),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(cond: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_sigkill_mid_send_then_rerun(tmp_path: Path, slow_sink: tuple[SlowSink, int]) -> None:
    sink, port = slow_sink
    n = 80
    env, settings = populate(tmp_path, port, n)
    first = syndicate(env, "send", "--at", AT)
    wait_for(lambda: len(sink.messages) >= 15)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL
    time.sleep(0.2)  # let the sink finish whatever was already on the wire
    killed_at = len(sink.messages)
    assert killed_at < n, "the run finished before the kill; make the sink slower"
    second = syndicate(env, "send", "--at", AT)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    ids = sink.ids()
    assert len(ids) == len(set(ids)), "a digest was sent twice"
    store = open_store(settings.db)
    rows = store.query(
        "SELECT s.email, d.status FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
    )
    status = {r[0]: r[1] for r in rows}
    assert len(status) == n
    received = set(sink.recipients())
    unknown = {e for e, st in status.items() if st == "unknown"}
    assert {e for e, st in status.items() if st == "sent"} <= received
    assert set(status.values()) <= {"sent", "unknown"}
    assert received | unknown == set(status), "a digest was lost without being marked unknown"
    # only what was on the wire at the kill: at most the run's concurrency (2 x a pool of 2 per
    # drain, one drain per core); the journal told the rerun which claims never left and which
    # the server had accepted
    from syndicate.sender.workers import default_workers

    assert 0 < len(unknown) <= 4 * default_workers(), unknown
    assert out.startswith("sent ") and f"unknown {len(unknown)} (not resent" in out
    assert not list(Path(f"{settings.db}.journal").glob("*.log")), "a journal outlived its recovery"
    # a third run sends nothing; the admin can resend the unknown ones deliberately
    third = syndicate(env, "send", "--at", AT)
    assert third.communicate(timeout=60)[0].startswith("sent 0,")
    assert third.returncode == 0
    store.close()


def test_two_runs_at_once_send_each_digest_once(tmp_path: Path, slow_sink: tuple[SlowSink, int]) -> None:
    sink, port = slow_sink
    sink.delay = 0.25  # 60 messages over 2 connections per drain, a drain per core: 3.75 s on 2 cores,
    # ample for the second run to start on a busy machine
    env, settings = populate(tmp_path, port, 60)
    first = syndicate(env, "send", "--at", AT)
    wait_for(lambda: len(sink.messages) >= 1)
    second = syndicate(env, "send", "--at", AT)
    err2 = second.communicate(timeout=60)[1]
    out1 = first.communicate(timeout=60)[0]
    assert second.returncode == 75
    assert err2.startswith("error: another `syndicate send` is running (pid ")
    assert out1 == "sent 60, failed 0, skipped 0, retry later 0\n"
    ids = sink.ids()
    assert len(ids) == 60 and len(set(ids)) == 60


def test_sigterm_records_what_was_sent_and_gives_back_the_rest(tmp_path: Path,
                                                               slow_sink: tuple[SlowSink, int]) -> None:
    sink, port = slow_sink
    n = 60
    env, settings = populate(tmp_path, port, n)
    first = syndicate(env, "send", "--at", AT)
    wait_for(lambda: len(sink.messages) >= 10)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=20)
    assert first.returncode == 128 + signal.SIGTERM
    store = open_store(settings.db)
    states = {r[0] for r in store.query("SELECT status FROM deliveries")}
    assert "sending" not in states and states <= {"sent", "queued", "unknown"}
    second = syndicate(env, "send", "--at", AT)
    out = second.communicate(timeout=60)[0]
    assert second.returncode == 0
    ids = sink.ids()
    assert len(ids) == len(set(ids))
    unknown = store.scalar("SELECT count(*) FROM deliveries WHERE status = 'unknown'")
    from syndicate.sender.workers import default_workers

    assert unknown <= 4 * default_workers()  # only messages that were on the wire at the signal (per drain)
    assert len(ids) + unknown >= n and store.scalar("SELECT count(*) FROM deliveries WHERE status = 'sent'") + unknown == n
    assert "unknown" not in out
    store.close()
