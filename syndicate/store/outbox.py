"""The outbox: deliveries planned, claimed with a lease, sent, retried.

One ``deliveries`` row per (list, subscriber, period), UNIQUE in the schema,
so planning the same period twice can never queue a second digest. A run
claims rows in ``BEGIN IMMEDIATE`` transactions (status ``sending`` with
``lease_owner`` and ``lease_until``), so two drains never take the same row.
Rows left ``sending`` by a run that died are turned ``unknown`` and are not
resent unless an admin asks (``syndicate outbox retry --unknown``).

The ``digests`` table archives each rendered digest (one per list, period and
category set) for the "view in browser" pages.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from sqlite_utils import Database, Migrations

from ..errors import NotFound
from ..models import DELIVERY_STATUSES, Delivery, utcnow
from .arrival import DigestWindow
from .base import dumps, iso, parse_time
from .notices import _NEEDS, HARD_SUPPRESSIONS, _suppressions
from .subscribers import HARD_BOUNCE_LIMIT, SubscriberQueries, email_hash

migrations = Migrations("syndicate.outbox")

#: Hard bounces after which a subscription is set ``bounced``.
#: Rows per executemany / claim when the caller does not say.
BATCH = 1000


@migrations()
def m001_deliveries(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            subscription_id INTEGER NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
            period TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN
                ('queued', 'sending', 'sent', 'failed', 'unknown', 'skipped', 'cancelled')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt TEXT,
            lease_until TEXT,
            lease_owner TEXT NOT NULL DEFAULT '',
            message_id TEXT NOT NULL DEFAULT '',
            error TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            sent_at TEXT,
            window_start TEXT,
            window_end TEXT,
            categories TEXT NOT NULL DEFAULT '[]',
            bounced INTEGER NOT NULL DEFAULT 0,
            UNIQUE (list_id, subscriber_id, period)
        )
        """
    )
    db.execute("CREATE INDEX deliveries_status ON deliveries (status, next_attempt, id)")
    db.execute("CREATE INDEX deliveries_subscription ON deliveries (subscription_id, status)")
    db.execute(
        """
        CREATE TABLE digests (
            id INTEGER PRIMARY KEY,
            list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
            period TEXT NOT NULL,
            categories_key TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL,
            html TEXT NOT NULL,
            text TEXT NOT NULL,
            article_count INTEGER NOT NULL DEFAULT 0,
            created TEXT NOT NULL,
            UNIQUE (list_id, period, categories_key)
        )
        """
    )


@migrations()
def m002_queue_index(db: Database) -> None:
    """Claims walk queued rows in id order and stop at LIMIT: no sort, no scan."""
    db.execute("CREATE INDEX deliveries_queue ON deliveries (status, id)")


@migrations()
def m003_arrival_window(db: Database) -> None:
    """Each digest's arrival window ``(after_seq, upto_seq]`` (see ``store/articles.py``).

    Rows planned before have NULL here and keep their published window."""
    db.execute("ALTER TABLE deliveries ADD COLUMN after_seq INTEGER")
    db.execute("ALTER TABLE deliveries ADD COLUMN upto_seq INTEGER")


@migrations()
def m003_attempt_times(db: Database) -> None:
    """When each row was last tried, for ``outbox ls`` and retry by time."""
    db.execute("ALTER TABLE deliveries ADD COLUMN last_attempt TEXT")


@migrations()
def m003_notice_kinds(db: Database) -> None:
    """Confirmation and welcome emails are outbox rows too, told apart by ``kind``.

    Their ``period`` keeps the UNIQUE (list, subscriber, period) rule useful:
    ``welcome`` (one ever per subscription) and ``confirm:<time queued>``.
    The partial index lets a claim take notices first without walking queued digests.
    """
    db.execute(
        "ALTER TABLE deliveries ADD COLUMN kind TEXT NOT NULL DEFAULT 'digest' "
        "CHECK (kind IN ('digest', 'confirm', 'welcome'))"
    )
    db.execute("CREATE INDEX deliveries_notice_queue ON deliveries (status, id) WHERE kind != 'digest'")


@dataclass(frozen=True)
class DueCandidate:
    """An active subscription with what the due-time logic needs."""

    subscription_id: int
    subscriber_id: int
    list_id: int
    cadence: str
    weekday: int
    send_hour: int
    categories: tuple[str, ...]
    last_period: str
    last_sent_at: datetime | None
    since: datetime | None  # confirmed, else created: no digest for a period before this
    timezone: str
    last_seq: int | None = None  # arrival number its latest digest covered; None before the first


