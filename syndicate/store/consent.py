"""Consent records: the events log, suppressions, erasure and per-list stats.

Every consent change appends an :class:`~syndicate.models.Event`; the helpers
here (``_INSERT_EVENT``, ``_event_params``) are what ``store/subscribers.py``
uses to write one in the same transaction as the status it records.
Suppressions are kept by address hash, so they outlive erasure. The tables
themselves are created by the migrations in ``store/subscribers.py``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..models import Event, NewsList, utcnow
from .base import StoreBase, iso, parse_time

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


class ConsentQueries(StoreBase):
    """Named queries for events, suppressions, erasure and list stats."""

    if TYPE_CHECKING:  # provided by SubscriberQueries in the Store

        def all_lists(self) -> list[NewsList]: ...

        def _has_table(self, name: str) -> bool: ...

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

    def add_suppression(self, email_hash: str, reason: str, at: datetime | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO suppressions (email_hash, reason, at) VALUES (?, ?, ?) "
                "ON CONFLICT (email_hash) DO UPDATE SET reason = excluded.reason, at = excluded.at",
                [email_hash, reason, iso(at or utcnow())],
            )

    def remove_suppression(self, email_hash: str) -> bool:
        with self.transaction() as conn:
            cur = conn.execute("DELETE FROM suppressions WHERE email_hash = ?", [email_hash])
        return cur.rowcount > 0

    def erase_subscriber(self, subscriber_id: int, email_hash: str, event: Event) -> int:
        """Remove a person: subscriptions, deliveries, the subscriber row; blank their events.

        Events stay (for counts) but lose actor, detail and the link to the
        subscriber. Only ``email_hash`` is kept, as an ``erased`` suppression.
        Returns the number of subscriptions removed.
        """
        with self.transaction(immediate=True) as conn:
            if self._has_table("deliveries"):
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
        return int(n)

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
