"""``syndicate send --workers N`` against a real aiosmtpd sink: each digest once, all reported.

(SIGKILL, SIGTERM and storage faults with two workers are trials in test_send_faults.py.)"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
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
from syndicate.mailer import SmtpTransport
from syndicate.models import Article, NewsList
from syndicate.sender import run_send
from syndicate.store import open_store
from syndicate.subscribers import subscribe

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
AT = "2026-11-24T08:00:00+07:00"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with the parent on Linux")


class Sink:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.messages: list[tuple[int, bytes]] = []  # (client port, message)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        with self.lock:
            self.messages.append((session.peer[1], envelope.original_content))
        return "250 OK"

    def ids(self) -> list[str]:
        with self.lock:
            raw = [m for _, m in self.messages]
        return [str(email.message_from_bytes(m, policy=email.policy.default)["Message-ID"]) for m in raw]


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    s = Sink(0.0)
    with smtp_server(s) as port:
        yield s, port


def populate(tmp_path: Path, port: int, n: int) -> tuple[dict[str, str], Settings]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(
        SYNDICATE_DB=str(tmp_path / "s.db"), SYNDICATE_SECRET_KEY="e2e-secret-key-0123456789-abcdefghij",
        SYNDICATE_SMTP_HOST="127.0.0.1", SYNDICATE_SMTP_PORT=str(port), SYNDICATE_SMTP_POOL_SIZE="2",
        SYNDICATE_MAIL_SENDER_ADDRESS="tin@news.example.org", SYNDICATE_BASE_URL="https://news.example.org",
        PYTHONPATH=str(ROOT),
    )
    settings = Settings(db=env["SYNDICATE_DB"], secret_key=Secret(env["SYNDICATE_SECRET_KEY"]),
                        base_url="https://news.example.org", smtp_host="127.0.0.1", smtp_port=port,
                        smtp_pool_size=2, mail_sender_address="tin@news.example.org", source="e2e")
    store = open_store(settings.db)
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng"))
    for i in range(n):
        subscribe(store, settings, f"r{i:03d}@example.org", "tin-sang", name=["An", "Bình", ""][i % 3],
                  confirmed=True, now=T0)
    store.upsert_articles([
        Article(guid=f"g{i}", title=f"Tin {i}", slug=f"tin-{i}", published=T0 + timedelta(hours=i), category="Xã hội")
        for i in range(1, 4)
    ])
    store.close()
    return env, settings


def wait_for(cond: Any, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_two_workers_send_each_digest_once_and_report_it_all(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    handler, port = sink
    _, settings = populate(tmp_path, port, 45)
    store = open_store(settings.db)
    progress: list[int] = []
    try:
        report = run_send(store, settings, SmtpTransport(settings), now=datetime.fromisoformat(AT), workers=2,
                          on_progress=progress.append)
        assert (report.queued, report.sent, report.failed, report.unknown) == (45, 45, 0, 0)
        assert sum(progress) == 45
        ids = handler.ids()
        assert len(ids) == 45 and len(set(ids)) == 45
        assert store.scalar("SELECT count(*) FROM deliveries WHERE status = 'sent'") == 45
        assert not list(Path(f"{settings.db}.journal").glob("*.log")), "a worker's journal outlived its run"
        # a second run has nothing left to send
        again = run_send(store, settings, SmtpTransport(settings), now=datetime.fromisoformat(AT), workers=2)
        assert (again.queued, again.sent) == (0, 0)
    finally:
        store.close()