@dataclass(frozen=True)
class PlannedDelivery:
    """One row to queue (or record as skipped) for a due subscription."""

    list_id: int
    subscriber_id: int
    subscription_id: int
    period: str
    window_start: datetime
    window_end: datetime
    categories: tuple[str, ...]
    skipped: bool = False
    after_seq: int | None = None  # arrival window (after_seq, upto_seq]; None = by published (old rows)
    upto_seq: int | None = None

    @property
    def window(self) -> DigestWindow:
        return DigestWindow(self.after_seq, self.upto_seq or 0, self.window_start, self.window_end)


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this run holds the lease on, with who it goes to."""

    id: int
    list_id: int
    subscriber_id: int
    subscription_id: int
    period: str
    attempts: int
    window_start: datetime
    window_end: datetime
    categories: tuple[str, ...]
    email: str
    name: str
    after_seq: int | None = None
    upto_seq: int | None = None
    created: datetime | None = None  # when it was planned: the queue lifetime counts from here
    kind: str = "digest"  # or a notice: "confirm", "welcome"

    @property
    def window(self) -> DigestWindow:
        return DigestWindow(self.after_seq, self.upto_seq or 0, self.window_start, self.window_end)


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery as ``syndicate outbox ls`` shows it."""

    id: int
    list_slug: str
    email: str
    period: str
    status: str
    attempts: int
    last_reply: str
    message_id: str
    created: datetime | None
    last_attempt: datetime | None
    next_attempt: datetime | None
    sent_at: datetime | None
    bounced: bool


@dataclass(frozen=True)
class DigestReport:
    """What became of one list's digests for one period (``syndicate outbox report``)."""

    list_slug: str
    period: str
    planned: int
    sent: int
    skipped: int
    queued: int
    deferred: int
    sending: int
    failed: int
    bounced: int
    unknown: int
    cancelled: int
    complained: int
    unsubscribed: int


@dataclass(frozen=True)
class BounceOutcome:
    """What recording one bounce did to its subscription."""

    delivery_id: int
    subscription_id: int
    hard_bounces: int
    status: str  # the subscription's status afterwards


@dataclass(frozen=True)
class ArchivedDigest:
    list_id: int
    period: str
    categories_key: str
    subject: str
    html: str
    text: str
    article_count: int
    created: datetime


@dataclass
class OutboxCounts:
    """Rows per status (every status present), what is due, what waits to retry."""

    counts: dict[str, int] = field(default_factory=dict)
    due_now: int = 0
    deferred: int = 0  # queued after a temporary failure, waiting for their retry time
    next_retry: datetime | None = None  # the earliest of those retry times
    oldest_deferred: datetime | None = None  # when the oldest of them was planned
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> status -> rows (only kinds present)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


_CLAIMED_COLUMNS = (
    "d.id, d.list_id, d.subscriber_id, d.subscription_id, d.period, d.attempts, "
    "d.window_start, d.window_end, d.categories, s.email, s.name, d.after_seq, d.upto_seq, d.created, d.kind"
)


def _candidate(r: Sequence[object]) -> DueCandidate:
    return DueCandidate(
        subscription_id=r[0], subscriber_id=r[1], list_id=r[2], cadence=r[3] or "daily",  # type: ignore[arg-type]
        weekday=int(r[4] or 0), send_hour=int(r[5] if r[5] is not None else 7),  # type: ignore[call-overload]
        categories=tuple(json.loads(r[6] or "[]")), last_period=r[7] or "",  # type: ignore[arg-type]
        last_sent_at=parse_time(r[8]), since=parse_time(r[9]), timezone=r[10] or "UTC",  # type: ignore[arg-type]
        last_seq=r[11],  # type: ignore[arg-type]
    )


