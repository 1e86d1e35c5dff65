"""Digests by arrival, as a state machine over a real store: every article reaches every
subscription in its topics exactly once, in the first digest planned after it arrived.

Hypothesis imports articles (backdated, future-dated, older than the age cap), edits them
(text, category, date, a move into the future), removes them, moves the clock on by
minutes or days, and runs ``run_send`` (the real plan, release, render and drain path)
through the memory transport. A model that knows only what happened (what was imported,
when, and which runs planned a digest for whom) says which digest must carry which
article; every message is read back and compared:

- an article in a subscription's topics that arrived (at its import, or when its
  embargo ended) is in the first digest planned for it afterwards if it was published
  within the list's ``max_age_days`` before that digest's send moment, and in no
  other digest;
- nothing in a digest is published after the run's ``now``, or older than the cap;
- an edit never makes an article arrive again; moving it into the future withdraws it
  until that time, when it arrives anew (once);
- a reader who joins mid-way gets, in their first digest, what arrived before it and
  was published since the period before (or within the cap, if they joined earlier).

``SYNDICATE_EXAMPLES=N`` asks for more examples (default 20).
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from syndicate.config import Secret, Settings
from syndicate.digest import current_period, zone
from syndicate.mailer import MemoryTransport
from syndicate.models import Article, NewsList
from syndicate.sanitize import slugify
from syndicate.sender import run_send
from syndicate.store import open_store
from syndicate.subscribers import subscribe

T0 = datetime(2026, 11, 20, 0, 30, tzinfo=UTC)
JOINED = T0 - timedelta(days=2)
CATEGORIES = ("Kinh tế", "Thể thao", "Xã hội")
MAX_ARTICLES = 18  # below the digest's 20 shown, so every article of a digest is visible in it
LINK = re.compile(r"/articles/(art-\d+)\b")


@dataclass
class Reader:
    email: str
    list_slug: str
    topics: set[str] | None  # None = every category
    cadence: str
    weekday: int
    send_hour: int
    timezone: str
    max_age_days: int
    joined: datetime = JOINED
    subscription_id: int = 0
    deliveries: int = 0  # outbox rows seen so far
    first_done: bool = False


@dataclass
class Item:
    guid: str
    published: datetime
    category: str
    epoch: int = 0  # a new epoch each time it is withdrawn (moved into the future)
    arrived: bool = False
    removed: bool = False
    settled: set[tuple[str, int]] = field(default_factory=set)  # (reader email, epoch) decided


class ArrivalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="arrival-"))
        self.settings = Settings(
            db=str(self.dir / "syndicate.db"), secret_key=Secret("test-secret-key-0123456789"),
            base_url="https://news.example.org", mail_sender_address="tin@news.example.org",
            feeds_out=str(self.dir / "site"), source="tests",
        )
        self.store = open_store(self.settings.db)
        self.clock = T0
        self.items: dict[str, Item] = {}
        self.readers: list[Reader] = []
        self.n = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize(cap_daily=st.sampled_from([2, 7]), cap_weekly=st.sampled_from([3, 10]))
    def lists_and_readers(self, cap_daily: int, cap_weekly: int) -> None:
        self.store.create_list(NewsList(slug="tin", name="Tin sáng", send_hour=7, max_age_days=cap_daily))
        self.store.create_list(NewsList(slug="tuan", name="Tin tuần", cadence="weekly", weekday=0, send_hour=8,
                                        categories=["kinh-te", "xa-hoi"], max_age_days=cap_weekly))
        self.readers = [
            Reader("an@example.org", "tin", None, "daily", 0, 7, "Asia/Ho_Chi_Minh", cap_daily),
            Reader("binh@example.org", "tin", {"the-thao"}, "daily", 0, 7, "America/New_York", cap_daily),
            Reader("chi@example.org", "tuan", {"kinh-te", "xa-hoi"}, "weekly", 0, 8, "Europe/Berlin", cap_weekly),
        ]
        for r in self.readers:
            done = subscribe(self.store, self.settings, r.email, r.list_slug, timezone=r.timezone,
                             categories=sorted(r.topics) if r.list_slug == "tin" and r.topics else None,
                             confirmed=True, now=JOINED)
            assert done.subscription.id is not None
            r.subscription_id = done.subscription.id

    # -- operations ---------------------------------------------------------------------------

    def _arrive(self) -> None:
        """What the store must treat as arrived now: public and not yet arrived."""
        for it in self.items.values():
            if not it.removed and not it.arrived and it.published <= self.clock:
                it.arrived = True

    def _article(self, it: Item, body: str = "") -> Article:
        return Article(guid=it.guid, title=f"Tin {it.guid}", slug=it.guid, published=it.published,
                       category=it.category, body_text=body or f"Nội dung {it.guid}")

    @precondition(lambda self: self.n < MAX_ARTICLES)
    @rule(batch=st.lists(st.tuples(st.one_of(st.integers(-24 * 12, 0), st.integers(-30, 0), st.integers(1, 24 * 4)),
                                   st.sampled_from(CATEGORIES)), min_size=1, max_size=3))
    def import_articles(self, batch: list[tuple[int, str]]) -> None:
        """Backdated (up to 12 days, past some caps), just published, or future-dated up to 4 days (hours)."""
        new = []
        for offset, category in batch[: MAX_ARTICLES - self.n]:
            self.n += 1
            it = Item(f"art-{self.n:02d}", self.clock + timedelta(hours=offset), category)
            self.items[it.guid] = it
            new.append(self._article(it))
        self.store.upsert_articles(new, now=self.clock)
        self._arrive()

    def _live(self) -> list[Item]:
        return sorted((i for i in self.items.values() if not i.removed), key=lambda i: i.guid)

    @rule(data=st.data(), change=st.sampled_from(["text", "category", "earlier", "future"]))
    def edit_article(self, data: st.DataObject, change: str) -> None:
        if not self._live():
            return
        it = data.draw(st.sampled_from(self._live()))
        if change == "category":
            it.category = data.draw(st.sampled_from(CATEGORIES))
        elif change == "earlier":
            it.published = min(it.published, self.clock) - timedelta(hours=data.draw(st.integers(0, 48)))
        elif change == "future":
            it.published = self.clock + timedelta(hours=data.draw(st.integers(1, 72)))
            if it.arrived:  # withdrawn: it arrives anew when its time comes
                it.arrived = False
                it.epoch += 1
        self.store.upsert_articles([self._article(it, body=f"sửa {self.clock.isoformat()} {change}")], now=self.clock)
        self._arrive()

    @rule(data=st.data())
    def remove_article(self, data: st.DataObject) -> None:
        if not self._live():
            return
        it = data.draw(st.sampled_from(self._live()))
        self.store.remove_article(it.guid)
        it.removed = True

    @rule(minutes=st.one_of(st.integers(1, 90), st.integers(60 * 20, 60 * 80)))
    def advance_clock(self, minutes: int) -> None:
        """Minutes (often across a send hour) or a day or more (missed runs)."""
        self.clock += timedelta(minutes=minutes)

    @precondition(lambda self: len(self.readers) < 6)
    @rule(topics=st.sampled_from([None, ("the-thao",), ("kinh-te", "xa-hoi")]),
          timezone=st.sampled_from(["Asia/Ho_Chi_Minh", "UTC", "America/Los_Angeles"]))
    def join(self, topics: tuple[str, ...] | None, timezone: str) -> None:
        """Someone joins mid-way: their first digest holds what arrived before it, by the first-digest rule."""
        r = Reader(f"new{len(self.readers)}@example.org", "tin", set(topics) if topics else None, "daily", 0, 7,
                   timezone, self.readers[0].max_age_days, joined=self.clock)
        done = subscribe(self.store, self.settings, r.email, "tin", timezone=timezone,
                         categories=list(topics) if topics else None, confirmed=True, now=self.clock)
        assert done.subscription.id is not None
        r.subscription_id = done.subscription.id
        self.readers.append(r)

    @rule(hours=st.integers(1, 30))
    def cron_tick(self, hours: int) -> None:
        """Time passes, then cron runs `syndicate send`."""
        self.clock += timedelta(hours=hours)
        self.send()

    @rule()
    def send(self) -> None:
        self._arrive()  # planning releases what came due before it reads the high-water mark
        transport = MemoryTransport()
        report = run_send(self.store, self.settings, transport, now=self.clock)
        assert report.failed == 0 and report.unknown == 0, report.errors
        got: dict[str, set[str]] = {}
        for _sender, rcpts, raw in transport.sent:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            links = LINK.findall(text)
            assert len(links) == len(set(links)), f"an article twice in one digest: {links}"
            assert rcpts[0] not in got, f"two digests for {rcpts[0]} in one run"
            got[rcpts[0]] = set(links)
        for r in self.readers:
            rows = self.store.deliveries_for(r.subscription_id)
            planned = len(rows) > r.deliveries
            assert len(rows) <= r.deliveries + 1
            r.deliveries = len(rows)
            shown = got.pop(r.email, set())
            if not planned:
                assert not shown
                continue
            self._check_digest(r, shown)
        assert not got, f"digests for unknown readers: {got}"

    def _check_digest(self, r: Reader, shown: set[str]) -> None:
        p = current_period(self.clock, r.cadence, r.weekday, r.send_hour, zone(r.timezone))
        oldest = p.moment - timedelta(days=r.max_age_days)
        if not r.first_done and p.previous <= r.joined:  # joined during the period before: from its start
            oldest = max(oldest, p.previous)
        for guid in shown:
            it = self.items[guid]
            assert not it.removed, f"{guid} was removed but is in {r.email}'s digest"
            assert it.published <= self.clock, f"{guid} (published {it.published}) is not public at {self.clock}"
            assert it.published >= p.moment - timedelta(days=r.max_age_days), f"{guid} is older than the cap"
            assert (r.email, it.epoch) not in it.settled, f"{guid} reached {r.email} twice"
        for it in self.items.values():
            if it.removed or not it.arrived or (r.email, it.epoch) in it.settled:
                continue
            wanted = (r.topics is None or slugify(it.category) in r.topics) and it.published >= oldest
            assert (it.guid in shown) == wanted, (
                f"{it.guid} ({it.category}, published {it.published}) {'missing from' if wanted else 'wrongly in'} "
                f"{r.email}'s digest for {p.key} planned at {self.clock}")
            it.settled.add((r.email, it.epoch))
        r.first_done = True
        event(f"a digest carried {min(len(shown), 3)}{'+' if len(shown) >= 3 else ''} articles")

    @invariant()
    def nothing_future_is_public(self) -> None:
        public = {a.guid for a in self.store.newest_articles(100, now=self.clock)}
        expected = {g for g, i in self.items.items() if not i.removed and i.published <= self.clock}
        assert public == expected


ArrivalMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("SYNDICATE_EXAMPLES", "20")), stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestArrival = ArrivalMachine.TestCase
