"""What changed, and what is public: the change counter, feed states, embargoed reads.

One notion of "what changed": SQLite triggers on every table the feeds and
digests read (``articles``, ``lists``) bump a one-row counter in the same
transaction as the write, so no code path can change an article or a list
without the counter moving. :meth:`ChangeQueries.change_counter` reads it.

``feed_state`` remembers, per served feed path, the ETag and Last-Modified
of the bytes last served, so Last-Modified survives a restart of ``serve``
and never goes back.

The published-article reads here take ``now`` and leave out anything whose
``published`` is later (the embargo): the feeds read only through them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlite_utils import Database, Migrations

from ..models import Article
from .articles import _COLUMNS, public_category_counts, row_to_article
from .base import StoreBase, iso, parse_time

migrations = Migrations("syndicate.changes")

WATCHED_TABLES = ("articles", "lists")  # every table a feed or a digest shows


@migrations()
def m001_change_counter(db: Database) -> None:
    db.execute("CREATE TABLE changes (id INTEGER PRIMARY KEY CHECK (id = 1), counter INTEGER NOT NULL)")
    db.execute("INSERT INTO changes (id, counter) VALUES (1, 0)")
    for table in WATCHED_TABLES:
        for event in ("INSERT", "UPDATE", "DELETE"):
            db.execute(
                f"CREATE TRIGGER changes_{table}_{event.lower()} AFTER {event} ON {table} "
                "BEGIN UPDATE changes SET counter = counter + 1 WHERE id = 1; END"
            )
    db.execute(
        "CREATE TABLE feed_state (path TEXT PRIMARY KEY, etag TEXT NOT NULL, "
        "last_modified TEXT NOT NULL, ambiguous INTEGER NOT NULL DEFAULT 0)"
    )


@migrations()
def m002_category_counts(db: Database) -> None:
    """Articles per (category slug, category name), kept by triggers in the same transaction as every
    write, so the category list of a feed build or a page is a read of a few rows, not a GROUP BY over
    the whole table."""
    db.execute(
        "CREATE TABLE category_counts (category_slug TEXT NOT NULL, category TEXT NOT NULL, "
        "n INTEGER NOT NULL, PRIMARY KEY (category_slug, category)) WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO category_counts (category_slug, category, n) "
        "SELECT category_slug, category, count(*) FROM articles GROUP BY category_slug, category"
    )
    add = (
        "INSERT INTO category_counts (category_slug, category, n) VALUES (new.category_slug, new.category, 1) "
        "ON CONFLICT (category_slug, category) DO UPDATE SET n = n + 1;"
    )
    drop = (
        "UPDATE category_counts SET n = n - 1 WHERE category_slug = old.category_slug AND category = old.category; "
        "DELETE FROM category_counts WHERE category_slug = old.category_slug AND category = old.category AND n <= 0;"
    )
    db.execute(f"CREATE TRIGGER category_counts_insert AFTER INSERT ON articles BEGIN {add} END")
    db.execute(f"CREATE TRIGGER category_counts_delete AFTER DELETE ON articles BEGIN {drop} END")
    db.execute(
        "CREATE TRIGGER category_counts_update AFTER UPDATE OF category_slug, category ON articles "
        "WHEN old.category_slug IS NOT new.category_slug OR old.category IS NOT new.category "
        f"BEGIN {drop} {add} END"
    )


@dataclass(frozen=True)
class FeedState:
    """The bytes a feed path last had (by ETag) and since when.

    ``ambiguous`` is set when the bytes changed twice within the second of
    ``last_modified``: an If-Modified-Since naming that very second cannot
    tell the two bodies apart, so it gets the body, never a 304.
    """

    path: str
    etag: str
    last_modified: datetime
    ambiguous: bool = False


def _slugs(category_slugs: Sequence[str] | None) -> list[str] | None:
    return sorted(set(category_slugs)) if category_slugs is not None else None


class ChangeQueries(StoreBase):
    # --- the change counter --------------------------------------------------------------

    def change_counter(self) -> int:
        """Bumped (by triggers) in the same transaction as every write to articles or lists."""
        return int(self.scalar("SELECT counter FROM changes WHERE id = 1"))

    @contextmanager
    def read_snapshot(self) -> Iterator[int]:
        """Every read inside sees one state of the store (a WAL read transaction); yields its change
        counter, so other connections can check they read that same state. Writes nothing; a
        transaction already open is simply joined."""
        conn = self.conn
        if conn.in_transaction:
            yield self.change_counter()
            return
        conn.execute("BEGIN")
        try:
            yield self.change_counter()  # the first read fixes the snapshot
        finally:
            if conn.in_transaction:
                conn.rollback()

    # --- per-feed ETag and Last-Modified ------------------------------------------------

    def feed_state(self, path: str) -> FeedState | None:
        row = self.query_one("SELECT path, etag, last_modified, ambiguous FROM feed_state WHERE path = ?", [path])
        if row is None:
            return None
        return FeedState(row["path"], row["etag"], parse_time(row["last_modified"]), bool(row["ambiguous"]))  # type: ignore[arg-type]

    def save_feed_state(self, state: FeedState) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO feed_state (path, etag, last_modified, ambiguous) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (path) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified, "
                "ambiguous = excluded.ambiguous",
                [state.path, state.etag, iso(state.last_modified), int(state.ambiguous)],
            )

    # --- the embargo horizon ------------------------------------------------------------

    def next_embargo(self, now: datetime) -> datetime | None:
        """The earliest ``published`` still in the future: when the feeds must change next by themselves."""
        return parse_time(self.scalar("SELECT min(published) FROM articles WHERE published > ?", [iso(now)]))

    def latest_released(self, now: datetime) -> str:
        """The newest ``published`` at or before ``now`` ('' when none): it moves when an embargo ends."""
        return str(self.scalar("SELECT coalesce(max(published), '') FROM articles WHERE published <= ?", [iso(now)]))

    def released_between(self, since: datetime, now: datetime) -> list[tuple[str, datetime, str]]:
        """(guid, published, category_slug) of articles whose embargo ended in ``(since, now]``."""
        rows = self.conn.execute(
            "SELECT guid, published, category_slug FROM articles WHERE published > ? AND published <= ?",
            [iso(since), iso(now)],
        ).fetchall()
        return [(r[0], parse_time(r[1]), r[2]) for r in rows]  # type: ignore[misc]

    # --- published articles (never the future) ------------------------------------------

    def public_newest(self, limit: int, category_slugs: Sequence[str] | None, now: datetime) -> list[Article]:
        """The newest ``limit`` articles published by ``now`` in any of the categories (None = all)."""
        slugs = _slugs(category_slugs)
        if slugs is not None and not slugs:
            return []
        if slugs is None:
            rows = self.query(
                f"SELECT {_COLUMNS} FROM articles WHERE published <= ? ORDER BY published DESC, id DESC LIMIT ?",
                [iso(now), limit],
            )
        else:
            one = (
                f"SELECT * FROM (SELECT {_COLUMNS} FROM articles WHERE category_slug = ? AND published <= ? "
                "ORDER BY published DESC, id DESC LIMIT ?)"
            )
            sql = " UNION ALL ".join(one for _ in slugs) + " ORDER BY published DESC, id DESC LIMIT ?"
            params: list[object] = [p for slug in slugs for p in (slug, iso(now), limit)]
            rows = self.query(sql, [*params, limit])
        return [row_to_article(r) for r in rows]

    def public_between(self, start: datetime, end: datetime, category_slugs: Sequence[str] | None) -> list[Article]:
        """Articles published in ``[start, end)`` in any of the categories, newest first (indexed range)."""
        return list(self.each_public_between(start, end, category_slugs))

    def each_public_between(
        self, start: datetime, end: datetime, category_slugs: Sequence[str] | None = None
    ) -> Iterator[Article]:
        """:meth:`public_between` one article at a time, read from the cursor as it goes: a caller that
        keeps what it makes of each article (a month's feed items) never holds the rows as well."""
        slugs = _slugs(category_slugs)
        if slugs is not None and not slugs:
            return
        sql = f"SELECT {_COLUMNS} FROM articles WHERE published >= ? AND published < ?"
        params: list[object] = [iso(start), iso(end)]
        if slugs is not None:
            sql += f" AND category_slug IN ({', '.join('?' for _ in slugs)})"
            params += slugs
        yield from self.stream(sql + " ORDER BY published DESC, id DESC", params, row_to_article, named=True)

    def public_from(self, start: datetime, now: datetime) -> list[Article]:
        """Every article published in ``[start, now]``, newest first (indexed range: the open month)."""
        rows = self.query(
            f"SELECT {_COLUMNS} FROM articles WHERE published >= ? AND published <= ? ORDER BY published DESC, id DESC",
            [iso(start), iso(now)],
        )
        return [row_to_article(r) for r in rows]

    def count_published_between(self, start: datetime, end: datetime) -> int:
        """How many articles are published in ``[start, end)`` (an index range count)."""
        return int(self.scalar(
            "SELECT count(*) FROM articles WHERE published >= ? AND published < ?", [iso(start), iso(end)]
        ))

    def count_public(self, now: datetime) -> int:
        """How many articles are published by ``now`` (an index range count)."""
        return int(self.scalar("SELECT count(*) FROM articles WHERE published <= ?", [iso(now)]))

    def first_published_at_or_after(
        self, start: datetime | None, end: datetime, category_slugs: Sequence[str] | None
    ) -> datetime | None:
        """The earliest ``published`` in ``[start, end)`` (no lower bound when ``start`` is None) in the
        categories (one indexed probe per category)."""
        slugs = _slugs(category_slugs)
        found: list[datetime] = []
        for slug in [None] if slugs is None else slugs:
            where = "category_slug = ? AND " if slug is not None else ""
            extra: list[object] = [slug] if slug is not None else []
            value = self.scalar(
                f"SELECT published FROM articles WHERE {where}published >= ? AND published < ? "
                "ORDER BY published ASC LIMIT 1",
                [*extra, iso(start) if start is not None else "", iso(end)],
            )
            if value:
                found.append(parse_time(value))  # type: ignore[arg-type]
        return min(found, default=None)

    def last_published_before(self, end: datetime, category_slugs: Sequence[str] | None) -> datetime | None:
        """The latest ``published`` before ``end`` in the categories (one indexed probe per category)."""
        slugs = _slugs(category_slugs)
        found: list[datetime] = []
        for slug in [None] if slugs is None else slugs:
            where = "category_slug = ? AND " if slug is not None else ""
            extra: list[object] = [slug] if slug is not None else []
            value = self.scalar(
                f"SELECT published FROM articles WHERE {where}published < ? ORDER BY published DESC LIMIT 1",
                [*extra, iso(end)],
            )
            if value:
                found.append(parse_time(value))  # type: ignore[arg-type]
        return max(found, default=None)

    def public_categories(self, now: datetime) -> list[tuple[str, str, int]]:
        """(slug, display name, count of published articles) for every category with one published by ``now``.

        Read from the trigger-kept counts less the embargoed articles (an indexed range on ``published``):
        the cost follows the number of categories and of future-dated articles, never the store."""
        return public_category_counts(self.conn, iso(now) or "")

    def public_category_name(self, category_slug: str, now: datetime) -> str | None:
        """The display name of a category, or None: the greatest spelling among its published
        articles, by the rule of :meth:`public_categories` and from the same counts (so ``serve`` and
        ``feed build`` name a category feed alike, and its cost never follows the store: ``max(category)``
        over the category's articles was a quarter of an incremental publish at 100,000 articles)."""
        for slug, name, _count in public_category_counts(self.conn, iso(now) or ""):
            if slug == category_slug:
                return name
        return None

    def article_keys(self, guids: Iterable[str]) -> list[tuple[datetime, str]]:
        """(published, category_slug) of each named article that still exists."""
        out: list[tuple[datetime, str]] = []
        for guid in guids:
            row = self.conn.execute("SELECT published, category_slug FROM articles WHERE guid = ?", [guid]).fetchone()
            if row is not None:
                out.append((parse_time(row[0]), row[1]))  # type: ignore[arg-type]
        return out

    def changed_keys_since(self, since: datetime) -> list[tuple[datetime, str]]:
        """(published, category_slug) of articles whose ``updated`` is at or after ``since`` (indexed)."""
        rows = self.conn.execute(
            "SELECT DISTINCT published, category_slug FROM articles WHERE updated >= ?", [iso(since)]
        ).fetchall()
        return [(parse_time(r[0]), r[1]) for r in rows]  # type: ignore[misc]

    def public_articles(self, now: datetime) -> Iterator[Article]:
        """Every article published by ``now``, newest first, streamed in pages (for the static article pages)."""
        after: tuple[str, int] | None = None
        while True:
            if after is None:
                rows = self.query(
                    f"SELECT {_COLUMNS} FROM articles WHERE published <= ? ORDER BY published DESC, id DESC LIMIT 500",
                    [iso(now)],
                )
            else:
                rows = self.query(  # a row-value bound, so each page is one seek on articles_published
                    f"SELECT {_COLUMNS} FROM articles WHERE published <= ? AND (published, id) < (?, ?) "
                    "ORDER BY published DESC, id DESC LIMIT 500",
                    [iso(now), after[0], after[1]],
                )
            if not rows:
                return
            for row in rows:
                yield row_to_article(row)
            after = (rows[-1]["published"], rows[-1]["id"])

    def articles_by_guid(self, guids: Iterable[str]) -> list[Article]:
        """The named articles that still exist (in the order named, each once)."""
        out: list[Article] = []
        for guid in dict.fromkeys(guids):
            row = self.query_one(f"SELECT {_COLUMNS} FROM articles WHERE guid = ?", [guid])
            if row is not None:
                out.append(row_to_article(row))
        return out

    def changed_since(self, since: datetime) -> list[Article]:
        """Articles whose ``updated`` is at or after ``since`` (indexed)."""
        return [row_to_article(r) for r in self.query(f"SELECT {_COLUMNS} FROM articles WHERE updated >= ?", [iso(since)])]
