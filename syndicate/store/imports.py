"""Bulk subscriber import: one batch of validated CSV rows written in one transaction.

The rules for a row (suppressed, duplicate, already on the list, left) are
decided here together with the writes, so a skipped row can never change
anything: only rows an admin let through with ``--resubscribe`` lift their
suppression. :class:`ImportQueries` is a base of ``SubscriberQueries``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from ..models import NewsList, to_iso
from .base import StoreBase, dumps, iso
from .consent import _INSERT_EVENT

LEFT_STATUSES = ("unsubscribed", "bounced", "complained")


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
    pending: int = 0  # written as pending: no confirmation email has gone to them
    skipped: list[tuple[ImportRow, str]] = field(default_factory=list)


class ImportQueries(StoreBase):
    """Named queries for the bulk import path."""

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
            out.pending = sum(1 for r in (*fresh, *(r for _s, r in joining), *(r for _t, _s, r in reviving))
                              if r.status == "pending")
            if not write:
                return out
            # Only rows let through by an explicit --resubscribe lift their suppression; a row that
            # was skipped for being suppressed must leave it exactly as it was.
            written = [*fresh, *(r for _sid, r in joining), *(r for _tid, _sid, r in reviving)]
            lifted = sorted({r.email_hash for r in written
                             if r.email_hash in suppressed and r.status in ("active", "pending")})
            self._write_import(conn, newslist, fresh, joining, reviving, at=at, source=source,
                               actor=actor, suppressed_hashes=lifted)
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
                "INSERT INTO subscribers (email, name, timezone, locale, created, email_hash) VALUES (?, ?, ?, ?, ?, ?)",
                [(r.email, r.name, r.timezone or "Asia/Ho_Chi_Minh", r.locale or nl.language, iso(r.created) or at,
                  r.email_hash) for r in fresh],
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
        if suppressed_hashes:  # lifted first: the schema refuses an active row for a suppressed address
            conn.executemany("DELETE FROM suppressions WHERE email_hash = ?", [(h,) for h in suppressed_hashes])
        before = int(conn.execute("SELECT coalesce(max(id), 0) FROM subscriptions").fetchone()[0])
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
        # the proof of consent for each new subscription: asked by import, confirmed when the file says
        conn.execute(
            "INSERT INTO consent (subscription_id, asked_at, asked_via, asked_source, confirmed_at, confirmed_via) "
            "SELECT id, created, 'import', ?, confirmed, CASE WHEN confirmed IS NULL THEN '' ELSE 'import' END "
            "FROM subscriptions WHERE id > ?",
            [source, before],
        )
        conn.executemany(
            "UPDATE subscriptions SET status = ?, confirmed = coalesce(?, confirmed), unsubscribed = NULL, "
            "hard_bounces = 0 WHERE id = ?",
            [(r.status, at if r.status == "active" else None, tid) for tid, _sid, r in reviving],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO consent (subscription_id, asked_at, asked_via, asked_source, confirmed_at, "
            "confirmed_via) VALUES (?, ?, 'import', ?, ?, ?)",
            [(tid, at, source, at if r.status == "active" else None, "resubscribe" if r.status == "active" else "")
             for tid, _sid, r in reviving],
        )
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