def _chunks(items: Sequence[object], size: int) -> Iterator[Sequence[object]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _pick_queued(conn: sqlite3.Connection, now: datetime, limit: int,
                 only: Sequence[int] | None) -> list[tuple[int, str, str, str]]:
    """(id, subscription status, kind, email or '') of due queued rows: notices first, then digests."""
    due = "d.status = 'queued' AND (d.next_attempt IS NULL OR d.next_attempt <= ?)"
    head = ("SELECT d.id, x.status, d.kind, CASE WHEN d.kind = 'digest' THEN '' ELSE "
            "(SELECT email FROM subscribers WHERE id = d.subscriber_id) END FROM deliveries d")
    join = "JOIN subscriptions x ON x.id = d.subscription_id"
    if only is not None:
        rows = conn.execute(
            f"{head} {join} WHERE d.id IN (SELECT value FROM json_each(?)) AND {due} "
            "ORDER BY d.kind = 'digest', d.id LIMIT ?",
            [dumps(list(only)), iso(now), limit],
        ).fetchall()
    else:
        rows = conn.execute(
            f"{head} INDEXED BY deliveries_notice_queue {join} WHERE {due} AND d.kind != 'digest' "
            "ORDER BY d.id LIMIT ?",
            [iso(now), limit],
        ).fetchall()
        if len(rows) < limit:
            rows += conn.execute(
                f"{head} INDEXED BY deliveries_queue {join} WHERE {due} AND d.kind = 'digest' ORDER BY d.id LIMIT ?",
                [iso(now), limit - len(rows)],
            ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def _unfit(conn: sqlite3.Connection, picked: Sequence[tuple[int, str, str, str]]) -> dict[int, str]:
    """delivery id -> why it must be cancelled rather than sent (see :meth:`OutboxQueries.claim_deliveries`)."""
    out: dict[int, str] = {}
    notices: list[tuple[int, str, str]] = []
    for did, status, kind, email in picked:
        need = _NEEDS.get(kind, "active")
        if status == need:
            if kind != "digest":
                notices.append((did, kind, email))
        elif kind == "digest":
            out[did] = "subscription no longer active"
        elif kind == "confirm" and status == "active":
            out[did] = "already confirmed"
        else:
            out[did] = f"subscription is {status}"
    suppressed = _suppressions(conn, [e for _d, _k, e in notices])
    for did, kind, email in notices:
        reason = suppressed.get(email_hash(email))
        if reason is not None and (kind != "confirm" or reason in HARD_SUPPRESSIONS):
            out[did] = f"address suppressed ({reason})"
    return out


def _row_to_delivery(row: object) -> Delivery:
    r: dict[str, object] = dict(row)  # type: ignore[call-overload]
    return Delivery(
        id=r["id"],  # type: ignore[arg-type]
        list_id=r["list_id"],  # type: ignore[arg-type]
        subscriber_id=r["subscriber_id"],  # type: ignore[arg-type]
        subscription_id=r["subscription_id"],  # type: ignore[arg-type]
        period=r["period"],  # type: ignore[arg-type]
        status=r["status"],  # type: ignore[arg-type]
        attempts=r["attempts"],  # type: ignore[arg-type]
        next_attempt=parse_time(r["next_attempt"]),  # type: ignore[arg-type]
        lease_until=parse_time(r["lease_until"]),  # type: ignore[arg-type]
        lease_owner=r["lease_owner"],  # type: ignore[arg-type]
        message_id=r["message_id"],  # type: ignore[arg-type]
        error=r["error"],  # type: ignore[arg-type]
        created=parse_time(r["created"]),  # type: ignore[arg-type]
        sent_at=parse_time(r["sent_at"]),  # type: ignore[arg-type]
        kind=str(r.get("kind") or "digest"),
    )


class OutboxQueries(SubscriberQueries):
    # -- planning ---------------------------------------------------------

    def due_subscriptions(self, list_id: int | None = None, page: int = 5000) -> Iterator[DueCandidate]:
        """Every active subscription with its schedule, streamed in id order.

        The store cannot know local time; :func:`syndicate.digest.due` decides
        which of these are due at a given moment. Pages by id so that writes
        between pages (planning) never disturb the read.
        """
        after = 0
        sql = (
            "SELECT x.id, x.subscriber_id, x.list_id, x.cadence, x.weekday, x.send_hour, x.categories, "
            "x.last_period, x.last_sent_at, coalesce(x.confirmed, x.created), s.timezone, x.last_seq "
            "FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id "
            "WHERE x.status = 'active' AND x.id > ?"
        )
        params: list[object] = []
        if list_id is not None:
            sql += " AND x.list_id = ?"
            params.append(list_id)
        sql += " ORDER BY x.id LIMIT ?"
        while True:
            rows = self.conn.execute(sql, [after, *params, page]).fetchall()
            if not rows:
                return
            for r in rows:
                yield _candidate(r)
            after = rows[-1][0]

    def due_candidate(self, subscription_id: int) -> DueCandidate:
        """One subscription as :meth:`due_subscriptions` would yield it, whatever its status (for previews)."""
        r = self.conn.execute(
            "SELECT x.id, x.subscriber_id, x.list_id, x.cadence, x.weekday, x.send_hour, x.categories, "
            "x.last_period, x.last_sent_at, coalesce(x.confirmed, x.created), s.timezone, x.last_seq "
            "FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id WHERE x.id = ?",
            [subscription_id],
        ).fetchone()
        if r is None:
            raise NotFound(f"no subscription with id {subscription_id}")
        return _candidate(r)

    def plan_deliveries(self, planned: Iterable[PlannedDelivery], now: datetime | None = None,
                        batch: int = BATCH) -> tuple[int, int]:
        """Queue planned rows (INSERT OR IGNORE) and move each subscription's
        ``last_period``/``last_sent_at`` on, batch by batch, each batch atomic.

        ``last_sent_at`` becomes the end of the window the digest covers and
        ``last_seq`` the arrival number it covers up to, so the next digest
        starts exactly where this one ended. If the period already had a row
        (a replan), the subscription covers only what that row did: nothing is
        skipped. Returns (queued, skipped) rows actually inserted.
        """
        created = iso(now or utcnow())
        queued = skipped = 0
        buf: list[PlannedDelivery] = []
        stamp = lru_cache(maxsize=256)(iso)  # rows of one plan share a few window times

        def flush() -> None:
            nonlocal queued, skipped
            with self.transaction(immediate=True) as conn:
                moved: list[tuple[str, str | None, int | None, int]] = []
                for p in buf:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO deliveries (list_id, subscriber_id, subscription_id, period, status, "
                        "created, window_start, window_end, categories, after_seq, upto_seq) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [p.list_id, p.subscriber_id, p.subscription_id, p.period,
                         "skipped" if p.skipped else "queued", created, stamp(p.window_start),
                         stamp(p.window_end), dumps(list(p.categories)), p.after_seq, p.upto_seq],
                    )
                    if cur.rowcount:
                        if p.skipped:
                            skipped += 1
                        else:
                            queued += 1
                            self._supersede(conn, cur.lastrowid, p)
                        moved.append((p.period, stamp(p.window_end), p.upto_seq, p.subscription_id))
                    else:  # this period was planned before: cover only what that row covers
                        conn.execute(
                            "UPDATE subscriptions SET last_period = ?, last_sent_at = ?, last_seq = "
                            "max(coalesce(last_seq, 0), coalesce((SELECT upto_seq FROM deliveries WHERE list_id = ? "
                            "AND subscriber_id = ? AND period = ?), 0)) WHERE id = ?",
                            [p.period, iso(p.window_end), p.list_id, p.subscriber_id, p.period, p.subscription_id],
                        )
                conn.executemany(
                    "UPDATE subscriptions SET last_period = ?, last_sent_at = ?, last_seq = coalesce(?, last_seq) "
                    "WHERE id = ?",
                    moved,
                )
            buf.clear()

        for p in planned:
            buf.append(p)
            if len(buf) >= batch:
                flush()
        if buf:
            flush()
        return queued, skipped

    @staticmethod
    def _supersede(conn: sqlite3.Connection, new_id: int | None, p: PlannedDelivery) -> None:
        """A new period's digest replaces the same subscription's older ones still waiting
        (deferred by a relay outage, or never claimed): they become ``skipped`` and the new
        digest's window starts where the oldest of them began, so no article is lost."""
        old = conn.execute(
            "SELECT id, period, window_start, after_seq FROM deliveries WHERE subscription_id = ? "
            "AND status = 'queued' AND id != ?",
            [p.subscription_id, new_id],
        ).fetchall()
        if not old:
            return
        conn.executemany(
            "UPDATE deliveries SET status = 'skipped', lease_until = NULL, "
            "error = 'superseded by the ' || ? || ' digest, which carries its articles' WHERE id = ?",
            [(p.period, r[0]) for r in old],
        )
        starts = [r[2] for r in old if r[2]]
        if starts:
            conn.execute(
                "UPDATE deliveries SET window_start = min(coalesce(window_start, ?), ?) WHERE id = ?",
                [min(starts), min(starts), new_id],
            )
        seqs = [r[3] for r in old if r[3] is not None]
        if seqs:  # by arrival: the new digest holds what the superseded ones would have
            conn.execute(
                "UPDATE deliveries SET after_seq = min(coalesce(after_seq, ?), ?) WHERE id = ?",
                [min(seqs), min(seqs), new_id],
            )

    def durable_writes(self) -> None:
        """Every commit from here on is on disk before it returns (``synchronous = FULL``):
        what the sender records survives a power cut, as its journal does."""
        self.conn.execute("PRAGMA synchronous = FULL")

    # -- claiming -----------------------------------------------------------

    def claim_deliveries(self, owner: str, now: datetime, lease_until: datetime, limit: int, *,
                         only: Sequence[int] | None = None) -> list[ClaimedDelivery]:
        """Take up to ``limit`` queued rows due by ``now`` for ``owner``.

        One ``BEGIN IMMEDIATE`` transaction: notices (confirmation, welcome)
        are taken before digests, as they are time-sensitive. A row whose
        subscription is no longer in the state its kind needs (digest and
        welcome: active; confirm: pending), or a notice for an address
        suppressed since it was queued, is cancelled; the rest become
        ``sending`` under the lease and their attempt count goes up. Two
        claimers never get the same row. ``only`` limits the claim to these
        delivery ids (a notice sent at once).
        """
        if limit <= 0:
            return []
        with self.transaction(immediate=True) as conn:
            ids: list[int] = []
            while not ids:
                picked = _pick_queued(conn, now, limit, only)
                if not picked:
                    break
                unfit = _unfit(conn, picked)
                if unfit:
                    conn.executemany(
                        "UPDATE deliveries SET status = 'cancelled', error = ? WHERE id = ?",
                        [(reason, did) for did, reason in unfit.items()],
                    )
                ids = [r[0] for r in picked if r[0] not in unfit]
            tried = iso(utcnow())
            conn.executemany(
                "UPDATE deliveries SET status = 'sending', lease_owner = ?, lease_until = ?, "
                "attempts = attempts + 1, last_attempt = ? WHERE id = ?",
                [(owner, iso(lease_until), tried, did) for did in ids],
            )
            out: list[ClaimedDelivery] = []
            for chunk in _chunks(ids, 500):
                marks = ", ".join("?" for _ in chunk)
                rows = {r[0]: r for r in conn.execute(
                    f"SELECT {_CLAIMED_COLUMNS} FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
                    f"WHERE d.id IN ({marks})",
                    list(chunk),
                )}
                for did in chunk:  # in the order picked: notices first
                    r = rows[did]
                    out.append(
                        ClaimedDelivery(
                            id=r[0], list_id=r[1], subscriber_id=r[2], subscription_id=r[3], period=r[4],
                            attempts=r[5], window_start=parse_time(r[6]) or now, window_end=parse_time(r[7]) or now,
                            categories=tuple(json.loads(r[8])), email=r[9], name=r[10] or "",
                            after_seq=r[11], upto_seq=r[12], created=parse_time(r[13]), kind=r[14],
                        )
                    )
        return out

    def mark_orphans_unknown(self, owner: str, now: datetime, *, all_foreign: bool = False) -> int:
        """Rows left ``sending`` by another run: possibly on the wire, never
        resent automatically. ``all_foreign`` (used while holding the run lock,
        when no other run can be alive) ignores the lease expiry, except for
        notices: those sent at once are claimed outside the run lock (see
        :mod:`syndicate.sender.notices`), so their live leases are left alone."""
        with self.transaction(immediate=True) as conn:
            cur = conn.execute(
                "UPDATE deliveries SET status = 'unknown', error = 'interrupted while sending (run ' || "
                "lease_owner || '); not resent automatically' WHERE status = 'sending' AND lease_owner != ? "
                "AND ((? AND kind = 'digest') OR lease_until IS NULL OR lease_until < ?)",
                [owner, 1 if all_foreign else 0, iso(now)],
            )
            return cur.rowcount

    # -- recording results (each call one transaction; nest in
    #    ``store.transaction()`` to record several kinds at once) ----------

    def mark_sent(self, owner: str, items: Sequence[tuple[int, str]], sent_at: datetime) -> None:
        """(delivery id, message id) pairs sent by ``owner``."""
        with self.transaction(immediate=True) as conn:
            conn.executemany(
                "UPDATE deliveries SET status = 'sent', message_id = ?, sent_at = ?, error = '', "
                "lease_until = NULL WHERE id = ? AND lease_owner = ?",
                [(mid, iso(sent_at), did, owner) for did, mid in items],
            )

    def mark_failed(self, owner: str, items: Sequence[tuple[int, str]], *, bounced: bool = False) -> None:
        """(delivery id, error) pairs that will not be retried."""
        with self.transaction(immediate=True) as conn:
            conn.executemany(
                "UPDATE deliveries SET status = 'failed', error = ?, lease_until = NULL, bounced = ? "
                "WHERE id = ? AND lease_owner = ?",
                [(err[:500], 1 if bounced else 0, did, owner) for did, err in items],
            )

    def schedule_retry(self, owner: str, items: Sequence[tuple[int, datetime, str]]) -> None:
        """(delivery id, next attempt, error): back to ``queued`` for later."""
        with self.transaction(immediate=True) as conn:
            conn.executemany(
                "UPDATE deliveries SET status = 'queued', next_attempt = ?, error = ?, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ?",
                [(iso(when), err[:500], did, owner) for did, when, err in items],
            )

    def mark_unknown(self, owner: str, ids: Sequence[int], reason: str) -> None:
        with self.transaction(immediate=True) as conn:
            conn.executemany(
                "UPDATE deliveries SET status = 'unknown', error = ?, lease_until = NULL WHERE id = ? AND lease_owner = ?",
                [(reason[:500], did, owner) for did in ids],
            )

    def sending_ids(self, owner: str) -> list[int]:
        """Rows ``owner`` claimed and has not recorded a result for."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM deliveries WHERE status = 'sending' AND lease_owner = ? ORDER BY id", [owner]
        )]

    def settle_journal(self, owner: str, accepted: dict[int, str], started: set[int], now: datetime,
                       reason: str) -> tuple[int, int, int]:
        """Settle a stopped run's rows from its journal, in one transaction.

        Accepted (``D``) rows become ``sent`` whatever the store says about
        them short of ``sent`` (a lost or rolled-back result); rows still
        ``sending`` for ``owner`` whose DATA began (``S``) become
        ``unknown``; its other ``sending`` rows go back to the queue.
        Returns (sent, released, unknown).
        """
        with self.transaction(immediate=True) as conn:
            sent = 0
            for did, mid in sorted(accepted.items()):
                sent += conn.execute(
                    "UPDATE deliveries SET status = 'sent', message_id = ?, sent_at = coalesce(sent_at, ?), "
                    "error = '', lease_until = NULL WHERE id = ? AND status IN ('sending', 'queued', 'unknown')",
                    [mid, iso(now), did],
                ).rowcount
            pending = set(self.sending_ids(owner))
            on_the_wire = sorted((started - set(accepted)) & pending)
            self.mark_unknown(owner, on_the_wire, reason)
            released = self.release_claims(owner, sorted(pending - started - set(accepted)))
        return sent, released, len(on_the_wire)

    def release_claims(self, owner: str, ids: Sequence[int]) -> int:
        """Give back rows claimed but never handed to the transport."""
        with self.transaction(immediate=True) as conn:
            n = 0
            for did in ids:
                n += conn.execute(
                    "UPDATE deliveries SET status = 'queued', attempts = max(attempts - 1, 0), lease_until = NULL "
                    "WHERE id = ? AND status = 'sending' AND lease_owner = ?",
                    [did, owner],
                ).rowcount
            return n

    def cancel_queued_deliveries(self, subscription_id: int, reason: str = "unsubscribed") -> int:
        """Cancel what is still queued for a subscription (on unsubscribe, or a suppression: ``reason``)."""
        with self.transaction(immediate=True) as conn:
            cur = conn.execute(
                "UPDATE deliveries SET status = 'cancelled', error = ? WHERE subscription_id = ? AND status = 'queued'",
                [reason, subscription_id],
            )
            return cur.rowcount

    def record_bounce(self, delivery_id: int, hard: bool, detail: str, now: datetime | None = None,
                      limit: int = HARD_BOUNCE_LIMIT) -> BounceOutcome:
        """Count a bounce against the delivery's subscription and log an event.

        Hard bounces go through :meth:`record_hard_bounce`, the one rule for
        them: at ``limit`` the subscription becomes ``bounced``, the address is
        suppressed, and its queued digests are cancelled. Soft bounces are
        logged only.
        """
        now = now or utcnow()
        with self.transaction(immediate=True) as conn:
            row = conn.execute(
                "SELECT subscription_id, subscriber_id, list_id FROM deliveries WHERE id = ?", [delivery_id]
            ).fetchone()
            if row is None:
                raise NotFound(f"no delivery with id {delivery_id} (a bounce for a deleted or foreign message?)")
            sub_id, subscriber_id, list_id = row
            note = f"delivery {delivery_id}: {detail}"[:500]
            if hard:
                conn.execute("UPDATE deliveries SET bounced = 1 WHERE id = ?", [delivery_id])
                if self.record_hard_bounce(sub_id, limit, detail=note, source="sender", now=now):
                    self.cancel_queued_deliveries(sub_id)
            else:
                conn.execute(
                    "INSERT INTO events (at, kind, source, actor, subscriber_id, list_id, detail) "
                    "VALUES (?, 'soft-bounce', 'sender', '', ?, ?, ?)",
                    [iso(now), subscriber_id, list_id, note],
                )
            state = conn.execute("SELECT hard_bounces, status FROM subscriptions WHERE id = ?", [sub_id]).fetchone()
        return BounceOutcome(delivery_id, sub_id, int(state[0]) if state else 0, state[1] if state else "")

    # -- status and admin -----------------------------------------------------

    def outbox_status(self, now: datetime | None = None) -> OutboxCounts:
        counts = {s: 0 for s in DELIVERY_STATUSES}
        by_kind: dict[str, dict[str, int]] = {}
        for kind, status, n in self.conn.execute("SELECT kind, status, count(*) FROM deliveries GROUP BY kind, status"):
            counts[status] += n
            by_kind.setdefault(kind, {s: 0 for s in DELIVERY_STATUSES})[status] = n
        at = iso(now or utcnow())
        due = self.scalar(
            "SELECT count(*) FROM deliveries WHERE status = 'queued' AND (next_attempt IS NULL OR next_attempt <= ?)",
            [at],
        )
        deferred, next_retry, oldest = self.conn.execute(
            "SELECT count(*), min(next_attempt), min(created) FROM deliveries "
            "WHERE status = 'queued' AND next_attempt > ?",
            [at],
        ).fetchone()
        return OutboxCounts(counts=counts, due_now=int(due), deferred=int(deferred),
                            next_retry=parse_time(next_retry), oldest_deferred=parse_time(oldest),
                            by_kind=by_kind)

    def list_deliveries(self, *, status: str | None = None, list_slug: str | None = None,
                        period: str | None = None, email: str | None = None,
                        page: int = 1000) -> Iterator[DeliveryRow]:
        """Deliveries matching every filter given, streamed in id order."""
        where = ["d.id > ?"]
        params: list[object] = []
        if status == "deferred":
            where.append("d.status = 'queued' AND d.attempts > 0")
        elif status == "bounced":
            where.append("d.bounced = 1")
        elif status is not None:
            where.append("d.status = ?")
            params.append(status)
        if list_slug is not None:
            where.append("l.slug = ?")
            params.append(list_slug)
        if period is not None:
            where.append("d.period = ?")
            params.append(period)
        if email is not None:
            where.append("s.email = ?")
            params.append(email)
        sql = (
            "SELECT d.id, l.slug, s.email, d.period, d.status, d.attempts, d.error, d.message_id, d.created, "
            "d.last_attempt, d.next_attempt, d.sent_at, d.bounced FROM deliveries d "
            "JOIN lists l ON l.id = d.list_id JOIN subscribers s ON s.id = d.subscriber_id "
            f"WHERE {' AND '.join(where)} ORDER BY d.id LIMIT ?"
        )
        after = 0
        while True:
            rows = self.conn.execute(sql, [after, *params, page]).fetchall()
            for r in rows:
                yield DeliveryRow(
                    id=r[0], list_slug=r[1], email=r[2], period=r[3], status=r[4], attempts=r[5], last_reply=r[6],
                    message_id=r[7], created=parse_time(r[8]), last_attempt=parse_time(r[9]),
                    next_attempt=parse_time(r[10]), sent_at=parse_time(r[11]), bounced=bool(r[12]),
                )
            if len(rows) < page:
                return
            after = rows[-1][0]

    def digest_reports(self, *, list_slug: str | None = None, period: str | None = None) -> list[DigestReport]:
        """Per list and period: what was planned and what became of it, newest period first.

        ``complained`` and ``unsubscribed`` count recipients of a sent digest
        who complained about or left the list at or after its sending.
        """
        where, params = ["1"], []
        if list_slug is not None:
            where.append("l.slug = ?")
            params.append(list_slug)
        if period is not None:
            where.append("d.period = ?")
            params.append(period)
        rows = self.conn.execute(
            "SELECT l.slug, d.period, count(*), "
            "sum(d.status = 'sent'), sum(d.status = 'skipped'), sum(d.status = 'queued' AND d.attempts = 0), "
            "sum(d.status = 'queued' AND d.attempts > 0), sum(d.status = 'sending'), "
            "sum(d.status = 'failed' AND d.bounced = 0), sum(d.bounced = 1), sum(d.status = 'unknown'), "
            "sum(d.status = 'cancelled'), "
            "sum(d.status = 'sent' AND EXISTS (SELECT 1 FROM events e WHERE e.subscriber_id = d.subscriber_id "
            "AND e.list_id = d.list_id AND e.kind = 'complaint' AND e.at >= d.sent_at)), "
            "sum(d.status = 'sent' AND EXISTS (SELECT 1 FROM events e WHERE e.subscriber_id = d.subscriber_id "
            "AND e.list_id = d.list_id AND e.kind = 'unsubscribe' AND e.at >= d.sent_at)) "
            "FROM deliveries d JOIN lists l ON l.id = d.list_id "
            f"WHERE {' AND '.join(where)} GROUP BY d.list_id, d.period ORDER BY d.period DESC, l.slug",
            params,
        ).fetchall()
        return [DigestReport(r[0], r[1], *(int(x or 0) for x in r[2:])) for r in rows]

    def retry_failed(self, *, unknown: bool = False) -> int:
        """Requeue failed rows (not hard bounces, only active subscriptions);
        with ``unknown`` also rows whose fate is unknown (may duplicate)."""
        statuses = ["failed", "unknown"] if unknown else ["failed"]
        with self.transaction(immediate=True) as conn:
            cur = conn.execute(
                "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt = NULL, lease_owner = '', "
                f"lease_until = NULL WHERE status IN ({', '.join('?' for _ in statuses)}) AND bounced = 0 "
                "AND subscription_id IN (SELECT id FROM subscriptions WHERE status = 'active')",
                statuses,
            )
            return cur.rowcount

    def get_delivery(self, delivery_id: int) -> Delivery:
        row = self.query_one("SELECT * FROM deliveries WHERE id = ?", [delivery_id])
        if row is None:
            raise NotFound(f"no delivery with id {delivery_id} (see `syndicate outbox status`)")
        return _row_to_delivery(row)

    def deliveries_for(self, subscription_id: int) -> list[Delivery]:
        rows = self.query("SELECT * FROM deliveries WHERE subscription_id = ? ORDER BY id", [subscription_id])
        return [_row_to_delivery(r) for r in rows]

    # -- the archive ----------------------------------------------------------

    def archive_digest(self, d: ArchivedDigest) -> None:
        """Keep the first rendering of a (list, period, category set)."""
        with self.transaction(immediate=True) as conn:
            conn.execute(
                "INSERT OR IGNORE INTO digests (list_id, period, categories_key, subject, html, text, "
                "article_count, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [d.list_id, d.period, d.categories_key, d.subject, d.html, d.text, d.article_count, iso(d.created)],
            )

    def archived_digests(self, list_id: int, limit: int = 100) -> list[ArchivedDigest]:
        """The list's archived digests, newest period first (all category sets)."""
        rows = self.query(
            "SELECT * FROM digests WHERE list_id = ? ORDER BY period DESC, categories_key LIMIT ?", [list_id, limit]
        )
        return [_row_to_archived(r) for r in rows]

    def get_archived_digest(self, list_id: int, period: str, categories_key: str | None = None) -> ArchivedDigest:
        """One archived digest; without ``categories_key`` the all-categories
        one if there is one, else the first."""
        if categories_key is not None:
            row = self.query_one(
                "SELECT * FROM digests WHERE list_id = ? AND period = ? AND categories_key = ?",
                [list_id, period, categories_key],
            )
        else:
            row = self.query_one(
                "SELECT * FROM digests WHERE list_id = ? AND period = ? ORDER BY categories_key != '', "
                "categories_key LIMIT 1",
                [list_id, period],
            )
        if row is None:
            raise NotFound(f"no archived digest for list {list_id} and period {period!r}")
        return _row_to_archived(row)


def _row_to_archived(row: object) -> ArchivedDigest:
    r: dict[str, object] = dict(row)  # type: ignore[call-overload]
    return ArchivedDigest(
        list_id=int(r["list_id"]),  # type: ignore[call-overload]
        period=str(r["period"]),
        categories_key=str(r["categories_key"]),
        subject=str(r["subject"]),
        html=str(r["html"]),
        text=str(r["text"]),
        article_count=int(r["article_count"]),  # type: ignore[call-overload]
        created=parse_time(str(r["created"])) or utcnow(),
    )
