"""The consent promises, tried over many orders of operations on a real SQLite store.

A Hypothesis ``RuleBasedStateMachine`` drives the same library calls the CLI
and the web pages use (subscribe from the form and by an admin, confirm,
unsubscribe and one-click, hard bounces and complaints through deliveries,
erasure, CSV imports with and without ``--confirmed``/``--resubscribe``,
export-then-import, resubscribe, preferences, suppressions, and a send step
that plans deliveries with the outbox's own planning calls). After every step:

* a suppressed address is never ``active`` and has nothing queued in the outbox,
  and a send step never plans a row for it;
* an address that was suppressed before a step is active after it, or no
  longer suppressed, only if the step was the person's confirmation or an
  admin's explicit resubscribe (or lifting the suppression);
* an active subscription never stops being active (or disappears) without an
  event that says why;
* export followed by import (into an empty store, and back into the same one)
  is the identity on lists, statuses, dates and topics.

``SYNDICATE_EXAMPLES=N`` runs N examples instead of the default 120.
"""

from __future__ import annotations

import atexit
import csv
import io
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from syndicate import subscribers as lib
from syndicate import suppressions
from syndicate.config import Secret, Settings
from syndicate.errors import InputError, NotFound, TokenError
from syndicate.models import NewsList, utcnow
from syndicate.store import Store, open_store
from syndicate.store.outbox import PlannedDelivery
from syndicate.subscriber_csv import export_csv, import_csv

EXAMPLES = int(os.environ.get("SYNDICATE_EXAMPLES", "120"))
#: Each example opens real store files; on a RAM disk when there is one, so fsync costs nothing.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None

ADDRESSES = ["an@example.org", "Binh@example.org", "=chi@example.org", "dung@example.net"]
NAMES = ["", "Nguyễn Văn An", "=HYPERLINK(\"http://x\")", "@SUM(1)", "-1", "'quoted"]
LISTS = ["sang", "tuan"]
LEAVE = ("unsubscribe", "bounce", "complaint")
#: The steps by which a suppressed address may become active again.
CONSENTING = {"confirm", "resubscribe", "import-resubscribe", "admin-resubscribe"}


def make_lists(store: Store) -> None:
    lib.create_list(store, NewsList(slug="sang", name="Tin sáng"))
    lib.create_list(store, NewsList(slug="tuan", name="Tuần", cadence="weekly", weekday=4,
                                    categories=["kinh-te", "the-thao"]))


_TEMPLATE: list[Path] = []


def new_store(path: Path) -> Store:
    """A migrated store with the two lists: a copy of one built once (migrating each time is the slow part)."""
    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="consent-template-", dir=SCRATCH))
        atexit.register(shutil.rmtree, folder, True)
        template = open_store(folder / "template.db")
        make_lists(template)
        template.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        template.close()
        _TEMPLATE.append(folder / "template.db")
    shutil.copyfile(_TEMPLATE[0], path)
    return open_store(path)


def export_text(store: Store) -> str:
    out = io.StringIO()
    export_csv(store, out)
    return out.getvalue()


class ConsentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="consent-state-", dir=SCRATCH))
        self.settings = Settings(db=str(self.dir / "s.db"), secret_key=Secret("consent-state-secret-key-0123456789-abcdef"),
                                 base_url="https://news.example.org", mail_maildir=str(self.dir / "maildir"))
        self.store = new_store(self.dir / "s.db")
        self.step = ""
        self.periods = 0
        self.files = 0
        self._snapshot()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def _subscription(self, address: str, slug: str) -> tuple[int, int, int] | None:
        """(subscriber id, list id, subscription id) or None."""
        person = self.store.find_subscriber(lib.normalize_address(address))
        nl = self.store.get_list(slug)
        if person is None or person.id is None or nl.id is None:
            return None
        sub = self.store.find_subscription(person.id, nl.id)
        if sub is None or sub.id is None:
            return None
        return person.id, nl.id, sub.id

    def _token(self, address: str, slug: str, purpose: str) -> str | None:
        found = self._subscription(address, slug)
        if found is None:
            return None
        return lib.make_token(self.settings, purpose, found[0], found[1], lib.normalize_address(address))

    def _active(self) -> dict[int, tuple[int, int]]:
        return {r[0]: (r[1], r[2]) for r in self.store.conn.execute(
            "SELECT id, subscriber_id, list_id FROM subscriptions WHERE status = 'active'")}

    def _suppressed_active_hashes(self) -> set[str]:
        return {r[0] for r in self.store.conn.execute(
            "SELECT DISTINCT s.email_hash FROM subscriptions t JOIN subscribers s ON s.id = t.subscriber_id "
            "JOIN suppressions p ON p.email_hash = s.email_hash WHERE t.status = 'active'")}

    def _snapshot(self) -> None:
        self.active_before = self._active()
        self.last_event = int(self.store.scalar("SELECT coalesce(max(id), 0) FROM events"))
        self.suppressed_before = {r[0] for r in self.store.conn.execute("SELECT email_hash FROM suppressions")}

    def _write_csv(self, rows: list[list[str]], header: list[str]) -> Path:
        self.files += 1
        path = self.dir / f"in{self.files}.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        return path

    # -- the doors: web form, admin, links -----------------------------------------------------

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS), name=st.sampled_from(NAMES))
    def web_subscribe(self, address: str, slug: str, name: str) -> None:
        self.step = "web-subscribe"
        try:
            lib.subscribe(self.store, self.settings, address, slug, name=name, source="web", actor="203.0.113.7",
                          ip="203.0.113.7", user_agent="Mozilla/5.0")
        except InputError:
            pass

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS), confirmed=st.booleans(),
          resubscribe=st.booleans(), name=st.sampled_from(NAMES))
    def admin_add(self, address: str, slug: str, confirmed: bool, resubscribe: bool, name: str) -> None:
        self.step = "admin-resubscribe" if resubscribe else "admin-add"
        try:
            lib.subscribe(self.store, self.settings, address, slug, name=name, confirmed=confirmed,
                          resubscribe=resubscribe, source="cli", actor="root")
        except InputError:
            pass

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS))
    def confirm(self, address: str, slug: str) -> None:
        self.step = "confirm"
        token = self._token(address, slug, "confirm")
        if token is not None:
            try:
                lib.confirm(self.store, self.settings, token, ip="198.51.100.1", user_agent="Firefox")
            except TokenError:
                pass

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS), one_click=st.booleans())
    def unsubscribe(self, address: str, slug: str, one_click: bool) -> None:
        self.step = "unsubscribe"
        token = self._token(address, slug, "unsubscribe")
        if token is not None:
            lib.unsubscribe_by_token(self.store, self.settings, token, source="one-click" if one_click else "web")

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS))
    def resubscribe(self, address: str, slug: str) -> None:
        self.step = "resubscribe"
        try:
            lib.resubscribe(self.store, self.settings, address, slug, actor="root")
        except (InputError, NotFound):
            pass

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS),
          cadence=st.sampled_from([None, "daily", "weekly"]),
          topics=st.sampled_from([None, [], ["kinh-te"], ["the-thao", "kinh-te"]]))
    def preferences(self, address: str, slug: str, cadence: str | None, topics: list[str] | None) -> None:
        self.step = "preferences"
        token = self._token(address, slug, "preferences")
        if token is not None:
            try:
                lib.update_preferences(self.store, self.settings, token, cadence=cadence,
                                       categories=topics if slug == "tuan" else None)
            except InputError:
                pass

    # -- what comes back from the mail system ---------------------------------------------

    def _latest_delivery(self, address: str, slug: str) -> int | None:
        found = self._subscription(address, slug)
        if found is None:
            return None
        value = self.store.scalar("SELECT max(id) FROM deliveries WHERE subscription_id = ?", [found[2]])
        return int(value) if value is not None else None

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS), times=st.integers(1, 3))
    def hard_bounce(self, address: str, slug: str, times: int) -> None:
        self.step = "bounce"
        did = self._latest_delivery(address, slug)
        if did is not None:
            for _ in range(times):  # the same DSN again and again counts once
                self.store.record_delivery_bounce(did, True, "550 5.1.1 user unknown")
            assert self.store.get_delivery(did) is not None

    @rule(address=st.sampled_from(ADDRESSES), slug=st.sampled_from(LISTS))
    def complaint(self, address: str, slug: str) -> None:
        self.step = "complaint"
        did = self._latest_delivery(address, slug)
        if did is not None:
            self.store.record_complaint(did, "abuse report (test)")

    @rule(address=st.sampled_from(ADDRESSES))
    def erase(self, address: str) -> None:
        self.step = "erase"
        try:
            lib.erase(self.store, self.settings, address, actor="root")
        except NotFound:
            pass

    @rule(address=st.sampled_from(ADDRESSES), reason=st.sampled_from(suppressions.REASONS), lift=st.booleans())
    def admin_suppression(self, address: str, reason: str, lift: bool) -> None:
        self.step = "unsuppress" if lift else "suppress"
        if lift:
            try:
                suppressions.unsuppress(self.store, self.settings, address, actor="root")
            except InputError:
                pass
        else:
            suppressions.suppress(self.store, self.settings, address, reason, actor="root")

    # -- bulk ------------------------------------------------------------------------------

    @rule(rows=st.lists(st.tuples(st.sampled_from(ADDRESSES), st.sampled_from(["", "active", "pending",
                                                                                "unsubscribed"])),
                        min_size=1, max_size=4),
          slug=st.sampled_from(LISTS), confirmed=st.booleans(), resubscribe=st.booleans())
    def import_file(self, rows: list[tuple[str, str]], slug: str, confirmed: bool, resubscribe: bool) -> None:
        self.step = "import-resubscribe" if resubscribe else "import"
        at = (utcnow() - timedelta(days=30)).isoformat()
        path = self._write_csv([[a, s, at if s == "active" else ""] for a, s in rows], ["email", "status", "confirmed"])
        report = import_csv(self.store, self.settings, path, slug, confirmed=confirmed, resubscribe=resubscribe)
        assert report.rows == len(rows)

    @rule()
    def export_then_import(self) -> None:
        self.step = "export-import"
        before = export_text(self.store)
        path = self.dir / "export.csv"
        path.write_text(before, encoding="utf-8")
        # back into the same store: nothing changes, nobody is demoted or deleted
        import_csv(self.store, self.settings, path, None)
        assert export_text(self.store) == before
        # into an empty store with the same lists, without --confirmed: the same data
        fresh = new_store(self.dir / f"fresh{self.files}.db")
        self.files += 1
        try:
            report = import_csv(fresh, self.settings, path, None)
            assert report.errors == 0, report.first_errors
            assert export_text(fresh) == before
        finally:
            fresh.close()

    @rule()
    def send(self) -> None:
        """Plan a digest period for every due subscription with the outbox's own calls."""
        self.step = "send"
        self.periods += 1
        now = utcnow()
        planned = [PlannedDelivery(c.list_id, c.subscriber_id, c.subscription_id, f"p{self.periods}",
                                   now - timedelta(days=1), now, c.categories)
                   for c in self.store.due_subscriptions()]
        self.store.plan_deliveries(planned, now=now)
        suppressed = {r[0] for r in self.store.conn.execute(
            "SELECT s.id FROM subscribers s JOIN suppressions p ON p.email_hash = s.email_hash")}
        assert not {p.subscriber_id for p in planned} & suppressed

    # -- the promises --------------------------------------------------------------------------

    @invariant()
    def promises_hold(self) -> None:
        # one invariant, so the checks run in this order and the snapshot is taken last
        self.suppressed_is_never_active_nor_queued()
        self.only_consent_lifts_a_suppression_into_active()
        self.active_never_vanishes_silently()
        self._snapshot()

    def suppressed_is_never_active_nor_queued(self) -> None:
        assert self._suppressed_active_hashes() == set()
        queued = self.store.scalar(
            "SELECT count(*) FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
            "JOIN suppressions p ON p.email_hash = s.email_hash WHERE d.status IN ('queued', 'sending')")
        assert queued == 0

    def only_consent_lifts_a_suppression_into_active(self) -> None:
        now_suppressed = {r[0] for r in self.store.conn.execute("SELECT email_hash FROM suppressions")}
        lifted = self.suppressed_before - now_suppressed
        assert not lifted or self.step in CONSENTING | {"unsuppress"}, (self.step, lifted)
        now_active = {r[0] for r in self.store.conn.execute(
            "SELECT DISTINCT s.email_hash FROM subscriptions t JOIN subscribers s ON s.id = t.subscriber_id "
            "WHERE t.status = 'active'")}
        revived = now_active & self.suppressed_before
        assert not revived or self.step in CONSENTING, (self.step, revived)

    def active_never_vanishes_silently(self) -> None:
        now = {r[0]: r[1] for r in self.store.conn.execute("SELECT id, status FROM subscriptions")}
        events = self.store.conn.execute(
            "SELECT kind, subscriber_id, list_id FROM events WHERE id > ?", [self.last_event]).fetchall()
        for sub_id, (subscriber_id, list_id) in self.active_before.items():
            if now.get(sub_id) == "active":
                continue
            if sub_id not in now:
                assert any(k == "erase" for k, _s, _l in events), (self.step, sub_id)
            else:
                assert any(k in LEAVE and s == subscriber_id and lst == list_id for k, s, lst in events), (
                    self.step, sub_id, now[sub_id])


ConsentMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=8, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestConsentPromises = ConsentMachine.TestCase
