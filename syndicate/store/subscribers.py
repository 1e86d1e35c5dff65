"""Lists, subscribers and subscriptions, and the migrations for all subscriber tables.

Every SQL statement about who receives what lives here; the events log,
suppressions, erasure and stats queries are in ``store/consent.py``. Statuses
move only through methods that also append an :class:`Event` in the same
transaction, so the consent history can never disagree with the state.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlite_utils import Database, Migrations

from ..errors import InputError, NotFound
from ..models import Event, NewsList, Subscriber, Subscription, to_iso, utcnow
from .base import StoreBase, dumps, iso, parse_time
from .consent import _INSERT_EVENT, _event_params

migrations = Migrations("syndicate.subscribers")

# Hard bounces (5xx, or DSN status 5.x.x) after which a subscription is set `bounced`.
HARD_BOUNCE_LIMIT = 3

LEFT_STATUSES = ("unsubscribed", "bounced", "complained")


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
def m003_list_welcome(db: Database) -> None:
    """A list may turn off the welcome email sent once a subscription is confirmed."""
    db.execute("ALTER TABLE lists ADD COLUMN welcome INTEGER NOT NULL DEFAULT 1")


# -- row mapping ---------------------------------------------------------------

_LIST_COLS = (
    "id, slug, name, description, sender_name, sender_address, categories, cadence, weekday, send_hour, language, "
    "created, welcome"
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
        created=parse_time(r[11]), welcome=bool(r[12]),  # type: ignore[arg-type]
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


# -- bulk import shapes ----------------------------------------------------------


@dataclass
class ImportRow:
    """One validated CSV row, ready to write. ``line`` is its line in the file."""

    line: int
    email: str
    email_hash: str
    name: str = ""
    timezone: str = ""
    locale: str = ""
    cadence: str = ""
    weekday: int | None = None
    send_hour: int | None = None
    categories: list[str] | None = None
    list_slug: str = ""
    status: str = "pending"  # what the new subscription gets
    created: datetime | None = None
    confirmed: datetime | None = None
    unsubscribed: datetime | None = None
    raw: list[str] = field(default_factory=list)  # the row as read, for the rejects file


@dataclass
class ImportOutcome:
    """What one batch did; ``skipped`` holds (row, reason) for the report."""

    new_subscribers: int = 0
    new_subscriptions: int = 0
    resubscribed: int = 0
    skipped: list[tuple[ImportRow, str]] = field(default_factory=list)


class SubscriberQueries(StoreBase):
    """Named queries for lists, subscribers, subscriptions and bulk import."""

    if TYPE_CHECKING:  # provided by ConsentQueries in the Store

        def add_suppression(self, email_hash: str, reason: str, at: datetime | None = None) -> None: ...

    # -- lists ---------------------------------------------------------------

    def create_list(self, nl: NewsList, now: datetime | None = None) -> NewsList:
        nl.created = nl.created or now or utcnow()
        try:
            with self.transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO lists (slug, name, description, sender_name, sender_address, categories, "
                    "cadence, weekday, send_hour, language, created, welcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [nl.slug, nl.name, nl.description, nl.sender_name, nl.sender_address, dumps(nl.categories),
                     nl.cadence, nl.weekday, nl.send_hour, nl.language, iso(nl.created), 1 if nl.welcome else 0],
                )
        except sqlite3.IntegrityError:
            raise InputError(f"a list with slug {nl.slug!r} already exists (use `syndicate list update`)") from None
        nl.id = cur.lastrowid
        return nl

    def update_list(self, nl: NewsList) -> NewsList:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE lists SET name = ?, description = ?, sender_name = ?, sender_address = ?, categories = ?, "
                "cadence = ?, weekday = ?, send_hour = ?, language = ?, welcome = ? WHERE id = ?",
                [nl.name, nl.description, nl.sender_name, nl.sender_address, dumps(nl.categories),
                 nl.cadence, nl.weekday, nl.send_hour, nl.language, 1 if nl.welcome else 0, nl.id],
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
                "INSERT INTO subscribers (email, name, timezone, locale, created) VALUES (?, ?, ?, ?, ?)",
                [s.email, s.name, s.timezone, s.locale, iso(s.created)],
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
        yield from self._stream(sql, params, batch, self._subscriber_row)

    @staticmethod
    def _subscriber_row(r: tuple[object, ...]) -> tuple[Subscriber, Subscription | None, str]:
        sub = _row_to_subscriber(r)
        tail = _row_to_subscription(r, 6) if r[6] is not None else None
        return sub, tail, str(r[-1] or "")

    def _stream(self, sql: str, params: Sequence[object], batch: int, convert: object) -> Iterator:  # type: ignore[type-arg]
        # A cursor of its own so other queries may run while this one streams.
        cur = self.conn.cursor()
        cur.execute(sql, params)
        try:
            while rows := cur.fetchmany(batch):
                for r in rows:
                    yield convert(r)  # type: ignore[operator]
        finally:
            cur.close()

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

        yield from self._stream(sql, [list_id], batch, convert)

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
                self.add_suppression(suppress_hash, status, now)
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

    # -- bulk import -------------------------------------------------------------

    def import_baseline(self) -> int:
        """The highest subscription id now: rows above it were made by the import that asked."""
        return int(self.scalar("SELECT coalesce(max(id), 0) FROM subscriptions"))

    def import_batch(
        self, newslist: NewsList, rows: list[ImportRow], *, source: str, actor: str,
        resubscribe: bool, baseline: int, now: datetime, write: bool = True,
    ) -> ImportOutcome:
        """Write one batch of validated rows in one transaction (or only classify them if not ``write``).

        Skips: addresses suppressed (unless ``resubscribe``), already on the
        list (``baseline`` tells a duplicate in this file from an earlier
        subscription), unsubscribed/bounced/complained (unless ``resubscribe``).
        """
        out = ImportOutcome()
        if not rows:
            return out
        at = to_iso(now)
        assert newslist.id is not None
        with self.transaction(immediate=write) as conn:
            emails = dumps([r.email for r in rows])
            existing: dict[str, int] = {
                e.lower(): i for i, e in conn.execute(
                    "SELECT id, email FROM subscribers WHERE email IN (SELECT value FROM json_each(?))", [emails]
                )
            }
            suppressed = {
                h: reason for h, reason in conn.execute(
                    "SELECT email_hash, reason FROM suppressions WHERE email_hash IN (SELECT value FROM json_each(?))",
                    [dumps([r.email_hash for r in rows])],
                )
            }
            subs: dict[int, tuple[int, str]] = {}
            if existing:
                subs = {
                    sid: (tid, st) for tid, sid, st in conn.execute(
                        "SELECT id, subscriber_id, status FROM subscriptions WHERE list_id = ? "
                        "AND subscriber_id IN (SELECT value FROM json_each(?))",
                        [newslist.id, dumps(list(existing.values()))],
                    )
                }
            seen: set[str] = set()
            fresh: list[ImportRow] = []  # new subscriber and subscription
            joining: list[tuple[int, ImportRow]] = []  # known subscriber, new subscription
            reviving: list[tuple[int, int, ImportRow]] = []  # (subscription id, subscriber id, row)
            for r in rows:
                key = r.email.lower()
                if key in seen:
                    out.skipped.append((r, "duplicate in this file"))
                    continue
                seen.add(key)
                reason = suppressed.get(r.email_hash)
                if reason is not None and not resubscribe:
                    out.skipped.append((r, f"suppressed ({reason}); use --resubscribe if they asked to come back"))
                    continue
                sid = existing.get(key)
                if sid is None:
                    fresh.append(r)
                    continue
                found = subs.get(sid)
                if found is None:
                    joining.append((sid, r))
                elif found[0] > baseline:
                    out.skipped.append((r, "duplicate in this file"))
                elif r.status in LEFT_STATUSES:
                    out.skipped.append((r, f"already {found[1]} on {newslist.slug}"))
                elif found[1] in LEFT_STATUSES and resubscribe:
                    reviving.append((found[0], sid, r))
                elif found[1] in LEFT_STATUSES:
                    out.skipped.append((r, f"{found[1]} from {newslist.slug}; use --resubscribe if they asked to come back"))
                else:
                    out.skipped.append((r, f"already {found[1]} on {newslist.slug}"))
            out.new_subscribers = len(fresh)
            out.new_subscriptions = len(fresh) + len(joining)
            out.resubscribed = len(reviving)
            if not write:
                return out
            self._write_import(conn, newslist, fresh, joining, reviving, at=at, source=source,
                               actor=actor, suppressed_hashes=[r.email_hash for r in rows if r.email_hash in suppressed])
        return out

    def _write_import(
        self, conn: sqlite3.Connection, nl: NewsList, fresh: list[ImportRow], joining: list[tuple[int, ImportRow]],
        reviving: list[tuple[int, int, ImportRow]], *, at: str, source: str, actor: str,
        suppressed_hashes: list[str],
    ) -> None:
        ids: list[int] = []
        if fresh:
            start = int(conn.execute("SELECT coalesce(max(id), 0) FROM subscribers").fetchone()[0])
            seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'subscribers'").fetchone()
            start = max(start, int(seq[0]) if seq else 0)
            conn.executemany(
                "INSERT INTO subscribers (email, name, timezone, locale, created) VALUES (?, ?, ?, ?, ?)",
                [(r.email, r.name, r.timezone or "Asia/Ho_Chi_Minh", r.locale or nl.language, iso(r.created) or at)
                 for r in fresh],
            )
            last = int(conn.execute("SELECT max(id) FROM subscribers").fetchone()[0])
            if last - start == len(fresh):  # ids were handed out in order under our write lock
                ids = list(range(start + 1, last + 1))
            else:  # pragma: no cover - only if another writer slipped in, which BEGIN IMMEDIATE prevents
                lookup = dict(conn.execute(
                    "SELECT lower(email), id FROM subscribers WHERE email IN (SELECT value FROM json_each(?))",
                    [dumps([r.email for r in fresh])],
                ).fetchall())
                ids = [lookup[r.email.lower()] for r in fresh]
        pairs = [*zip(ids, fresh, strict=True), *joining]
        conn.executemany(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, cadence, weekday, send_hour, categories, "
            "created, confirmed, unsubscribed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (sid, nl.id, r.status, r.cadence or nl.cadence, nl.weekday if r.weekday is None else r.weekday,
                 nl.send_hour if r.send_hour is None else r.send_hour, dumps(r.categories or []),
                 iso(r.created) or at, iso(r.confirmed) or (at if r.status == "active" else None),
                 iso(r.unsubscribed) or (at if r.status in LEFT_STATUSES else None))
                for sid, r in pairs
            ],
        )
        conn.executemany(
            "UPDATE subscriptions SET status = ?, confirmed = coalesce(?, confirmed), unsubscribed = NULL, "
            "hard_bounces = 0 WHERE id = ?",
            [(r.status, at if r.status == "active" else None, tid) for tid, _sid, r in reviving],
        )
        if suppressed_hashes:
            conn.executemany("DELETE FROM suppressions WHERE email_hash = ?", [(h,) for h in suppressed_hashes])
        conn.executemany(
            _INSERT_EVENT,
            [
                *[(at, "import", source, actor, sid, nl.id, r.status) for sid, r in pairs],
                *[(at, "resubscribe", source, actor, sid, nl.id, f"{r.status}, by import --resubscribe")
                  for _tid, sid, r in reviving],
            ],
        )


def chunked(items: Iterable[ImportRow], size: int) -> Iterator[list[ImportRow]]:
    batch: list[ImportRow] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
