"""Lists, subscribers and subscriptions, and the migrations for all subscriber tables.

Every SQL statement about who receives what lives here; the events log,
suppressions, erasure and stats queries are in ``store/consent.py``, the bulk
import writes in ``store/imports.py`` (a base of :class:`SubscriberQueries`). Statuses
move only through methods that also append an :class:`Event` in the same
transaction, so the consent history can never disagree with the state.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from sqlite_utils import Database, Migrations

from ..errors import InputError, NotFound
from ..models import Event, NewsList, Subscriber, Subscription, to_iso, utcnow
from .base import dumps, iso, parse_time
from .consent import _INSERT_EVENT, _event_params
from .imports import LEFT_STATUSES, ImportOutcome, ImportQueries, ImportRow, chunked

migrations = Migrations("syndicate.subscribers")

# Hard bounces (5xx, or DSN status 5.x.x) after which a subscription is set `bounced`.
HARD_BOUNCE_LIMIT = 3



def email_hash(email: str) -> str:
    """sha256 of the address, blind to case: what suppressions keep after erasure."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


@migrations()
def m001_lists_and_subscribers(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE lists (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            slug TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            sender_name TEXT NOT NULL DEFAULT '',
            sender_address TEXT NOT NULL DEFAULT '',
            categories TEXT NOT NULL DEFAULT '[]',
            cadence TEXT NOT NULL DEFAULT 'daily' CHECK (cadence IN ('daily', 'weekly')),
            weekday INTEGER NOT NULL DEFAULT 0 CHECK (weekday BETWEEN 0 AND 6),
            send_hour INTEGER NOT NULL DEFAULT 7 CHECK (send_hour BETWEEN 0 AND 23),
            language TEXT NOT NULL DEFAULT 'vi',
            created TEXT NOT NULL
        )
        """
    )
    # AUTOINCREMENT: an erased subscriber's id is never given to someone else,
    # so an old signed link can never act on a new person.
    db.execute(
        """
        CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            name TEXT NOT NULL DEFAULT '',
            timezone TEXT NOT NULL DEFAULT 'Asia/Ho_Chi_Minh',
            locale TEXT NOT NULL DEFAULT 'vi',
            created TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE subscriptions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
            list_id INTEGER NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')),
            cadence TEXT NOT NULL DEFAULT 'daily' CHECK (cadence IN ('daily', 'weekly')),
            weekday INTEGER NOT NULL DEFAULT 0 CHECK (weekday BETWEEN 0 AND 6),
            send_hour INTEGER NOT NULL DEFAULT 7 CHECK (send_hour BETWEEN 0 AND 23),
            categories TEXT NOT NULL DEFAULT '[]',
            created TEXT NOT NULL,
            confirmed TEXT,
            unsubscribed TEXT,
            last_period TEXT NOT NULL DEFAULT '',
            last_sent_at TEXT,
            hard_bounces INTEGER NOT NULL DEFAULT 0,
            UNIQUE (subscriber_id, list_id)
        )
        """
    )
    db.execute("CREATE INDEX subscriptions_list_status ON subscriptions (list_id, status, id)")
    db.execute(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            actor TEXT NOT NULL DEFAULT '',
            subscriber_id INTEGER,
            list_id INTEGER,
            detail TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute("CREATE INDEX events_subscriber ON events (subscriber_id, id)")
    db.execute("CREATE INDEX events_list_at ON events (list_id, at)")
    db.execute(
        """
        CREATE TABLE suppressions (
            email_hash TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            at TEXT NOT NULL
        )
        """
    )



@migrations()
def m002_consent_records(db: Database) -> None:
    """Proof of consent per subscription, and the suppression rule in the schema itself.

    ``subscribers.email_hash`` (the same sha256 the suppressions keep) lets
    two triggers refuse, whoever writes, an ``active`` subscription for a
    suppressed address: the only way to ``active`` is to lift the suppression
    first, which only a confirmation or an admin's resubscribe does.
    """
    db.execute("ALTER TABLE subscribers ADD COLUMN email_hash TEXT NOT NULL DEFAULT ''")
    for sid, email in db.execute("SELECT id, email FROM subscribers").fetchall():
        db.execute("UPDATE subscribers SET email_hash = ? WHERE id = ?", [email_hash(email), sid])
    db.execute("CREATE INDEX subscribers_email_hash ON subscribers (email_hash)")
    db.execute(
        """
        CREATE TABLE consent (
            subscription_id INTEGER PRIMARY KEY REFERENCES subscriptions (id) ON DELETE CASCADE,
            asked_at TEXT NOT NULL,
            asked_via TEXT NOT NULL DEFAULT '',
            asked_source TEXT NOT NULL DEFAULT '',
            asked_ip TEXT NOT NULL DEFAULT '',
            asked_user_agent TEXT NOT NULL DEFAULT '',
            wording TEXT NOT NULL DEFAULT '',
            confirmed_at TEXT,
            confirmed_via TEXT NOT NULL DEFAULT '',
            confirmed_ip TEXT NOT NULL DEFAULT '',
            confirmed_user_agent TEXT NOT NULL DEFAULT '',
            confirmation_message_id TEXT NOT NULL DEFAULT ''
        )
        """
    )
    # Subscriptions made before this migration: what the store already knows.
    db.execute(
        "INSERT INTO consent (subscription_id, asked_at, asked_via, confirmed_at, confirmed_via) "
        "SELECT id, created, 'unknown (before consent records)', confirmed, "
        "CASE WHEN confirmed IS NULL THEN '' ELSE 'unknown (before consent records)' END FROM subscriptions"
    )
    # Repair what the old import allowed: an active subscription of a suppressed address leaves now, with an event.
    stale = db.execute(
        "SELECT t.id, t.subscriber_id, t.list_id, p.reason FROM subscriptions t JOIN subscribers s "
        "ON s.id = t.subscriber_id JOIN suppressions p ON p.email_hash = s.email_hash WHERE t.status = 'active'"
    ).fetchall()
    for tid, sid, lid, reason in stale:
        left = {"bounced": "bounced", "complained": "complained", "complaint": "complained"}.get(reason, "unsubscribed")
        db.execute("UPDATE subscriptions SET status = ?, unsubscribed = ? WHERE id = ?", [left, to_iso(utcnow()), tid])
        db.execute(
            "INSERT INTO events (at, kind, source, actor, subscriber_id, list_id, detail) VALUES (?, ?, 'migration', '', ?, ?, ?)",
            [to_iso(utcnow()), {"bounced": "bounce", "complained": "complaint"}.get(left, "unsubscribe"), sid, lid,
             f"address was suppressed ({reason}) but active; stopped when upgrading"],
        )
    guard = (
        "WHEN NEW.status = 'active' AND EXISTS (SELECT 1 FROM suppressions p JOIN subscribers s "
        "ON s.email_hash = p.email_hash WHERE s.id = NEW.subscriber_id) "
        "BEGIN SELECT RAISE(ABORT, 'suppressed address: lift the suppression (confirmation or resubscribe) "
        "before making it active'); END"
    )
    db.execute(f"CREATE TRIGGER subscriptions_suppressed_insert BEFORE INSERT ON subscriptions {guard}")
    db.execute(f"CREATE TRIGGER subscriptions_suppressed_update BEFORE UPDATE OF status ON subscriptions {guard}")
    db.execute(
        "CREATE TRIGGER subscribers_need_hash BEFORE INSERT ON subscribers WHEN NEW.email_hash = '' "
        "BEGIN SELECT RAISE(ABORT, 'subscribers.email_hash is required'); END"
    )


@migrations()
def m003_list_welcome(db: Database) -> None:
    """A list may turn off the welcome email sent once a subscription is confirmed."""
    db.execute("ALTER TABLE lists ADD COLUMN welcome INTEGER NOT NULL DEFAULT 1")


# -- row mapping ---------------------------------------------------------------

_LIST_COLS = (
    "id, slug, name, description, sender_name, sender_address, categories, cadence, weekday, send_hour, language, "
    "created, max_age_days, welcome"
)
_SUBSCRIBER_COLS = "id, email, name, timezone, locale, created"
_SUBSCRIPTION_COLS = (
    "id, subscriber_id, list_id, status, cadence, weekday, send_hour, categories, created, confirmed, "
    "unsubscribed, last_period, last_sent_at, hard_bounces"
)


def _row_to_list(r: sqlite3.Row | tuple[object, ...]) -> NewsList:
    return NewsList(
        id=r[0], slug=r[1], name=r[2], description=r[3], sender_name=r[4], sender_address=r[5],  # type: ignore[arg-type]
        categories=json.loads(r[6]), cadence=r[7], weekday=r[8], send_hour=r[9], language=r[10],  # type: ignore[arg-type]
        created=parse_time(r[11]), max_age_days=r[12], welcome=bool(r[13]),  # type: ignore[arg-type]
    )


def _row_to_subscriber(r: sqlite3.Row | tuple[object, ...], offset: int = 0) -> Subscriber:
    o = offset
    return Subscriber(
        id=r[o], email=r[o + 1], name=r[o + 2], timezone=r[o + 3], locale=r[o + 4],  # type: ignore[arg-type]
        created=parse_time(r[o + 5]),  # type: ignore[arg-type]
    )


def _row_to_subscription(r: sqlite3.Row | tuple[object, ...], offset: int = 0) -> Subscription:
    o = offset
    return Subscription(
        id=r[o], subscriber_id=r[o + 1], list_id=r[o + 2], status=r[o + 3], cadence=r[o + 4],  # type: ignore[arg-type]
        weekday=r[o + 5], send_hour=r[o + 6], categories=json.loads(r[o + 7]),  # type: ignore[arg-type]
        created=parse_time(r[o + 8]), confirmed=parse_time(r[o + 9]),  # type: ignore[arg-type]
        unsubscribed=parse_time(r[o + 10]), last_period=r[o + 11],  # type: ignore[arg-type]
        last_sent_at=parse_time(r[o + 12]), hard_bounces=r[o + 13],  # type: ignore[arg-type]
    )


class SubscriberQueries(ImportQueries):
    """Named queries for lists, subscribers, subscriptions and bulk import."""

    if TYPE_CHECKING:  # provided by ConsentQueries in the Store

        def add_suppression(self, email_hash: str, reason: str, at: datetime | None = None, *, source: str = "system",
                            actor: str = "", detail: str = "", quiet: bool = False) -> int: ...

    # -- lists ---------------------------------------------------------------

    def create_list(self, nl: NewsList, now: datetime | None = None) -> NewsList:
        nl.created = nl.created or now or utcnow()
        try:
            with self.transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO lists (slug, name, description, sender_name, sender_address, categories, "
                    "cadence, weekday, send_hour, language, created, max_age_days, welcome) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [nl.slug, nl.name, nl.description, nl.sender_name, nl.sender_address, dumps(nl.categories),
                     nl.cadence, nl.weekday, nl.send_hour, nl.language, iso(nl.created), nl.max_age_days,
                     1 if nl.welcome else 0],
                )
        except sqlite3.IntegrityError:
            raise InputError(f"a list with slug {nl.slug!r} already exists (use `syndicate list update`)") from None
        nl.id = cur.lastrowid
        return nl

    def update_list(self, nl: NewsList) -> NewsList:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE lists SET name = ?, description = ?, sender_name = ?, sender_address = ?, categories = ?, "
                "cadence = ?, weekday = ?, send_hour = ?, language = ?, max_age_days = ?, welcome = ? WHERE id = ?",
                [nl.name, nl.description, nl.sender_name, nl.sender_address, dumps(nl.categories),
                 nl.cadence, nl.weekday, nl.send_hour, nl.language, nl.max_age_days, 1 if nl.welcome else 0, nl.id],
            )
        return nl

    def get_list(self, slug: str) -> NewsList:
        """The list with this slug; NotFound names the slug."""
        row = self.conn.execute(f"SELECT {_LIST_COLS} FROM lists WHERE slug = ?", [slug]).fetchone()
        if row is None:
            raise NotFound(f"no list with slug {slug!r} (see `syndicate list ls`)")
        return _row_to_list(row)

    def get_list_by_id(self, list_id: int) -> NewsList:
        row = self.conn.execute(f"SELECT {_LIST_COLS} FROM lists WHERE id = ?", [list_id]).fetchone()
        if row is None:
            raise NotFound(f"no list with id {list_id}")
        return _row_to_list(row)

    def all_lists(self) -> list[NewsList]:
        return [_row_to_list(r) for r in self.conn.execute(f"SELECT {_LIST_COLS} FROM lists ORDER BY slug")]

    def remove_list(self, list_id: int) -> None:
        """Delete a list and its subscriptions (deliveries of it go too, if the outbox keeps any)."""
        with self.transaction(immediate=True) as conn:
            if self._has_table("deliveries"):
                conn.execute("DELETE FROM deliveries WHERE list_id = ?", [list_id])
            conn.execute("DELETE FROM subscriptions WHERE list_id = ?", [list_id])
            conn.execute("DELETE FROM lists WHERE id = ?", [list_id])

    def _has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]).fetchone() is not None

    # -- subscribers -----------------------------------------------------------

    def find_subscriber(self, email: str) -> Subscriber | None:
        """The subscriber with this (normalised) address, or None."""
        row = self.conn.execute(f"SELECT {_SUBSCRIBER_COLS} FROM subscribers WHERE email = ?", [email]).fetchone()
        return _row_to_subscriber(row) if row else None

    def get_subscriber(self, email: str) -> Subscriber:
        """The subscriber with this (normalised) address; NotFound names it."""
        sub = self.find_subscriber(email)
        if sub is None:
            raise NotFound(f"no subscriber {email!r} (see `syndicate subscriber ls`)")
        return sub

    def get_subscriber_by_id(self, subscriber_id: int) -> Subscriber:
        row = self.conn.execute(f"SELECT {_SUBSCRIBER_COLS} FROM subscribers WHERE id = ?", [subscriber_id]).fetchone()
        if row is None:
            raise NotFound(f"no subscriber with id {subscriber_id} (erased, or never existed)")
        return _row_to_subscriber(row)

    def add_subscriber(self, s: Subscriber, now: datetime | None = None) -> Subscriber:
        s.created = s.created or now or utcnow()
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO subscribers (email, name, timezone, locale, created, email_hash) VALUES (?, ?, ?, ?, ?, ?)",
                [s.email, s.name, s.timezone, s.locale, iso(s.created), email_hash(s.email)],
            )
        s.id = cur.lastrowid
        return s

    def update_subscriber(self, s: Subscriber) -> Subscriber:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE subscribers SET name = ?, timezone = ?, locale = ? WHERE id = ?",
                [s.name, s.timezone, s.locale, s.id],
            )
        return s

    def count_subscribers(self) -> int:
        return int(self.scalar("SELECT count(*) FROM subscribers"))

    # -- subscriptions ---------------------------------------------------------

    def find_subscription(self, subscriber_id: int, list_id: int) -> Subscription | None:
        row = self.conn.execute(
            f"SELECT {_SUBSCRIPTION_COLS} FROM subscriptions WHERE subscriber_id = ? AND list_id = ?",
            [subscriber_id, list_id],
        ).fetchone()
        return _row_to_subscription(row) if row else None

    def get_subscription(self, subscriber_id: int, list_id: int) -> Subscription:
        found = self.find_subscription(subscriber_id, list_id)
        if found is None:
            raise NotFound(f"subscriber {subscriber_id} has no subscription to list {list_id}")
        return found

    def get_subscription_by_id(self, subscription_id: int) -> Subscription:
        row = self.conn.execute(
            f"SELECT {_SUBSCRIPTION_COLS} FROM subscriptions WHERE id = ?", [subscription_id]
        ).fetchone()
        if row is None:
            raise NotFound(f"no subscription with id {subscription_id}")
        return _row_to_subscription(row)

    def subscriptions_of(self, subscriber_id: int) -> list[Subscription]:
        rows = self.conn.execute(
            f"SELECT {_SUBSCRIPTION_COLS} FROM subscriptions WHERE subscriber_id = ? ORDER BY id", [subscriber_id]
        )
        return [_row_to_subscription(r) for r in rows]

    def save_subscription(self, s: Subscription, event: Event | None = None) -> Subscription:
        """Insert or update a subscription, appending ``event`` in the same transaction."""
        values = [s.status, s.cadence, s.weekday, s.send_hour, dumps(s.categories), iso(s.created or utcnow()),
                  iso(s.confirmed), iso(s.unsubscribed), s.last_period, iso(s.last_sent_at), s.hard_bounces]
        with self.transaction() as conn:
            if s.id is None:
                cur = conn.execute(
                    "INSERT INTO subscriptions (status, cadence, weekday, send_hour, categories, created, confirmed, "
                    "unsubscribed, last_period, last_sent_at, hard_bounces, subscriber_id, list_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [*values, s.subscriber_id, s.list_id],
                )
                s.id = cur.lastrowid
            else:
                conn.execute(
                    "UPDATE subscriptions SET status = ?, cadence = ?, weekday = ?, send_hour = ?, categories = ?, "
                    "created = ?, confirmed = ?, unsubscribed = ?, last_period = ?, last_sent_at = ?, "
                    "hard_bounces = ? WHERE id = ?",
                    [*values, s.id],
                )
            if event is not None:
                conn.execute(_INSERT_EVENT, _event_params(event))
        return s

    def iter_subscriptions(
        self, list_id: int | None = None, status: str | None = None, batch: int = 1000, only_subscribed: bool = False
    ) -> Iterator[tuple[Subscriber, Subscription | None, str]]:
        """Every subscriber (with each subscription and its list slug), streamed in id order.

        Subscribers without any subscription appear once with ``None`` unless a
        list or status filter is given.
        """
        where: list[str] = []
        params: list[object] = []
        if list_id is not None:
            where.append("t.list_id = ?")
            params.append(list_id)
        if status is not None:
            where.append("t.status = ?")
            params.append(status)
        join = "JOIN" if where or only_subscribed else "LEFT JOIN"
        sql = (
            f"SELECT {', '.join('s.' + c.strip() for c in _SUBSCRIBER_COLS.split(','))}, "
            f"{', '.join('t.' + c.strip() for c in _SUBSCRIPTION_COLS.split(','))}, l.slug "
            f"FROM subscribers s {join} subscriptions t ON t.subscriber_id = s.id "
            f"LEFT JOIN lists l ON l.id = t.list_id"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.id, t.id"
        yield from self.stream(sql, params, self._subscriber_row, batch=batch)

    def count_subscription_rows(self, list_id: int | None = None, status: str | None = None) -> int:
        """How many rows :meth:`iter_subscriptions` yields for the same filters (one count query)."""
        where: list[str] = []
        params: list[object] = []
        if list_id is not None:
            where.append("t.list_id = ?")
            params.append(list_id)
        if status is not None:
            where.append("t.status = ?")
            params.append(status)
        if not where:  # each subscription, plus each subscriber holding none
            return int(self.scalar(
                "SELECT (SELECT count(*) FROM subscriptions) + (SELECT count(*) FROM subscribers s "
                "WHERE NOT EXISTS (SELECT 1 FROM subscriptions t WHERE t.subscriber_id = s.id))"
            ))
        return int(self.scalar(
            "SELECT count(*) FROM subscriptions t JOIN subscribers s ON s.id = t.subscriber_id WHERE "
            + " AND ".join(where), params,
        ))

    @staticmethod
    def _subscriber_row(r: tuple[object, ...]) -> tuple[Subscriber, Subscription | None, str]:
        sub = _row_to_subscriber(r)
        tail = _row_to_subscription(r, 6) if r[6] is not None else None
        return sub, tail, str(r[-1] or "")

    def iter_active_subscriptions(self, list_id: int, batch: int = 1000) -> Iterator[tuple[Subscription, Subscriber]]:
        """Active subscriptions of a list with their subscribers, streamed in subscription id order."""
        sql = (
            f"SELECT {', '.join('t.' + c.strip() for c in _SUBSCRIPTION_COLS.split(','))}, "
            f"{', '.join('s.' + c.strip() for c in _SUBSCRIBER_COLS.split(','))} "
            "FROM subscriptions t JOIN subscribers s ON s.id = t.subscriber_id "
            "WHERE t.list_id = ? AND t.status = 'active' ORDER BY t.id"
        )

        def convert(r: tuple[object, ...]) -> tuple[Subscription, Subscriber]:
            return _row_to_subscription(r), _row_to_subscriber(r, 14)

        yield from self.stream(sql, [list_id], convert, batch=batch)

    def count_subscriptions(self, list_id: int, status: str | None = None) -> int:
        if status is None:
            return int(self.scalar("SELECT count(*) FROM subscriptions WHERE list_id = ?", [list_id]))
        return int(
            self.scalar("SELECT count(*) FROM subscriptions WHERE list_id = ? AND status = ?", [list_id, status])
        )

    def set_last_period(self, subscription_id: int, period: str, at: datetime) -> None:
        """Remember the last period a digest went out for (the sender calls this)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE subscriptions SET last_period = ?, last_sent_at = ? WHERE id = ?",
                [period, iso(at), subscription_id],
            )

    def mark_bounced(
        self, subscription_id: int, *, status: str = "bounced", source: str = "bounce", actor: str = "",
        detail: str = "", suppress_hash: str | None = None, suppress: bool = True, now: datetime | None = None,
    ) -> Subscription:
        """Set a subscription to ``bounced`` or ``complained``, with an event.

        Unless ``suppress`` is False the address is also suppressed (by hash), so
        no import or admin add makes it active on any list without ``--resubscribe``.
        """
        if status not in ("bounced", "complained"):
            raise ValueError(f"mark_bounced: status must be bounced or complained, not {status!r}")
        now = now or utcnow()
        with self.transaction(immediate=True):
            s = self.get_subscription_by_id(subscription_id)
            s.status, s.unsubscribed = status, now
            kind = "bounce" if status == "bounced" else "complaint"
            self.save_subscription(
                s, Event(kind=kind, at=now, source=source, actor=actor, subscriber_id=s.subscriber_id,
                         list_id=s.list_id, detail=detail),
            )
            if suppress_hash is None and suppress:
                suppress_hash = email_hash(self.get_subscriber_by_id(s.subscriber_id).email)
            if suppress_hash:
                self.add_suppression(suppress_hash, status, now, source=source, actor=actor,
                                     detail=f"address suppressed ({status} on another list)", quiet=True)
        return s

    def record_hard_bounce(
        self, subscription_id: int, threshold: int = HARD_BOUNCE_LIMIT, *, detail: str = "", source: str = "bounce",
        now: datetime | None = None,
    ) -> bool:
        """Count a hard bounce; at ``threshold`` bounces the subscription becomes ``bounced``. True if it did."""
        now = now or utcnow()
        with self.transaction(immediate=True) as conn:
            conn.execute("UPDATE subscriptions SET hard_bounces = hard_bounces + 1 WHERE id = ?", [subscription_id])
            s = self.get_subscription_by_id(subscription_id)
            conn.execute(
                _INSERT_EVENT,
                _event_params(Event(kind="hard-bounce", at=now, source=source, subscriber_id=s.subscriber_id,
                                    list_id=s.list_id, detail=detail or f"hard bounce {s.hard_bounces}")),
            )
            if s.hard_bounces >= threshold and s.status in ("active", "pending"):
                self.mark_bounced(subscription_id, source=source, detail=f"{s.hard_bounces} hard bounces", now=now)
                return True
        return False

    def purge_pending(self, before: datetime, source: str = "cli", actor: str = "") -> int:
        """Delete pending subscriptions created before ``before``; one event each. Returns how many."""
        with self.transaction(immediate=True) as conn:
            rows = conn.execute(
                "SELECT id, subscriber_id, list_id FROM subscriptions WHERE status = 'pending' AND created < ?",
                [iso(before)],
            ).fetchall()
            now = iso(utcnow())
            conn.executemany(
                _INSERT_EVENT,
                [[now, "purge", source, actor, r[1], r[2], "pending, never confirmed"] for r in rows],
            )
            conn.executemany("DELETE FROM subscriptions WHERE id = ?", [[r[0]] for r in rows])
        return len(rows)


