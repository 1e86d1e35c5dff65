"""Campaign lifecycle against subscription changes, as a Hypothesis state machine over a real store file.

Through any order of people joining, leaving and being suppressed, articles arriving (digests due
beside the campaigns), campaigns created (draft or
scheduled), cancelled, edited and sent, time passing and send runs whose relay accepts, refuses
or drops: a campaign is planned for exactly the people active at that moment; nobody gets one
twice; nobody who is not active when a run claims their row gets it; a cancelled or draft
campaign sends nothing; a campaign is `sent` only once no row of it is left to send; and
accepted and recorded agree (the outbox promise).

``SYNDICATE_EXAMPLES=N`` runs more examples (default 15).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import event
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from test_outbox_state import OUTCOMES, ScriptedRelay

import syndicate.campaigns as campaigns
from syndicate.config import Secret, Settings
from syndicate.errors import InputError
from syndicate.models import Article, NewsList
from syndicate.sender import run_send
from syndicate.store import Store, open_store
from syndicate.subscribers import subscribe, unsubscribe_address
from syndicate.suppressions import suppress

EXAMPLES = int(os.environ.get("SYNDICATE_EXAMPLES", "15"))
T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


class CampaignLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="campaign-state-"))
        self.settings = Settings(db=str(self.dir / "s.db"), secret_key=Secret("state-secret-0123456789"),
                                 base_url="https://news.example.org", mail_sender_address="tin@news.example.org",
                                 mail_pending_max_age_days=0, smtp_pool_size=2, source="tests")
        self.store: Store = open_store(self.settings.db)
        self.now = T0
        self.accepted: list[str] = []
        self.status: dict[str, str] = {}  # address -> active | left | suppressed
        self.ids: dict[int, str] = {}  # subscriber id -> address
        self.created: list[int] = []

    @initialize()
    def a_list(self) -> None:
        self.store.create_list(NewsList(slug="tin-sang", name="Tin sáng", welcome=False))
        self.people_join(3)

    @rule(n=st.integers(1, 3))
    def people_join(self, n: int) -> None:
        for _ in range(n):
            address = f"p{len(self.status)}@example.org"
            r = subscribe(self.store, self.settings, address, "tin-sang", confirmed=True, now=self.now)
            assert r.subscriber.id is not None
            self.ids[r.subscriber.id] = address
            self.status[address] = "active"

    @rule(who=st.integers(0, 30), how=st.sampled_from(["left", "suppressed"]))
    def someone_goes(self, who: int, how: str) -> None:
        address = f"p{who}@example.org"
        if self.status.get(address) != "active":
            return
        if how == "left":
            unsubscribe_address(self.store, self.settings, address, "tin-sang")
        else:
            suppress(self.store, self.settings, address, "complained")
        self.status[address] = how

    @rule(hours=st.sampled_from([None, 1, 3]))
    def a_campaign_is_written(self, hours: int | None) -> None:
        when = self.now + timedelta(hours=hours) if hours else None
        c = campaigns.create_campaign(self.store, self.settings, list_slug="tin-sang", subject=f"C{len(self.created)}",
                                      body_markdown="**Tin** [x](https://e.example.org/)", send_at=when, now=self.now)
        self.created.append(c.id)

    @rule(pick=st.integers(0, 10), what=st.sampled_from(["send", "cancel", "edit"]))
    def an_admin_acts(self, pick: int, what: str) -> None:
        if not self.created:
            return
        cid = self.created[pick % len(self.created)]
        before = self.store.get_campaign(cid).status
        try:
            if what == "send":
                n = campaigns.send_campaign(self.store, self.settings, cid, self.now)
                planned = {self.ids[int(r[0])] for r in self.store.query(
                    "SELECT subscriber_id FROM deliveries WHERE campaign_id = ?", [cid])}
                assert n == len(planned)
                assert planned == {a for a, s in self.status.items() if s == "active"}
            elif what == "cancel":
                campaigns.cancel_campaign(self.store, cid)
            else:
                campaigns.edit_campaign(self.store, cid, subject="Edited", now=self.now)
            assert before in campaigns.EDITABLE
            event(f"{what} ok")
        except InputError:
            assert before not in campaigns.EDITABLE
            assert self.store.get_campaign(cid).status == before  # a refused act changes nothing
            event(f"{what} refused")

    @rule(n=st.integers(1, 3))
    def articles_arrive(self, n: int) -> None:
        """Digests become due beside the campaigns: they are planned in the same send tick."""
        k = self.store.count_articles()
        self.store.upsert_articles([Article(guid=f"g{k + i}", title=f"Tin {k + i}", slug=f"tin-{k + i}",
                                            published=self.now, category="Xã hội") for i in range(n)])

    @rule(hours=st.sampled_from([1, 2, 5, 24]))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(script=st.lists(st.sampled_from(OUTCOMES), max_size=10))
    def cron_sends(self, script: list[str]) -> None:
        due = set(self.store.campaigns_to_plan(self.now))
        not_active = {a for a, s in self.status.items() if s != "active"}
        before = len(self.accepted)
        report = run_send(self.store, self.settings, ScriptedRelay(list(script), self.accepted), now=self.now)
        assert not report.fatal, report.fatal
        for cid in due:  # scheduled and due: planned by this tick
            assert self.store.get_campaign(cid).status in ("sending", "sent")
        for mid in self.accepted[before:]:
            if mid.startswith("<campaign."):
                sub_id = int(mid.split(".")[3].split("@")[0])
                assert self.ids[sub_id] not in not_active, f"{mid} went to someone who is not active"

    @invariant()
    def exactly_once_and_honest_states(self) -> None:
        assert len(self.accepted) == len(set(self.accepted)), "the relay accepted a message twice"
        rows = self.store.query(
            "SELECT d.status, d.subscriber_id, d.campaign_id, d.message_id FROM deliveries d WHERE kind = 'campaign'")
        sent = {r[3] for r in rows if r[0] == "sent"}
        unknown = {f"<campaign.tin-sang.{r[2]}.{r[1]}@news.example.org>" for r in rows if r[0] == "unknown"}
        ours = {m for m in self.accepted if m.startswith("<campaign.")}
        assert not [r for r in rows if r[0] == "skipped"], "a campaign row was skipped (superseded by a digest?)"
        assert sent <= ours, "recorded sent, never accepted"
        assert ours <= sent | unknown, "accepted, but the store lost track of it"
        for c in self.store.list_campaigns():
            left = self.store.scalar("SELECT count(*) FROM deliveries WHERE campaign_id = ? AND status IN "
                                     "('queued', 'sending')", [c.id])
            if c.status == "sent":
                assert left == 0
            if c.status in ("draft", "scheduled", "cancelled"):
                assert not any(m.startswith(f"<campaign.tin-sang.{c.id}.") for m in ours)
                assert self.store.scalar("SELECT count(*) FROM deliveries WHERE campaign_id = ?", [c.id]) == 0
            if c.status == "scheduled":
                assert c.send_at is not None and (c.send_at > self.now or left == 0)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


CampaignLife.TestCase.settings = hsettings(max_examples=EXAMPLES, stateful_step_count=14, deadline=None)
TestCampaignLife = CampaignLife.TestCase
