"""Arrival order: the sequence an article gets when it becomes public, and digest windows over it.

The one-row ``arrival`` table holds the last number handed out; it only
grows, so a number is never given twice (a rowid may be reused after a
removal; this is not). ``articles.seq`` is NULL while an article is
embargoed. The queries that return articles, and the embargo rule every
published-articles query follows, are in ``store/articles.py``, whose
mixin builds on this one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .base import StoreBase, iso, parse_time, public_bound


@dataclass(frozen=True)
class DigestWindow:
    """Which articles one digest holds (see :meth:`ArticleQueries.digest_articles`).

    Those that arrived in the store after ``after_seq``, up to and including
    ``upto_seq`` (arrival order), published at or after ``since`` (the list's
    age cap; for a first digest also the period before) and never after the
    ``now`` the query is asked at. ``until`` is the period's send moment.

    ``after_seq`` None marks an outbox row planned before arrival order
    existed: it holds what was published in ``(since, until]``, as it did.
    ``include_due`` (previews and dry runs, which write nothing) also counts
    embargoed articles that have come due but were not released yet.
    """

    after_seq: int | None
    upto_seq: int
    since: datetime
    until: datetime
    include_due: bool = False


class Numbers:
    """Hands out arrival numbers inside one write transaction (which holds the
    write lock, so no one else can): reads the counter once, writes it back
    once in :meth:`save`, which must run before the transaction commits."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.last = self.first = int(conn.execute("SELECT last_seq FROM arrival WHERE id = 1").fetchone()[0])

    def next(self) -> int:
        self.last += 1
        return self.last

    def save(self) -> None:
        if self.last != self.first:
            self.conn.execute("UPDATE arrival SET last_seq = ? WHERE id = 1", [self.last])


class ArrivalQueries(StoreBase):
    @staticmethod
    def _release(conn: sqlite3.Connection, now: datetime, numbers: Numbers) -> list[tuple[int, str, str]]:
        """Give every embargoed article due by ``now`` its arrival number, oldest first."""
        rows = conn.execute(
            "SELECT id, guid, category_slug FROM articles INDEXED BY articles_embargoed "
            "WHERE seq IS NULL AND published <= ? ORDER BY published, id",
            [public_bound(now)],
        ).fetchall()
        conn.executemany("UPDATE articles SET seq = ? WHERE id = ?", [(numbers.next(), r[0]) for r in rows])
        return [(r[0], r[1], r[2]) for r in rows]

    def next_release(self, now: datetime | None = None) -> datetime | None:
        """When the next future-dated article becomes public (the earliest ``published``
        after ``now``), or None: the embargo horizon a feed cache must expire at."""
        value = self.scalar("SELECT min(published) FROM articles WHERE published > ?", [public_bound(now)])
        return parse_time(value)

    def arrival_seq(self, article_id: int) -> int | None:
        """An article's arrival number (None while embargoed or if there is no such article)."""
        value = self.scalar("SELECT seq FROM articles WHERE id = ?", [article_id])
        return int(value) if value is not None else None

    def digest_high_water(self, now: datetime | None = None) -> int:
        """The arrival number a digest planned at ``now`` covers up to.

        Every article numbered up to it is public at ``now``: normally the
        counter itself; lower only when an article was released by a later
        clock (``send --at`` in the future), so that nothing is skipped: the
        high-water mark stops before it until it is public.
        """
        last = int(self.scalar("SELECT last_seq FROM arrival WHERE id = 1") or 0)
        blocked = self.scalar(
            # only the future-dated end of the published index, never a walk of every seq
            "SELECT min(seq) FROM articles INDEXED BY articles_published WHERE published > ? AND seq IS NOT NULL",
            [public_bound(now)],
        )
        return last if blocked is None else min(last, int(blocked) - 1)

    @staticmethod
    def _digest_where(
        w: DigestWindow, category_slugs: Iterable[str] | None, now: datetime | None
    ) -> tuple[str, list[object]]:
        public = public_bound(now)
        params: list[object]
        if w.after_seq is None:  # planned before arrival order: the published window it was planned with
            sql = "published > ? AND published <= ?"
            params = [iso(w.since), iso(w.until)]
        else:
            # a first digest spans every number: let the published range (the age cap) pick the rows
            col = "+seq" if w.after_seq == 0 else "seq"
            sql = f"(({col} > ? AND {col} <= ?)"
            params = [w.after_seq, w.upto_seq]
            if w.include_due:
                sql += " OR (seq IS NULL AND published <= ?)"
                params.append(public)
            sql += ") AND published >= ?"
            params.append(iso(w.since))
        sql += " AND published <= ?"
        params.append(public)
        cats = sorted(set(category_slugs or ()))
        if cats:
            sql += f" AND category_slug IN ({', '.join('?' for _ in cats)})"
            params += cats
        return sql, params

    def planned_window(self, list_id: int, subscriber_id: int, period: str) -> tuple[str, DigestWindow] | None:
        """(status, window) of the outbox row planned for a period, or None if there is none."""
        r = self.conn.execute(
            "SELECT status, after_seq, upto_seq, window_start, window_end FROM deliveries "
            "WHERE list_id = ? AND subscriber_id = ? AND period = ?",
            [list_id, subscriber_id, period],
        ).fetchone()
        if r is None or r[3] is None or r[4] is None:
            return None
        since, until = parse_time(r[3]), parse_time(r[4])
        assert since is not None and until is not None
        return str(r[0]), DigestWindow(r[1], r[2] or 0, since, until)

    def count_digest_articles(
        self, window: DigestWindow, category_slugs: Iterable[str] | None = None, *, now: datetime | None = None
    ) -> int:
        where, params = self._digest_where(window, category_slugs, now)
        return int(self.scalar(f"SELECT count(*) FROM articles WHERE {where}", params))