__all__ = ["HARD_BOUNCE_LIMIT", "LEFT_STATUSES", "ImportOutcome", "ImportRow", "SubscriberQueries", "chunked",
           "email_hash", "migrations"]


# -- migrations appended later (each a new function; never edit one that shipped) ----------


@migrations()
def m100_digest_arrival(db: Database) -> None:
    """Digests by arrival order: each list's age cap, each subscription's high-water mark.

    ``lists.max_age_days`` (default 7): a digest never carries an article
    published longer ago, so importing an archive floods no one.
    ``subscriptions.last_seq``: the arrival number (``articles.seq``) the
    subscription's latest planned digest covered; NULL before its first. A
    subscription that already had digests covers every article published by
    the end of its last window (``last_sent_at``): the old rule sent those or
    never would, so none is sent twice; later ones come in its next digest.
    """
    db.execute(
        "ALTER TABLE lists ADD COLUMN max_age_days INTEGER NOT NULL DEFAULT 7 CHECK (max_age_days BETWEEN 1 AND 36500)"
    )
    db.execute("ALTER TABLE subscriptions ADD COLUMN last_seq INTEGER")
    db.execute(
        "UPDATE subscriptions SET last_seq = coalesce((SELECT max(a.seq) FROM articles a "
        "WHERE a.published <= subscriptions.last_sent_at), 0) WHERE last_sent_at IS NOT NULL"
    )
