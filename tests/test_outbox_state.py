"""The outbox promise as a Hypothesis state machine over a real store file: "a message is accepted
at most once by the relay, and every due message is accepted or `unknown`", through any order of
subscribing, new articles, time passing, unsubscribing and sends whose messages the relay accepts,
refuses (4xx, 5xx), or accepts and then drops the connection before its reply.

``SYNDICATE_EXAMPLES=N`` runs more examples (default 15).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import event
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from syndicate.config import Secret, Settings
from syndicate.errors import TransportError
from syndicate.mailer.transports import OnData
from syndicate.models import Article, NewsList
from syndicate.sender import run_send
from syndicate.store import Store, open_store
from syndicate.subscribers import subscribe, unsubscribe

EXAMPLES = int(os.environ.get("SYNDICATE_EXAMPLES", "15"))
T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
OUTCOMES = ("accept", "accept", "accept", "451", "550", "drop-after-accept", "drop-before-data")


class ScriptedRelay:
    """A Transport whose relay answers each message with the next scripted outcome."""

    def __init__(self, script: list[str], accepted: list[str]) -> None:
        self.script = script
        self.accepted = accepted

    async def send(self, envelope_from: str, recipients: list[str], message: bytes,
                   on_data: OnData | None = None) -> None:
        outcome = self.script.pop(0) if self.script else "accept"
        if outcome == "drop-before-data":
            raise TransportError("SMTP connection failed: dropped at RCPT", temporary=True)
        if on_data is not None:
            await on_data()
        await asyncio.sleep(0)
        if outcome in ("451", "550"):
            raise TransportError(f"SMTP replied {outcome} no", temporary=outcome == "451", code=int(outcome))
        mid = next(line for line in message.split(b"\r\n") if line.startswith(b"Message-ID:")).split(b" ", 1)[1]
        self.accepted.append(mid.decode())
        if outcome == "drop-after-accept":
            raise TransportError("SMTP connection failed: lost after the final dot", temporary=True)

    async def close(self) -> None:
        return None


class Outbox(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-state-"))
        self.settings = Settings(db=str(self.dir / "s.db"), secret_key=Secret("state-secret-0123456789"),
                                 base_url="https://news.example.org", mail_sender_address="tin@news.example.org",
                                 mail_pending_max_age_days=0, smtp_pool_size=2, source="tests")
        self.store: Store = open_store(self.settings.db)
        self.now = T0
        self.accepted: list[str] = []
        self.people = 0
        self.articles = 0

    @initialize()
    def a_list(self) -> None:
        self.store.create_list(NewsList(slug="tin-sang", name="Tin sáng"))
        self.people_subscribe(3)
        self.now += timedelta(hours=1)
        self.articles_arrive(2)

    @rule(n=st.integers(1, 4))
    def people_subscribe(self, n: int) -> None:
        for _ in range(n):
            subscribe(self.store, self.settings, f"p{self.people}@example.org", "tin-sang", confirmed=True,
                      now=self.now)
            self.people += 1

    @rule(n=st.integers(1, 3))
    def articles_arrive(self, n: int) -> None:
        self.store.upsert_articles([
            Article(guid=f"g{self.articles + i}", title=f"Tin {self.articles + i}", slug=f"tin-{self.articles + i}",
                    published=self.now, category="Xã hội") for i in range(n)
        ])
        self.articles += n

    @rule(hours=st.sampled_from([1, 5, 24, 30]))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(who=st.integers(0, 50))
    def someone_leaves(self, who: int) -> None:
        if who < self.people:
            s = self.store.get_subscriber(f"p{who}@example.org")
            nl = self.store.get_list("tin-sang")
            sub = self.store.find_subscription(s.id or 0, nl.id or 0)
            if sub is not None and sub.status == "active":
                unsubscribe(self.store, self.settings, s.id or 0, nl.id or 0, source="cli")

    @rule(script=st.lists(st.sampled_from(OUTCOMES), max_size=12))
    def send(self, script: list[str]) -> None:
        report = run_send(self.store, self.settings, ScriptedRelay(list(script), self.accepted), now=self.now)
        assert not report.fatal, report.fatal
        assert self.store.scalar("SELECT count(*) FROM deliveries WHERE status = 'sending'") == 0
        event(f"send: sent {min(report.sent, 3)}+, unknown {min(report.unknown, 1)}+, retry {min(report.retry_later, 1)}+")

    @invariant()
    def never_twice_never_lost(self) -> None:
        assert len(self.accepted) == len(set(self.accepted)), "the relay accepted a message twice"
        rows = self.store.query(
            "SELECT d.status, d.subscriber_id, d.period, d.message_id FROM deliveries d")
        sent = {r[3] for r in rows if r[0] == "sent"}
        unknown = {f"<digest.tin-sang.{r[1]}.{r[2]}@news.example.org>" for r in rows if r[0] == "unknown"}
        assert sent <= set(self.accepted), "recorded sent, never accepted"
        assert set(self.accepted) <= sent | unknown, "accepted, but the store lost track of it"
        assert not list(Path(f"{self.settings.db}.journal").glob("*.log"))

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


Outbox.TestCase.settings = hsettings(max_examples=EXAMPLES, stateful_step_count=12, deadline=None)
TestOutbox = Outbox.TestCase
