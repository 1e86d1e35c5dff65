"""Confirmation and welcome emails as outbox rows: the queueing rules, in one place.

The rows live in ``deliveries`` (``kind`` confirm/welcome, added by the
outbox migration ``m003_notice_kinds``); claiming and recording them is the
outbox's (``store/outbox.py``), which takes notices before digests and
cancels one whose subscription or address no longer fits (the same rules,
:data:`_NEEDS` and :data:`HARD_SUPPRESSIONS`, from here).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..models import utcnow
from .base import StoreBase, dumps, iso
from .subscribers import email_hash

#: Subscriptions looked at per query when queueing many (an import batch).
CHUNK = 5000


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


#: The one-off emails that travel through the outbox beside digests.
NOTICE_KINDS = ("confirm", "welcome")
#: A confirmation asked for again within this time of the last one queued is not queued twice.
CONFIRM_WINDOW = timedelta(minutes=10)
#: Suppression reasons only an admin may lift: such an address never gets even a confirmation email.
HARD_SUPPRESSIONS = ("bounced", "complained", "complaint")
#: The subscription status each kind of row needs when it is claimed (else the row is cancelled).
_NEEDS = {"digest": "active", "welcome": "active", "confirm": "pending"}


def notice_period(kind: str, now: datetime) -> str:
    """The ``period`` key of a notice row: one welcome ever, a confirmation per request.

    Example:
        >>> from datetime import UTC
        >>> notice_period("confirm", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)), notice_period("welcome", utcnow())
        ('confirm:2026-12-01T09:30:00+00:00', 'welcome')
    """
    if kind == "welcome":
        return "welcome"
    if kind == "confirm":
        return f"confirm:{iso(now)}"
    raise ValueError(f"unknown notice kind {kind!r}; choose {', '.join(NOTICE_KINDS)}")


@dataclass(frozen=True)
class NoticeQueued:
    """What asking for one notice did: the row queued, or why none was."""

    subscription_id: int
    kind: str
    delivery_id: int | None = None  # the new outbox row
    reason: str = ""  # why no row was queued (empty when one was)


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} minutes"


def _suppressions(conn: sqlite3.Connection, emails: Sequence[str]) -> dict[str, str]:
    """email hash -> suppression reason, for those of these addresses that are suppressed."""
    if not emails:
        return {}
    return dict(conn.execute(
        "SELECT email_hash, reason FROM suppressions WHERE email_hash IN (SELECT value FROM json_each(?))",
        [dumps([email_hash(e) for e in emails])],
    ).fetchall())


class NoticeQueries(StoreBase):
    """Named queries that queue notices (the outbox sends them)."""

    def queue_notices(self, kind: str, subscription_ids: Sequence[int], now: datetime | None = None) -> list[NoticeQueued]:
        """Queue one ``kind`` notice per subscription, in one write, and say what happened to each.

        The rules, checked in the same transaction as the insert:

        - ``confirm`` needs a pending subscription, ``welcome`` an active one
          on a list whose welcome email is on;
        - a suppressed address gets no row, except a confirmation when the
          suppression is one the person lifts by confirming (they
          unsubscribed or were erased, and asked again on the form): a
          bounced or complaining address never gets one;
        - a welcome is queued once ever per subscription (period
          ``welcome``); a confirmation is not queued again while one queued
          within :data:`CONFIRM_WINDOW` is still live (queued, sending, sent
          or unknown), so two form posts never queue two; a new one cancels
          an older one still waiting in the queue (after a relay outage the
          person gets one email, not one per request).
        """
        now = now or utcnow()
        period = notice_period(kind, now)
        need = _NEEDS[kind]
        cutoff = iso(now - CONFIRM_WINDOW)
        created = iso(now)
        found: dict[int, NoticeQueued] = {}
        with self.transaction(immediate=True) as conn:
            for chunk in _chunks(list(dict.fromkeys(subscription_ids)), CHUNK):
                rows = conn.execute(
                    "SELECT x.id, x.list_id, x.subscriber_id, x.status, s.email, l.welcome, "
                    "(SELECT max(d.created) FROM deliveries d WHERE d.subscription_id = x.id AND d.kind = ? "
                    "AND d.status IN ('queued', 'sending', 'sent', 'unknown')) "
                    "FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id "
                    "JOIN lists l ON l.id = x.list_id WHERE x.id IN (SELECT value FROM json_each(?))",
                    [kind, dumps(list(chunk))],
                ).fetchall()
                suppressed = _suppressions(conn, [r[4] for r in rows])
                for sid, list_id, subscriber_id, status, email, welcome, last in rows:
                    reason = suppressed.get(email_hash(email))
                    why = ""
                    if status != need:
                        why = f"the subscription is {status}, not {need}"
                    elif reason is not None and (kind != "confirm" or reason in HARD_SUPPRESSIONS):
                        why = f"the address is suppressed ({reason})"
                    elif kind == "welcome" and not welcome:
                        why = "the list sends no welcome email"
                    elif kind == "confirm" and last is not None and last > cutoff:
                        why = f"a confirmation email was already queued at {last} (at most one per {_minutes(CONFIRM_WINDOW)})"
                    if why:
                        found[sid] = NoticeQueued(sid, kind, reason=why)
                        continue
                    if kind == "confirm":  # one still waiting (the relay was down) gives way to the new one
                        conn.execute(
                            "UPDATE deliveries SET status = 'cancelled', error = 'superseded by a newer confirmation "
                            "email' WHERE subscription_id = ? AND kind = 'confirm' AND status = 'queued'",
                            [sid],
                        )
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO deliveries (list_id, subscriber_id, subscription_id, period, status, "
                        "created, kind) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                        [list_id, subscriber_id, sid, period, created, kind],
                    )
                    if cur.rowcount:
                        found[sid] = NoticeQueued(sid, kind, delivery_id=cur.lastrowid)
                    elif kind == "welcome":
                        found[sid] = NoticeQueued(sid, kind, reason="a welcome email was already queued or sent")
                    else:
                        found[sid] = NoticeQueued(sid, kind, reason=f"a confirmation email was already queued at {created}")
        return [found.get(sid) or NoticeQueued(sid, kind, reason="no such subscription") for sid in subscription_ids]

    def queue_import_confirmations(self, list_id: int, emails: Sequence[str], after_subscription_id: int,
                                   now: datetime | None = None) -> int:
        """Queue a confirmation for each pending subscription an import just made on the list
        (id above ``after_subscription_id``, address among ``emails``, one batch of the file). Returns how many."""
        # From the batch's addresses through the unique indexes (CROSS JOIN fixes that order): the work
        # stays per batch, never a walk over everything the import already wrote.
        rows = self.conn.execute(
            "SELECT x.id FROM json_each(?) j CROSS JOIN subscribers s ON s.email = j.value "
            "CROSS JOIN subscriptions x ON x.subscriber_id = s.id AND x.list_id = ? "
            "WHERE x.id > ? AND x.status = 'pending' ORDER BY x.id",
            [dumps(list(emails)), list_id, after_subscription_id],
        ).fetchall()
        return sum(1 for q in self.queue_notices("confirm", [r[0] for r in rows], now) if q.delivery_id is not None)

    def queued_notices(self, subscription_ids: Sequence[int]) -> list[int]:
        """Ids of the notice rows still queued for these subscriptions (to send them at once)."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM deliveries WHERE status = 'queued' AND kind IN (SELECT value FROM json_each(?)) "
            "AND subscription_id IN (SELECT value FROM json_each(?)) ORDER BY id",
            [dumps(list(NOTICE_KINDS)), dumps(list(subscription_ids))],
        )]
