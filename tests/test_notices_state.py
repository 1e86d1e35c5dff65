"""The notice promises under many orders of operations (Hypothesis stateful test over a real SQLite file).

After every step: a hard-suppressed address (until its own confirmation lifts it) never gets a notice row
queued after its suppression and is never sent one; a subscription has at most one welcome row, and exactly one once it was confirmed on a list that
welcomes; two live confirmation rows of one subscription are never closer than the confirmation window.
``SYNDICATE_EXAMPLES=N`` runs more examples.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from syndicate import subscribers as lib
from syndicate.config import Secret, Settings
from syndicate.errors import InputError, TokenError, TransportError
from syndicate.mailer import MemoryTransport
from syndicate.models import NewsList, from_iso, utcnow
from syndicate.sender import notify, run_send
from syndicate.store import open_store
from syndicate.store.notices import CONFIRM_WINDOW

ADDRESSES = ("lan@example.org", "an@example.org")
LISTS = ("tin-sang", "quiet")  # quiet sends no welcome
EXAMPLES = int(os.environ.get("SYNDICATE_EXAMPLES", "50"))


class Notices(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="notices-state-"))
        self.settings = Settings(db=str(self.dir / "s.db"), secret_key=Secret("state-secret-key-0123456789abcdefgh"),
                                 base_url="https://news.example.org", mail_maildir=str(self.dir / "maildir"))
        self.store = open_store(self.settings.db)
        self.store.create_list(NewsList(slug="tin-sang", name="Tin sáng"))
        self.store.create_list(NewsList(slug="quiet", name="Quiet", welcome=False))
        self.clock = utcnow()
        self.hard: dict[str, int] = {}  # address -> the highest delivery id when it was hard-suppressed
        self.confirmed: set[tuple[str, str]] = set()  # (address, list) confirmed while pending
        self.sent_to: list[str] = []  # recipients of notices sent by cron_send steps

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _sub_id(self, address: str, slug: str) -> int | None:
        person = self.store.find_subscriber(address)
        if person is None or person.id is None:
            return None
        nl = self.store.get_list(slug)
        assert nl.id is not None
        found = self.store.find_subscription(person.id, nl.id)
        return found.id if found else None

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS))
    def web_subscribe(self, address: str, slug: str) -> None:
        try:
            r = lib.subscribe(self.store, self.settings, address, slug, source="web", now=self.clock)
        except InputError:
            return
        if r.needs_confirmation and r.subscription.id is not None:
            notify(self.store, self.settings, "confirm", r.subscription.id, send=False, now=self.clock)

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS), confirmed=st.booleans())
    def admin_add(self, address: str, slug: str, confirmed: bool) -> None:
        sid = self._sub_id(address, slug)
        before = self.store.get_subscription_by_id(sid).status if sid else None
        try:
            r = lib.subscribe(self.store, self.settings, address, slug, confirmed=confirmed, now=self.clock)
        except InputError:
            return
        if confirmed and before == "pending":
            self.confirmed.add((address, slug))
        elif not confirmed and r.subscription.status == "pending" and r.subscription.id is not None:
            notify(self.store, self.settings, "confirm", r.subscription.id, send=False, now=self.clock)

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS))
    def confirm_link(self, address: str, slug: str) -> None:
        person = self.store.find_subscriber(address)
        sid = self._sub_id(address, slug)
        if person is None or person.id is None or sid is None:
            return
        nl = self.store.get_list(slug)
        assert nl.id is not None
        token = lib.make_token(self.settings, "confirm", person.id, nl.id, person.email)
        try:
            r = lib.confirm(self.store, self.settings, token, now=self.clock)
        except TokenError:
            return
        if r.created:  # their own confirmation: it lifts any suppression of the address (the store's rule)
            self.confirmed.add((address, slug))
            self.hard.pop(address, None)

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS))
    def unsubscribe(self, address: str, slug: str) -> None:
        person = self.store.find_subscriber(address)
        nl = self.store.get_list(slug)
        if person is None or person.id is None or nl.id is None or self._sub_id(address, slug) is None:
            return
        lib.unsubscribe(self.store, self.settings, person.id, nl.id, source="web", now=self.clock)
        if address not in self.hard:
            self.store.add_suppression(lib.address_hash(address), "unsubscribed", self.clock)

    @rule(address=st.sampled_from(ADDRESSES), reason=st.sampled_from(("bounced", "complained")))
    def hard_suppress(self, address: str, reason: str) -> None:
        self.store.add_suppression(lib.address_hash(address), reason, self.clock)
        self.hard.setdefault(address, int(self.store.scalar("SELECT coalesce(max(id), 0) FROM deliveries")))

    @rule(minutes=st.sampled_from((1, 5, 9, 11)))
    def time_passes(self, minutes: int) -> None:
        self.clock += timedelta(minutes=minutes)

    @rule(relay_up=st.booleans())
    def cron_send(self, relay_up: bool) -> None:
        fail = None if relay_up else (lambda *_: TransportError("SMTP replied 451 later", code=451))
        transport = MemoryTransport(fail=fail)
        run_send(self.store, self.settings, transport, now=self.clock)
        sent = [r[0] for _f, r, m in transport.sent if re.search(rb"^Message-ID: <(confirm|welcome)\.", m, re.M)]
        assert not set(sent) & set(self.hard), (sent, self.hard)  # queued before, cancelled at the claim

    # -- the promises --------------------------------------------------------------

    def _notices(self) -> list[tuple[int, str, str, datetime, str, int]]:
        rows = self.store.conn.execute(
            "SELECT d.subscription_id, d.kind, d.status, d.created, s.email, d.id FROM deliveries d "
            "JOIN subscribers s ON s.id = d.subscriber_id WHERE d.kind != 'digest' ORDER BY d.id"
        ).fetchall()
        return [(r[0], r[1], r[2], from_iso(r[3]), r[4], r[5]) for r in rows]

    @invariant()
    def hard_suppressed_get_no_new_notice_row(self) -> None:
        for _sid, _kind, _status, _created, address, did in self._notices():
            assert address not in self.hard or did <= self.hard[address], (address, did, self.hard)

    @invariant()
    def one_welcome_per_confirmed_subscription(self) -> None:
        welcomes: dict[int, int] = {}
        for sid, kind, _status, _created, _address, _id in self._notices():
            if kind == "welcome":
                welcomes[sid] = welcomes.get(sid, 0) + 1
        assert all(n == 1 for n in welcomes.values()), welcomes
        for address, slug in self.confirmed:
            sub = self._sub_id(address, slug)
            if sub is None:
                continue
            assert welcomes.get(sub, 0) == (1 if slug == "tin-sang" else 0), (address, slug, welcomes)

    @invariant()
    def no_two_live_confirmations_within_the_window(self) -> None:
        last: dict[int, datetime] = {}
        for sid, kind, status, created, _address, _id in self._notices():
            if kind != "confirm" or status in ("cancelled", "failed"):
                continue
            if sid in last:
                assert created - last[sid] >= CONFIRM_WINDOW, (sid, last[sid], created)
            last[sid] = created


Notices.TestCase.settings = hsettings(max_examples=EXAMPLES, stateful_step_count=20, deadline=None)
TestNotices = Notices.TestCase
