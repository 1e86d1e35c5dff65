"""The outbox's write side once rows are planned: claims, results, settling, retries.

A run claims rows in ``BEGIN IMMEDIATE`` transactions (status ``sending``
with ``lease_owner`` and ``lease_until``), so two drains never take the same
row; each result is recorded for the owner that holds the lease. The schema
and planning are in ``store/outbox.py``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..errors import NotFound
from ..models import utcnow
from .arrival import DigestWindow
from .base import dumps, iso, parse_time
from .notices import _NEEDS, HARD_SUPPRESSIONS, _suppressions
from .subscribers import HARD_BOUNCE_LIMIT, SubscriberQueries, email_hash


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
class BounceOutcome:
    """What recording one bounce did to its subscription."""

    delivery_id: int
    subscription_id: int
    hard_bounces: int
    status: str  # the subscription's status afterwards


_CLAIMED_COLUMNS = (
    "d.id, d.list_id, d.subscriber_id, d.subscription_id, d.period, d.attempts, "
    "d.window_start, d.window_end, d.categories, s.email, s.name, d.after_seq, d.upto_seq, d.created, d.kind"
)


def _chunks(items: Sequence[object], size: int) -> Iterator[Sequence[object]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _pick_queued(conn: sqlite3.Connection, now: datetime, limit: int,
                 only: Sequence[int] | None) -> list[tuple[int, str, str, str]]:
    """(id, subscription status, kind, email or '') of due queued rows: notices first, then digests and
    campaign rows in the order they were planned. Notices have their own partial index (it leaves out
    digests and campaigns, see the campaigns migration), so a queued campaign of any size is never walked
    to find them."""
    due = "d.status = 'queued' AND (d.next_attempt IS NULL OR d.next_attempt <= ?)"
    head = ("SELECT d.id, x.status, d.kind, CASE WHEN d.kind = 'digest' THEN '' ELSE "
            "(SELECT email FROM subscribers WHERE id = d.subscriber_id) END FROM deliveries d")
    join = "JOIN subscriptions x ON x.id = d.subscription_id"
    if only is not None:
        rows = conn.execute(
            f"{head} {join} WHERE d.id IN (SELECT value FROM json_each(?)) AND {due} "
            "ORDER BY d.kind IN ('digest', 'campaign'), d.id LIMIT ?",
            [dumps(list(only)), iso(now), limit],
        ).fetchall()
    else:
        rows = conn.execute(
            f"{head} INDEXED BY deliveries_notice_queue {join} WHERE {due} AND d.kind NOT IN ('digest', 'campaign') "
            "ORDER BY d.id LIMIT ?",
            [iso(now), limit],
        ).fetchall()
        if len(rows) < limit:
            rows += conn.execute(
                f"{head} INDEXED BY deliveries_queue {join} WHERE {due} AND d.kind IN ('digest', 'campaign') "
                "ORDER BY d.id LIMIT ?",
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



class ClaimQueries(SubscriberQueries):
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
        when no other run can be alive) ignores the lease expiry of digests and
        campaign rows, but not of notices: those sent at once are claimed outside the run lock (see
        :mod:`syndicate.sender.notices`), so their live leases are left alone."""
        with self.transaction(immediate=True) as conn:
            cur = conn.execute(
                "UPDATE deliveries SET status = 'unknown', error = 'interrupted while sending (run ' || "
                "lease_owner || '); not resent automatically' WHERE status = 'sending' AND lease_owner != ? "
                "AND ((? AND kind IN ('digest', 'campaign')) OR lease_until IS NULL OR lease_until < ?)",
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

    def retry_failed(self, *, unknown: bool = False) -> int:
        """Requeue failed rows (not hard bounces, only active subscriptions);
        with ``unknown`` also rows whose fate is unknown (may duplicate)."""
        statuses = ["failed", "unknown"] if unknown else ["failed"]
        retried = (f"status IN ({', '.join('?' for _ in statuses)}) AND bounced = 0 "
                   "AND subscription_id IN (SELECT id FROM subscriptions WHERE status = 'active')")
        with self.transaction(immediate=True) as conn:
            # a campaign settled as sent is sending again while a row of it waits (settle_campaigns ends it)
            conn.execute(
                "UPDATE campaigns SET status = 'sending' WHERE status = 'sent' AND id IN "
                f"(SELECT campaign_id FROM deliveries WHERE campaign_id IS NOT NULL AND {retried})",
                statuses,
            )
            cur = conn.execute(
                "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt = NULL, lease_owner = '', "
                f"lease_until = NULL WHERE {retried}",
                statuses,
            )
            return cur.rowcount
