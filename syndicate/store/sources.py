"""Sources the store follows: feeds and news pages fetched on a schedule.

One ``sources`` row per URL (UNIQUE) with what the next fetch needs: the
validators of the last answer (ETag, Last-Modified) for a conditional GET,
when it is next due, and how it has been going (last success, last error,
consecutive failures, items seen). Index sources also remember which article
links they have already read (``source_links``), so a section page costs one
request per run plus one per new article.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlite_utils import Database, Migrations

from ..errors import InputError, NotFound
from ..models import utcnow
from .base import StoreBase, iso, parse_time

migrations = Migrations("syndicate.sources")

SOURCE_KINDS = ("feed", "page", "index")


@migrations()
def m001_sources(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL CHECK (kind IN ('feed', 'page', 'index')),
            category TEXT NOT NULL DEFAULT '',
            every_seconds INTEGER NOT NULL CHECK (every_seconds > 0),
            paused INTEGER NOT NULL DEFAULT 0,
            etag TEXT NOT NULL DEFAULT '',
            last_modified TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            next_due TEXT NOT NULL,
            last_fetched TEXT,
            last_success TEXT,
            last_status INTEGER,
            last_error TEXT NOT NULL DEFAULT '',
            failures INTEGER NOT NULL DEFAULT 0,
            items_seen INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX sources_due ON sources (paused, next_due)")
    db.execute(
        """
        CREATE TABLE source_links (
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            url TEXT NOT NULL,
            seen TEXT NOT NULL,
            PRIMARY KEY (source_id, url)
        )
        """
    )


@dataclass(frozen=True)
class Source:
    """A followed URL and its fetch state."""

    id: int
    url: str
    name: str
    kind: str
    category: str
    every_seconds: int
    paused: bool
    etag: str
    last_modified: str
    created: datetime
    next_due: datetime
    last_fetched: datetime | None
    last_success: datetime | None
    last_status: int | None
    last_error: str
    failures: int
    items_seen: int


@dataclass(frozen=True)
class FetchOutcome:
    """What one fetch of a source ended with, for :meth:`SourceQueries.record_fetch`."""

    fetched_at: datetime
    next_due: datetime
    status: int | None  # HTTP status, None when no answer came
    ok: bool
    error: str = ""
    etag: str | None = None  # None: keep the stored one
    last_modified: str | None = None
    new_items: int = 0


def _row(row: object) -> Source:
    r = dict(row)  # type: ignore[call-overload]
    return Source(
        id=r["id"], url=r["url"], name=r["name"], kind=r["kind"], category=r["category"],
        every_seconds=r["every_seconds"], paused=bool(r["paused"]), etag=r["etag"], last_modified=r["last_modified"],
        created=parse_time(r["created"]) or utcnow(), next_due=parse_time(r["next_due"]) or utcnow(),
        last_fetched=parse_time(r["last_fetched"]), last_success=parse_time(r["last_success"]),
        last_status=r["last_status"], last_error=r["last_error"], failures=r["failures"], items_seen=r["items_seen"],
    )


class SourceQueries(StoreBase):
    """Named queries for followed sources."""

    def add_source(self, url: str, kind: str, every_seconds: int, *, name: str = "", category: str = "",
                   now: datetime | None = None) -> Source:
        """Follow ``url``; due at once. InputError if it is followed already."""
        now = now or utcnow()
        with self.transaction(immediate=True) as conn:
            existing = conn.execute("SELECT id FROM sources WHERE url = ?", (url,)).fetchone()
            if existing:
                raise InputError(f"{url} is followed already (source {existing[0]}); see `syndicate source show {existing[0]}`")
            cur = conn.execute(
                "INSERT INTO sources (url, name, kind, category, every_seconds, created, next_due)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (url, name, kind, category, every_seconds, iso(now), iso(now)),
            )
            source_id = int(cur.lastrowid or 0)
        return self.get_source(source_id)

    def get_source(self, source_id: int) -> Source:
        row = self.query_one("SELECT * FROM sources WHERE id = ?", (source_id,))
        if row is None:
            raise NotFound(f"no source {source_id} (see `syndicate source ls`)")
        return _row(row)

    def all_sources(self) -> list[Source]:
        return [_row(r) for r in self.query("SELECT * FROM sources ORDER BY id")]

    def due_sources(self, now: datetime) -> list[Source]:
        """Unpaused sources whose next fetch time has come, the longest waiting first."""
        rows = self.query(
            "SELECT * FROM sources WHERE paused = 0 AND next_due <= ? ORDER BY next_due, id", (iso(now),)
        )
        return [_row(r) for r in rows]

    def remove_source(self, source_id: int) -> Source:
        """Stop following; the articles it brought stay in the store."""
        source = self.get_source(source_id)
        with self.transaction() as conn:
            conn.execute("DELETE FROM sources WHERE id = ?", (source_id,))
        return source

    def set_source_paused(self, source_id: int, paused: bool, now: datetime | None = None) -> Source:
        """Pause, or resume (due at once, failures forgotten)."""
        self.get_source(source_id)
        with self.transaction() as conn:
            if paused:
                conn.execute("UPDATE sources SET paused = 1 WHERE id = ?", (source_id,))
            else:
                conn.execute("UPDATE sources SET paused = 0, failures = 0, next_due = ? WHERE id = ?",
                             (iso(now or utcnow()), source_id))
        return self.get_source(source_id)

    def record_fetch(self, source_id: int, outcome: FetchOutcome) -> None:
        """Save how a fetch went: validators, schedule, counters; one transaction."""
        self.record_fetches([(source_id, outcome)])

    def record_fetches(self, outcomes: Iterable[tuple[int, FetchOutcome]]) -> None:
        """Save how many fetches went, all in one transaction (a round of 304s is one commit)."""
        with self.transaction() as conn:
            for source_id, outcome in outcomes:
                if outcome.ok:
                    conn.execute(
                        "UPDATE sources SET last_fetched = ?, last_success = ?, last_status = ?, last_error = '',"
                        " failures = 0, next_due = ?, items_seen = items_seen + ?,"
                        " etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified) WHERE id = ?",
                        (iso(outcome.fetched_at), iso(outcome.fetched_at), outcome.status, iso(outcome.next_due),
                         outcome.new_items, outcome.etag, outcome.last_modified, source_id),
                    )
                else:
                    conn.execute(
                        "UPDATE sources SET last_fetched = ?, last_status = ?, last_error = ?,"
                        " failures = failures + 1, next_due = ? WHERE id = ?",
                        (iso(outcome.fetched_at), outcome.status, outcome.error, iso(outcome.next_due), source_id),
                    )

    def seen_links(self, source_id: int, urls: Iterable[str]) -> set[str]:
        """Which of ``urls`` this index source has read before."""
        wanted = list(dict.fromkeys(urls))
        seen: set[str] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            seen |= {r[0] for r in self.conn.execute(
                f"SELECT url FROM source_links WHERE source_id = ? AND url IN ({marks})", (source_id, *chunk))}
        return seen

    def mark_links_seen(self, source_id: int, urls: Iterable[str], now: datetime | None = None) -> None:
        stamp = iso(now or utcnow())
        with self.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO source_links (source_id, url, seen) VALUES (?, ?, ?)",
                             [(source_id, u, stamp) for u in urls])
