"""Consent records: the events log, suppressions, erasure and per-list stats.

Every consent change appends an :class:`~syndicate.models.Event`; the helpers
here (``_INSERT_EVENT``, ``_event_params``) are what ``store/subscribers.py``
uses to write one in the same transaction as the status it records.
Suppressions are kept by address hash, so they outlive erasure. The tables
themselves are created by the migrations in ``store/subscribers.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import NotFound
from ..models import Event, NewsList, Subscription, utcnow
from .base import StoreBase, iso, parse_time

if TYPE_CHECKING:
    from .outbox import BounceOutcome

_EVENT_COLS = "id, at, kind, source, actor, subscriber_id, list_id, detail"


def _row_to_event(r: sqlite3.Row | tuple[object, ...]) -> Event:
    return Event(
        id=r[0], at=parse_time(r[1]), kind=r[2], source=r[3], actor=r[4],  # type: ignore[arg-type]
        subscriber_id=r[5], list_id=r[6], detail=r[7],  # type: ignore[arg-type]
    )


def _event_params(e: Event) -> list[object]:
    return [iso(e.at), e.kind, e.source, e.actor, e.subscriber_id, e.list_id, e.detail]


_INSERT_EVENT = (
    "INSERT INTO events (at, kind, source, actor, subscriber_id, list_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class ListStats:
    """Counts per status for one list, and its growth since a date."""

    slug: str
    name: str
    active: int = 0
    pending: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    complained: int = 0
    joined: int = 0  # confirmed since ``since``
    left: int = 0  # unsubscribed, bounced or complained since ``since``

    @property
    def growth(self) -> int:
        return self.joined - self.left


LEAVE_KINDS = ("unsubscribe", "bounce", "complaint")

#: What a suppression does to the address's active subscriptions on every list.
SUPPRESSION_STATUS = {"bounced": "bounced", "bounce": "bounced", "complained": "complained",
                      "complaint": "complained"}


def status_for_reason(reason: str) -> str:
    """The subscription status a suppression ``reason`` leaves behind (``unsubscribed`` unless a bounce or complaint)."""
    return SUPPRESSION_STATUS.get(reason, "unsubscribed")


@dataclass(frozen=True)
class ConsentRecord:
    """Proof of consent for one subscription: how and when it was asked, how and when confirmed."""

    subscription_id: int
    asked_at: datetime | None
    asked_via: str  # form | import | admin
    asked_source: str  # web, cli, import:<file>
    asked_ip: str
    asked_user_agent: str
    wording: str  # the list's wording version the person saw
    confirmed_at: datetime | None
    confirmed_via: str  # link | admin | import | resubscribe
    confirmed_ip: str
    confirmed_user_agent: str
    confirmation_message_id: str


_CONSENT_COLS = (
    "subscription_id, asked_at, asked_via, asked_source, asked_ip, asked_user_agent, wording, confirmed_at, "
    "confirmed_via, confirmed_ip, confirmed_user_agent, confirmation_message_id"
)


def _row_to_consent(r: sqlite3.Row | tuple[object, ...], o: int = 0) -> ConsentRecord:
    return ConsentRecord(
        subscription_id=r[o], asked_at=parse_time(r[o + 1]), asked_via=r[o + 2], asked_source=r[o + 3],  # type: ignore[arg-type]
        asked_ip=r[o + 4], asked_user_agent=r[o + 5], wording=r[o + 6],  # type: ignore[arg-type]
        confirmed_at=parse_time(r[o + 7]), confirmed_via=r[o + 8], confirmed_ip=r[o + 9],  # type: ignore[arg-type]
        confirmed_user_agent=r[o + 10], confirmation_message_id=r[o + 11],  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Suppression:
    """One suppressed address hash, with the address if its subscriber still exists."""

    email_hash: str
    reason: str
    at: datetime | None
    email: str = ""  # empty once erased


@dataclass(frozen=True)
class ErasureFacts:
    """What the store did for one erasure, and what it could not reach."""

    subscriptions: int
    sent_messages: int  # digests already handed to a relay or a Maildir: outside the store
    wal_emptied: bool


class ConsentQueries(StoreBase):
    """Named queries for events, suppressions, erasure and list stats."""

    if TYPE_CHECKING:  # provided by SubscriberQueries in the Store

        def all_lists(self) -> list[NewsList]: ...

        def _has_table(self, name: str) -> bool: ...

        def record_bounce(self, delivery_id: int, hard: bool, detail: str, now: datetime | None = None,
                          limit: int = ...) -> BounceOutcome: ...

        def cancel_queued_deliveries(self, subscription_id: int, reason: str = ...) -> int: ...

        def mark_bounced(
            self, subscription_id: int, *, status: str = "bounced", source: str = "bounce", actor: str = "",
            detail: str = "", suppress_hash: str | None = None, suppress: bool = True, now: datetime | None = None,
        ) -> Subscription: ...

    def add_event(self, e: Event) -> Event:
        with self.transaction() as conn:
            cur = conn.execute(_INSERT_EVENT, _event_params(e))
        return Event(**{**e.__dict__, "id": cur.lastrowid})

    def events_for(self, subscriber_id: int) -> list[Event]:
        rows = self.conn.execute(f"SELECT {_EVENT_COLS} FROM events WHERE subscriber_id = ? ORDER BY id", [subscriber_id])
        return [_row_to_event(r) for r in rows]

    def suppression(self, email_hash: str) -> str | None:
        """The reason an address hash is suppressed, or None."""
        value = self.scalar("SELECT reason FROM suppressions WHERE email_hash = ?", [email_hash])
        return str(value) if value is not None else None

    def add_suppression(self, email_hash: str, reason: str, at: datetime | None = None, *, source: str = "system",
                        actor: str = "", detail: str = "", quiet: bool = False) -> int:
        """Suppress an address (by hash): the one write every suppression goes through.

        In the same transaction every ``active`` subscription of that address,
        on every list, leaves (``bounced`` or ``complained`` for those
        reasons, else ``unsubscribed``) with an event each, and what is still
        queued for it is cancelled. Returns how many subscriptions left.
        Unless ``quiet`` (the caller records its own event), a suppression
        that changed no subscription is recorded as a ``suppress`` event.
        """
        at = at or utcnow()
        left = status_for_reason(reason)
        with self.transaction(immediate=True) as conn:
            conn.execute(
                "INSERT INTO suppressions (email_hash, reason, at) VALUES (?, ?, ?) "
                "ON CONFLICT (email_hash) DO UPDATE SET reason = excluded.reason, at = excluded.at",
                [email_hash, reason, iso(at)],
            )
            rows = conn.execute(
                "SELECT t.id, t.subscriber_id, t.list_id FROM subscriptions t JOIN subscribers s "
                "ON s.id = t.subscriber_id WHERE s.email_hash = ? AND t.status = 'active'",
                [email_hash],
            ).fetchall()
            kind = {"bounced": "bounce", "complained": "complaint"}.get(left, "unsubscribe")
            for tid, sid, lid in rows:
                conn.execute("UPDATE subscriptions SET status = ?, unsubscribed = ? WHERE id = ?", [left, iso(at), tid])
                conn.execute(_INSERT_EVENT, [iso(at), kind, source, actor, sid, lid,
                                             detail or f"address suppressed ({reason})"])
            if self._has_table("deliveries"):  # nothing still queued for the address goes out, on any list
                for (tid,) in conn.execute(
                    "SELECT t.id FROM subscriptions t JOIN subscribers s ON s.id = t.subscriber_id "
                    "WHERE s.email_hash = ?", [email_hash],
                ).fetchall():
                    self.cancel_queued_deliveries(tid, f"address suppressed ({reason})")
            if not rows and not quiet:
                subscriber = conn.execute("SELECT id FROM subscribers WHERE email_hash = ?", [email_hash]).fetchone()
                conn.execute(_INSERT_EVENT, [iso(at), "suppress", source, actor,
                                             subscriber[0] if subscriber else None, None, detail or reason])
        return len(rows)

    def remove_suppression(self, email_hash: str, *, source: str = "", actor: str = "", detail: str = "") -> bool:
        """Lift a suppression. With a ``source`` (an admin's decision) it is recorded as an event."""
        with self.transaction() as conn:
            cur = conn.execute("DELETE FROM suppressions WHERE email_hash = ?", [email_hash])
            if cur.rowcount and source:
                subscriber = conn.execute("SELECT id FROM subscribers WHERE email_hash = ?", [email_hash]).fetchone()
                conn.execute(_INSERT_EVENT, [iso(utcnow()), "unsuppress", source, actor,
                                             subscriber[0] if subscriber else None, None, detail])
        return cur.rowcount > 0

    def iter_suppressions(self, reason: str | None = None, batch: int = 1000) -> Iterator[Suppression]:
        """Every suppression (newest first), with the address while its subscriber exists."""
        sql = ("SELECT p.email_hash, p.reason, p.at, coalesce(s.email, '') FROM suppressions p "
               "LEFT JOIN subscribers s ON s.email_hash = p.email_hash")
        params: list[object] = []
        if reason is not None:
            sql += " WHERE p.reason = ?"
            params.append(reason)
        sql += " ORDER BY p.at DESC, p.email_hash"
        yield from self.stream(sql, params, lambda r: Suppression(email_hash=r[0], reason=r[1], at=parse_time(r[2]),
                                                                  email=r[3]), batch=batch)

    # -- proof of consent ------------------------------------------------------

    def record_asked(self, subscription_id: int, *, at: datetime, via: str, source: str, ip: str = "",
                     user_agent: str = "", wording: str = "") -> None:
        """A (new) request to subscribe: replaces the consent record, clearing any earlier confirmation."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO consent (subscription_id, asked_at, asked_via, asked_source, asked_ip, "
                "asked_user_agent, wording) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [subscription_id, iso(at), via, source, ip[:100], user_agent[:500], wording],
            )

    def record_confirmed(self, subscription_id: int, *, at: datetime, via: str, ip: str = "",
                         user_agent: str = "") -> None:
        """How and when a subscription was confirmed (a row is made if none was asked for)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO consent (subscription_id, asked_at, asked_via) VALUES (?, ?, 'unknown') "
                "ON CONFLICT (subscription_id) DO NOTHING",
                [subscription_id, iso(at)],
            )
            conn.execute(
                "UPDATE consent SET confirmed_at = ?, confirmed_via = ?, confirmed_ip = ?, confirmed_user_agent = ? "
                "WHERE subscription_id = ?",
                [iso(at), via, ip[:100], user_agent[:500], subscription_id],
            )

    def set_confirmation_message_id(self, subscription_id: int, message_id: str) -> None:
        """Remember the Message-ID of the confirmation email sent for a subscription (proof it was asked)."""
        with self.transaction() as conn:
            cur = conn.execute("UPDATE consent SET confirmation_message_id = ? WHERE subscription_id = ?",
                               [message_id, subscription_id])
            if cur.rowcount == 0:
                if conn.execute("SELECT 1 FROM subscriptions WHERE id = ?", [subscription_id]).fetchone() is None:
                    raise NotFound(f"no subscription with id {subscription_id}")
                conn.execute(
                    "INSERT INTO consent (subscription_id, asked_at, asked_via, confirmation_message_id) "
                    "VALUES (?, ?, 'unknown', ?)",
                    [subscription_id, iso(utcnow()), message_id],
                )

    def consent_for(self, subscription_id: int) -> ConsentRecord | None:
        row = self.conn.execute(f"SELECT {_CONSENT_COLS} FROM consent WHERE subscription_id = ?",
                                [subscription_id]).fetchone()
        return _row_to_consent(row) if row else None

    def iter_consent(self, list_id: int, batch: int = 1000) -> Iterator[tuple[str, str, ConsentRecord]]:
        """(email, status, record) for every subscription of a list, in subscription order.

        A subscription written without a record (by code that bypassed the
        subscribe and import paths) still appears, as ``asked_via="unknown (no record)"``.
        """
        text = ("asked_source", "asked_ip", "asked_user_agent", "wording")
        tail = ("confirmed_via", "confirmed_ip", "confirmed_user_agent", "confirmation_message_id")
        yield from self.stream(
            "SELECT s.email, t.status, t.id, coalesce(c.asked_at, t.created), "
            "coalesce(c.asked_via, 'unknown (no record)'), "
            + ", ".join(f"coalesce(c.{name}, '')" for name in text) + ", c.confirmed_at, "
            + ", ".join(f"coalesce(c.{name}, '')" for name in tail)
            + " FROM subscriptions t JOIN subscribers s ON s.id = t.subscriber_id "
            "LEFT JOIN consent c ON c.subscription_id = t.id WHERE t.list_id = ? ORDER BY t.id",
            [list_id], lambda r: (str(r[0]), str(r[1]), _row_to_consent(r, 2)), batch=batch,
        )

    def pending_without_confirmation(self, list_id: int | None = None) -> list[int]:
        """Ids of pending subscriptions no confirmation email was recorded for (e.g. imported as pending)."""
        sql = ("SELECT t.id FROM subscriptions t LEFT JOIN consent c ON c.subscription_id = t.id "
               "WHERE t.status = 'pending' AND coalesce(c.confirmation_message_id, '') = ''")
        params: list[object] = []
        if list_id is not None:
            sql += " AND t.list_id = ?"
            params.append(list_id)
        return [int(r[0]) for r in self.conn.execute(sql + " ORDER BY t.id", params)]

    # -- bounces and complaints ------------------------------------------------------

    def record_delivery_bounce(self, delivery_id: int, hard: bool, detail: str,
                               now: datetime | None = None) -> BounceOutcome | None:
        """Count a bounce for one delivery at most once: None if this delivery's hard bounce was already counted.

        The outbox marks a delivery ``bounced`` when it counts its hard bounce
        (here or when the relay refused it at once), so the same DSN read
        again, or a second DSN for the same message, changes nothing.
        """
        with self.transaction(immediate=True) as conn:
            row = conn.execute("SELECT bounced FROM deliveries WHERE id = ?", [delivery_id]).fetchone()
            if row is None:
                raise NotFound(f"no delivery with id {delivery_id} (a bounce for a deleted or foreign message?)")
            if hard and row[0]:
                return None
            return self.record_bounce(delivery_id, hard, detail, now=now)

    def record_complaint(self, delivery_id: int, detail: str, now: datetime | None = None) -> bool:
        """A complaint about one delivery: its subscription becomes ``complained``, the address is
        suppressed on every list, queued mail is cancelled. False if it was already complained (nothing changes)."""
        with self.transaction(immediate=True) as conn:
            row = conn.execute("SELECT subscription_id FROM deliveries WHERE id = ?", [delivery_id]).fetchone()
            if row is None:
                raise NotFound(f"no delivery with id {delivery_id} (a complaint about a deleted or foreign message?)")
            return self.record_subscription_complaint(int(row[0]), detail, now=now)

    def record_subscription_complaint(self, subscription_id: int, detail: str, now: datetime | None = None) -> bool:
        """A complaint about mail for one subscription (a digest, or its confirmation email); see :meth:`record_complaint`."""
        with self.transaction(immediate=True) as conn:
            row = conn.execute("SELECT status FROM subscriptions WHERE id = ?", [subscription_id]).fetchone()
            if row is None:
                raise NotFound(f"no subscription with id {subscription_id}")
            if row[0] == "complained":
                return False
            self.mark_bounced(subscription_id, status="complained", source="complaint", detail=detail, now=now)
            if self._has_table("deliveries"):
                self.cancel_queued_deliveries(subscription_id)
        return True

    def subscription_by_confirmation_message_id(self, message_id: str) -> int | None:
        """The subscription whose confirmation email had this Message-ID, or None."""
        bare = message_id.strip().strip("<>")
        if not bare:
            return None
        value = self.scalar("SELECT subscription_id FROM consent WHERE confirmation_message_id IN (?, ?) LIMIT 1",
                            [bare, f"<{bare}>"])
        return int(value) if value is not None else None

    def delivery_by_message_id(self, message_id: str) -> int | None:
        """The delivery that was sent with this Message-ID (angle brackets optional), or None."""
        bare = message_id.strip().strip("<>")
        if not bare or not self._has_table("deliveries"):
            return None
        value = self.scalar("SELECT id FROM deliveries WHERE message_id IN (?, ?) ORDER BY id LIMIT 1",
                            [bare, f"<{bare}>"])
        return int(value) if value is not None else None

    def erase_subscriber(self, subscriber_id: int, email_hash: str, event: Event) -> ErasureFacts:
        """Remove a person: subscriptions, consent records, deliveries, the subscriber row; blank their events.

        Events stay (for counts) but lose actor, detail and the link to the
        subscriber. Only ``email_hash`` is kept, as an ``erased`` suppression.
        ``secure_delete`` overwrites the freed bytes, and the write-ahead log
        is checkpointed and truncated afterwards, so the address is not left
        in the WAL either. Returns what was removed and what is out of reach.
        """
        self.conn.execute("PRAGMA secure_delete = ON")
        with self.transaction(immediate=True) as conn:
            sent = 0
            if self._has_table("deliveries"):
                sent = int(conn.execute(
                    "SELECT count(*) FROM deliveries WHERE subscriber_id = ? AND status IN ('sent', 'unknown')",
                    [subscriber_id],
                ).fetchone()[0])
                conn.execute("DELETE FROM deliveries WHERE subscriber_id = ?", [subscriber_id])
            n = conn.execute("DELETE FROM subscriptions WHERE subscriber_id = ?", [subscriber_id]).rowcount
            conn.execute(
                "UPDATE events SET actor = '', detail = '', subscriber_id = NULL WHERE subscriber_id = ?",
                [subscriber_id],
            )
            conn.execute("DELETE FROM subscribers WHERE id = ?", [subscriber_id])
            conn.execute(
                "INSERT INTO suppressions (email_hash, reason, at) VALUES (?, 'erased', ?) "
                "ON CONFLICT (email_hash) DO UPDATE SET reason = 'erased', at = excluded.at",
                [email_hash, iso(event.at)],
            )
            conn.execute(_INSERT_EVENT, _event_params(event))
        return ErasureFacts(subscriptions=int(n), sent_messages=sent, wal_emptied=self.checkpoint_wal())

    def checkpoint_wal(self) -> bool:
        """Copy the write-ahead log into the database and truncate it. False if a reader kept it from finishing."""
        busy, _log, _done = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    # -- stats -------------------------------------------------------------------

    def list_stats(self, since: datetime) -> list[ListStats]:
        """Per list: subscriptions by status, and joins/leaves recorded since ``since``."""
        out = []
        for nl in self.all_lists():
            counts = dict(
                self.conn.execute(
                    "SELECT status, count(*) FROM subscriptions WHERE list_id = ? GROUP BY status", [nl.id]
                ).fetchall()
            )
            joined = self.scalar(
                "SELECT count(*) FROM events WHERE list_id = ? AND at >= ? AND (kind IN ('confirm', 'admin-add') "
                "OR (kind IN ('import', 'resubscribe') AND detail LIKE 'active%'))",
                [nl.id, iso(since)],
            )
            left = self.scalar(
                f"SELECT count(*) FROM events WHERE list_id = ? AND at >= ? AND kind IN "
                f"({', '.join('?' for _ in LEAVE_KINDS)})",
                [nl.id, iso(since), *LEAVE_KINDS],
            )
            out.append(ListStats(
                slug=nl.slug, name=nl.name, active=counts.get("active", 0), pending=counts.get("pending", 0),
                unsubscribed=counts.get("unsubscribed", 0), bounced=counts.get("bounced", 0),
                complained=counts.get("complained", 0), joined=int(joined), left=int(left),
            ))
        return out
