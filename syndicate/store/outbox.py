"""The outbox: deliveries planned, claimed with a lease, sent, retried.

One ``deliveries`` row per (list, subscriber, period), UNIQUE in the schema,
so planning the same period twice can never queue a second digest. A run
claims rows in ``BEGIN IMMEDIATE`` transactions (status ``sending`` with
``lease_owner`` and ``lease_until``), so two drains never take the same row.
Rows left ``sending`` by a run that died are turned ``unknown`` and are not
resent unless an admin asks (``syndicate outbox retry --unknown``).

The ``digests`` table archives each rendered digest (one per list, period and
category set) for the "view in browser" pages.

This module holds the schema (both tables' migrations) and planning; claiming,
recording results, settling and retrying are in ``store/outbox_claims.py``,
the read-only reports in ``store/outbox_report.py`` and the archive's queries
in ``store/archive.py``. Their dataclasses are re-exported here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlite_utils import Database, Migrations

from ..errors import NotFound
from ..models import utcnow
from .archive import ArchivedDigest
from .arrival import DigestWindow
from .base import dumps, iso, parse_time
from .outbox_claims import BounceOutcome, ClaimedDelivery, ClaimQueries
from .outbox_report import DeliveryRow, DigestReport, OutboxCounts

__all__ = [
    "migrations", "BATCH", "DueCandidate", "PlannedDelivery", "OutboxQueries",
    # re-exported from the split modules, so ``from syndicate.store.outbox import ...`` keeps working
    "ArchivedDigest", "BounceOutcome", "ClaimedDelivery", "DeliveryRow", "DigestReport", "OutboxCounts",
]

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



def _candidate(r: Sequence[object]) -> DueCandidate:
    return DueCandidate(
        subscription_id=r[0], subscriber_id=r[1], list_id=r[2], cadence=r[3] or "daily",  # type: ignore[arg-type]
        weekday=int(r[4] or 0), send_hour=int(r[5] if r[5] is not None else 7),  # type: ignore[call-overload]
        categories=tuple(json.loads(r[6] or "[]")), last_period=r[7] or "",  # type: ignore[arg-type]
        last_sent_at=parse_time(r[8]), since=parse_time(r[9]), timezone=r[10] or "UTC",  # type: ignore[arg-type]
        last_seq=r[11],  # type: ignore[arg-type]
    )



class OutboxQueries(ClaimQueries):
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
        """A new period's digest replaces the same subscription's older digests still waiting
        (deferred by a relay outage, or never claimed): they become ``skipped`` and the new
        digest's window starts where the oldest of them began, so no article is lost. Its
        notices and campaign rows still waiting are not digests and are never replaced."""
        old = conn.execute(
            "SELECT id, period, window_start, after_seq FROM deliveries WHERE subscription_id = ? "
            "AND status = 'queued' AND kind = 'digest' AND id != ?",
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
