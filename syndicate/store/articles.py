"""Article queries: upsert by guid, newest-N, since-T, search, removal; arrival order and the embargo.

Two rules live here and nowhere else:

- **The embargo.** Every query that feeds, pages, archives or digests read
  takes ``now`` (keyword; ``None`` means the real clock) and never returns an
  article whose ``published`` is after it. Only admin look-ups
  (:meth:`ArticleQueries.get_article`, :meth:`~ArticleQueries.search_articles`,
  ``include_scheduled=True``) see embargoed articles.
- **Arrival order.** An article gets ``seq``, the next number of the one-row
  ``arrival`` counter, when it becomes public in the store: at insert if its
  ``published`` has passed, else when it comes due (:meth:`release_due_articles`,
  run by every upsert, by digest planning and by ``feed build``; the counter
  and the window SQL are in ``store/arrival.py``). Digests select by ``seq``
  (:class:`~syndicate.store.arrival.DigestWindow`), so an article reaches each
  subscription in the first digest planned after it arrived, whatever its
  ``published`` date (within the list's age cap). Edits keep ``seq``, so an
  edited article is not sent again; an edit that moves ``published`` into the
  future withdraws it (``seq`` cleared) until that time, when it arrives anew.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import NotFound
from ..models import Article, RelatedLink, to_iso, utcnow
from ..sanitize import fold
from .arrival import ArrivalQueries, DigestWindow, Numbers
from .base import dumps, iso, parse_time, public_bound

_COLUMNS = (
    "id, guid, slug, url, title, summary, body_html, body_text, author, category, "
    "tags, image, image_alt, source, language, published, updated, related, origin"
)


@dataclass
class UpsertResult:
    """What one upsert did, article by article (guid lists keep order).

    ``released`` names embargoed articles (of any earlier import) that came
    due and became public in this upsert; their categories are in
    ``changed_categories`` too, so the feeds that now show them are refreshed.
    """

    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    changed_categories: set[str] = field(default_factory=set)
    released: list[str] = field(default_factory=list)

    def merge(self, other: UpsertResult) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.changed_categories |= other.changed_categories
        self.released += other.released


@dataclass(frozen=True)
class StoredVersion:
    """An article as stored, with the content hash upserts compare against."""

    article: Article
    content_hash: str


def content_hash(a: Article) -> str:
    """Hash of everything a reader sees; a change here bumps ``updated``."""
    parts = [
        a.title, a.slug, a.url, a.summary, a.body_html, a.body_text, a.author,
        a.category, "\x1f".join(a.tags), a.image, a.image_alt, a.source, a.language,
        a.published.isoformat(),
        dumps([[r.title, r.url, r.summary, r.date] for r in a.related]),
    ]
    return hashlib.sha256("\x1e".join(parts).encode("utf-8")).hexdigest()


def public_category_counts(conn: sqlite3.Connection, bound: str) -> list[tuple[str, str, int]]:
    """(slug, display name, count) of every category with an article published by ``bound``, by slug.

    The name is the greatest spelling among the category's public articles (as ``max(category)``
    would say). Totals come from ``category_counts`` (kept by triggers, see store/changes.py), less
    the articles still embargoed: an indexed range over the future only.
    """
    counts: dict[tuple[str, str], int] = {
        (r[0], r[1]): r[2]
        for r in conn.execute("SELECT category_slug, category, n FROM category_counts WHERE category_slug != ''")
    }
    # No GROUP BY: the planner would walk articles_category (the whole table) to group.
    for slug, name in conn.execute("SELECT category_slug, category FROM articles WHERE published > ?", [bound]):
        if slug:
            counts[(slug, name)] = counts.get((slug, name), 0) - 1
    by_slug: dict[str, tuple[str, int]] = {}
    for (slug, name), n in counts.items():
        if n <= 0:
            continue
        best, total = by_slug.get(slug, (name, 0))
        by_slug[slug] = (max(best, name), total + n)
    return [(slug, name, total) for slug, (name, total) in sorted(by_slug.items())]


def _json_list(text: str) -> list[Any]:
    return [] if text == "[]" else json.loads(text)  # type: ignore[no-any-return]  # most articles: no tags, no related links


def row_to_article(row: sqlite3.Row) -> Article:
    return Article(
        id=row["id"],
        guid=row["guid"],
        slug=row["slug"],
        url=row["url"],
        title=row["title"],
        summary=row["summary"],
        body_html=row["body_html"],
        body_text=row["body_text"],
        author=row["author"],
        category=row["category"],
        tags=_json_list(row["tags"]),
        image=row["image"],
        image_alt=row["image_alt"],
        source=row["source"],
        language=row["language"],
        published=parse_time(row["published"]),  # type: ignore[arg-type]
        updated=parse_time(row["updated"]),
        related=[RelatedLink(**r) for r in _json_list(row["related"])],
        origin=row["origin"],
    )


class ArticleQueries(ArrivalQueries):
    def upsert_articles(self, articles: Iterable[Article], now: datetime | None = None) -> UpsertResult:
        """Insert new articles and update changed ones, in one transaction.

        The guid decides identity: the same guid never makes a second row.
        ``updated`` moves only when the content hash changes. ``now`` (the
        import time) decides what is public: an article published by then
        arrives (gets its ``seq``) at once, a later one when it comes due;
        embargoed articles of earlier imports that are due by ``now`` are
        released first.
        """
        now = now or utcnow()
        result = UpsertResult()
        public = public_bound(now)
        with self.transaction(immediate=True) as conn:
            numbers = Numbers(conn)
            for _id, guid, category_slug in self._release(conn, now, numbers):
                result.released.append(guid)
                result.changed_categories.add(category_slug)
            for a in articles:
                digest = content_hash(a)
                old = conn.execute(
                    "SELECT id, slug, content_hash, updated, category_slug, seq FROM articles WHERE guid = ?",
                    [a.guid],
                ).fetchone()
                if old is not None and old[2] == digest:
                    result.unchanged.append(a.guid)
                    a.id = old[0]
                    continue
                slug = self._free_slug(a.slug, old[0] if old else None)
                a.slug = slug
                values: dict[str, str | int | None] = {
                    "guid": a.guid, "slug": slug, "url": a.url, "title": a.title,
                    "summary": a.summary, "body_html": a.body_html, "body_text": a.body_text,
                    "author": a.author, "category": a.category, "category_slug": a.category_slug,
                    "tags": dumps(a.tags), "image": a.image, "image_alt": a.image_alt,
                    "source": a.source, "language": a.language, "published": iso(a.published),
                    "related": dumps([r.__dict__ for r in a.related]),
                    "content_hash": digest, "origin": a.origin,
                }
                is_public = to_iso(a.published) <= public
                if old is None:
                    values["updated"] = iso(a.updated or a.published)
                    values["imported"] = iso(now)
                    values["seq"] = numbers.next() if is_public else None
                    cols = ", ".join(values)
                    marks = ", ".join("?" for _ in values)
                    cur = conn.execute(f"INSERT INTO articles ({cols}) VALUES ({marks})", list(values.values()))
                    a.id = cur.lastrowid
                    result.inserted.append(a.guid)
                else:
                    if old[5] is None and is_public:  # an embargoed article edited to a time now past
                        values["seq"] = numbers.next()
                    elif old[5] is not None and not is_public:  # moved into the future: withdrawn until then
                        values["seq"] = None
                    previous = parse_time(old[3])
                    bumped = a.updated if a.updated and previous and a.updated > previous else now
                    values["updated"] = iso(max(bumped, a.published))  # never earlier than published
                    sets = ", ".join(f"{k} = ?" for k in values)
                    conn.execute(f"UPDATE articles SET {sets} WHERE id = ?", [*values.values(), old[0]])
                    conn.execute("DELETE FROM articles_fts WHERE rowid = ?", [old[0]])
                    a.id = old[0]
                    result.updated.append(a.guid)
                    result.changed_categories.add(old[4])
                conn.execute(
                    "INSERT INTO articles_fts (rowid, title, summary, body) VALUES (?, ?, ?, ?)",
                    [a.id, fold(a.title), fold(a.summary), fold(a.body_text)],
                )
                result.changed_categories.add(a.category_slug)
            numbers.save()
        result.changed_categories.discard("")
        return result

    def stored_versions(self, guids: Iterable[str]) -> dict[str, StoredVersion]:
        """The stored article and content hash of each of ``guids`` that exists (exact guid match)."""
        wanted = list(dict.fromkeys(guids))
        out: dict[str, StoredVersion] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self.query(
                f"SELECT {_COLUMNS}, content_hash FROM articles WHERE guid IN ({', '.join('?' for _ in chunk)})",
                chunk,
            )
            for row in rows:
                out[row["guid"]] = StoredVersion(row_to_article(row), row["content_hash"])
        return out

    def _free_slug(self, wanted: str, own_id: int | None) -> str:
        slug, n = wanted, 1
        while True:
            row = self.conn.execute("SELECT id FROM articles WHERE slug = ?", [slug]).fetchone()
            if row is None or row[0] == own_id:
                return slug
            n += 1
            slug = f"{wanted}-{n}"

    # -- arrival order (the counter and the digest window live in store/arrival.py) ------

    def release_due_articles(self, now: datetime | None = None) -> list[Article]:
        """Publish what came due: embargoed articles whose ``published`` is at or
        before ``now`` (default: the real clock) get their arrival number, so the
        next digest carries them. Returns them, oldest first; costs one indexed
        read when nothing is due. Digest planning, every upsert and ``feed build``
        call it; calling it again is harmless."""
        now = now or utcnow()
        if self.scalar(
            "SELECT 1 FROM articles INDEXED BY articles_embargoed WHERE seq IS NULL AND published <= ? LIMIT 1",
            [public_bound(now)],
        ) is None:
            return []
        with self.transaction(immediate=True) as conn:
            numbers = Numbers(conn)
            released = self._release(conn, now, numbers)
            numbers.save()
        return [self.get_article(id_) for id_, _guid, _cat in released]

    def scheduled_articles(self, now: datetime | None = None) -> list[Article]:
        """Embargoed articles (published after ``now``), soonest first: what an admin has scheduled."""
        rows = self.query(
            f"SELECT {_COLUMNS} FROM articles WHERE published > ? ORDER BY published, id", [public_bound(now)]
        )
        return [row_to_article(r) for r in rows]

    def digest_articles(
        self, window: DigestWindow, category_slugs: Iterable[str] | None = None, *,
        now: datetime | None = None, limit: int = 1000,
    ) -> list[Article]:
        """The articles of a digest window in some categories (all if none), newest first."""
        where, params = self._digest_where(window, category_slugs, now)
        rows = self.query(
            f"SELECT {_COLUMNS} FROM articles WHERE {where} ORDER BY published DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [row_to_article(r) for r in rows]

    # -- look-ups --------------------------------------------------------------------

    def get_article(self, key: str | int) -> Article:
        """One article by id, slug or guid, embargoed or not (an admin look-up);
        NotFound names what was asked. Public pages use :meth:`public_article`."""
        row = self.query_one(
            f"SELECT {_COLUMNS} FROM articles WHERE id = ? OR slug = ? OR guid = ? LIMIT 1",
            [int(key) if str(key).isdigit() else -1, str(key), str(key)],
        )
        if row is None:
            raise NotFound(f"no article with id, slug or guid {str(key)!r} (see `syndicate article list`)")
        return row_to_article(row)

    def public_article(self, key: str | int, *, now: datetime | None = None) -> Article:
        """One public article by id, slug or guid: NotFound while it is embargoed."""
        article = self.get_article(key)
        if article.published > (now or utcnow()):
            raise NotFound(f"no article with id, slug or guid {str(key)!r} (see `syndicate article list`)")
        return article

    def newest_articles(
        self, limit: int = 50, category_slug: str | None = None, offset: int = 0, *,
        now: datetime | None = None, include_scheduled: bool = False,
    ) -> list[Article]:
        """The newest ``limit`` public articles, optionally in one category (indexed).

        ``include_scheduled`` (admin listings only) adds embargoed ones."""
        bound = "9999" if include_scheduled else public_bound(now)
        if category_slug:
            rows = self.query(
                f"SELECT {_COLUMNS} FROM articles WHERE category_slug = ? AND published <= ? "
                "ORDER BY published DESC, id DESC LIMIT ? OFFSET ?",
                [category_slug, bound, limit, offset],
            )
        else:
            rows = self.query(
                f"SELECT {_COLUMNS} FROM articles WHERE published <= ? ORDER BY published DESC, id DESC LIMIT ? OFFSET ?",
                [bound, limit, offset],
            )
        return [row_to_article(r) for r in rows]

    @staticmethod
    def _window(
        since: datetime, until: datetime | None, category_slugs: Iterable[str] | None, now: datetime | None
    ) -> tuple[str, list[object]]:
        """The WHERE clause (and its parameters) for ``(since, until]`` in some categories, public at ``now``."""
        public = public_bound(now)
        bound = min(public, iso(until)) if until is not None else public  # type: ignore[type-var]
        sql = "published > ? AND published <= ?"
        params: list[object] = [iso(since), bound]
        cats = sorted(set(category_slugs or ()))
        if cats:
            sql += f" AND category_slug IN ({', '.join('?' for _ in cats)})"
            params += cats
        return sql, params

    def articles_since(
        self,
        since: datetime,
        until: datetime | None = None,
        category_slugs: Iterable[str] | None = None,
        limit: int = 1000,
        *,
        now: datetime | None = None,
    ) -> list[Article]:
        """Public articles published in ``(since, until]``, newest first (indexed).

        By publication date: digests select by arrival instead (:meth:`digest_articles`)."""
        where, params = self._window(since, until, category_slugs, now)
        rows = self.query(
            f"SELECT {_COLUMNS} FROM articles WHERE {where} ORDER BY published DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [row_to_article(r) for r in rows]

    def count_articles_since(
        self, since: datetime, until: datetime | None = None, category_slugs: Iterable[str] | None = None,
        *, now: datetime | None = None,
    ) -> int:
        where, params = self._window(since, until, category_slugs, now)
        return int(self.scalar(f"SELECT count(*) FROM articles WHERE {where}", params))

    def search_articles(self, query: str, limit: int = 20) -> list[Article]:
        """Full-text search, blind to case and Vietnamese diacritics (an admin
        look-up: embargoed articles are found too).

        Every word must match; articles holding the words as a phrase (in the
        title first) rank above the rest, since Vietnamese words are several
        syllables (``khởi nghiệp``).
        """
        words = [w.replace('"', '""') for w in fold(query).split()]
        if not words:
            return []
        every_word = " ".join(f'"{w}"' for w in words)
        phrase = '"' + " ".join(words) + '"'
        rows = self.query(
            f"SELECT {', '.join('a.' + c.strip() for c in _COLUMNS.split(','))}, "
            "f.rowid IN (SELECT rowid FROM articles_fts WHERE articles_fts MATCH ?) AS in_title, "
            "f.rowid IN (SELECT rowid FROM articles_fts WHERE articles_fts MATCH ?) AS is_phrase "
            "FROM articles_fts f JOIN articles a ON a.id = f.rowid WHERE articles_fts MATCH ? "
            "ORDER BY in_title DESC, is_phrase DESC, bm25(articles_fts, 10.0, 3.0, 1.0) LIMIT ?",
            [f"title : {phrase}", phrase, every_word, limit],
        )
        return [row_to_article(r) for r in rows]

    def remove_article(self, key: str | int) -> Article:
        article = self.get_article(key)
        with self.transaction(immediate=True) as conn:
            conn.execute("DELETE FROM articles_fts WHERE rowid = ?", [article.id])
            conn.execute("DELETE FROM articles WHERE id = ?", [article.id])
        return article

    def count_articles(self, category_slug: str | None = None) -> int:
        if category_slug:
            return int(self.scalar("SELECT count(*) FROM articles WHERE category_slug = ?", [category_slug]))
        return int(self.scalar("SELECT count(*) FROM articles"))

    def categories(self, *, now: datetime | None = None) -> list[tuple[str, str, int]]:
        """(slug, display name, public article count) for every category with a public article."""
        return public_category_counts(self.conn, public_bound(now))

    def latest_change(self, category_slug: str | None = None, *, now: datetime | None = None) -> datetime | None:
        """The newest ``updated`` among public articles (in a category)."""
        if category_slug:
            value = self.scalar(
                "SELECT max(updated) FROM articles WHERE category_slug = ? AND published <= ?",
                [category_slug, public_bound(now)],
            )
        else:
            value = self.scalar("SELECT max(updated) FROM articles WHERE published <= ?", [public_bound(now)])
        return parse_time(value)

    def get_meta(self, key: str) -> str | None:
        value = self.scalar("SELECT value FROM meta WHERE key = ?", [key])
        return str(value) if value is not None else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )

    # --- feeds: archive months and change stamps (H2) ---------------------------------

    def article_months(self, category_slug: str | None = None, *, now: datetime | None = None) -> list[str]:
        """Every ``YYYY-MM`` (UTC, by published) holding a public article, oldest first."""
        if category_slug:
            rows = self.conn.execute(
                "SELECT DISTINCT substr(published, 1, 7) FROM articles WHERE category_slug = ? AND published <= ? "
                "ORDER BY 1",
                [category_slug, public_bound(now)],
            ).fetchall()
        else:
            rows = self.conn.execute(
                "SELECT DISTINCT substr(published, 1, 7) FROM articles WHERE published <= ? ORDER BY 1", [public_bound(now)]
            ).fetchall()
        return [r[0] for r in rows]

    def articles_in_month(
        self, month: str, category_slug: str | None = None, *, now: datetime | None = None
    ) -> list[Article]:
        """The public articles published in one ``YYYY-MM`` (UTC), newest first (indexed range)."""
        start, end = _month_bounds(month)
        sql = f"SELECT {_COLUMNS} FROM articles WHERE published >= ? AND published < ? AND published <= ?"
        params: list[object] = [start, end, public_bound(now)]
        if category_slug:
            sql += " AND category_slug = ?"
            params.append(category_slug)
        sql += " ORDER BY published DESC, id DESC"
        return [row_to_article(r) for r in self.query(sql, params)]

    def adjacent_months(
        self, month: str, category_slug: str | None = None, *, now: datetime | None = None
    ) -> tuple[str | None, str | None]:
        """The nearest older and newer months holding public articles (two indexed probes)."""
        start, end = _month_bounds(month)
        public = public_bound(now)
        where = "category_slug = ? AND " if category_slug else ""
        extra: list[object] = [category_slug] if category_slug else []
        older = self.scalar(
            f"SELECT published FROM articles WHERE {where}published < ? AND published <= ? "
            "ORDER BY published DESC LIMIT 1",
            [*extra, start, public],
        )
        newer = self.scalar(
            f"SELECT published FROM articles WHERE {where}published >= ? AND published <= ? "
            "ORDER BY published ASC LIMIT 1",
            [*extra, end, public],
        )
        return (older[:7] if older else None, newer[:7] if newer else None)

    def category_name(self, category_slug: str, *, now: datetime | None = None) -> str | None:
        """The display name of a category slug (from its newest public article), or None."""
        value = self.scalar(
            "SELECT category FROM articles WHERE category_slug = ? AND published <= ? "
            "ORDER BY published DESC, id DESC LIMIT 1",
            [category_slug, public_bound(now)],
        )
        return str(value) if value is not None else None

    def article_months_for(self, guids: Iterable[str]) -> set[tuple[str, str]]:
        """(month, category_slug) of each named article that still exists."""
        out: set[tuple[str, str]] = set()
        for guid in guids:
            row = self.conn.execute(
                "SELECT substr(published, 1, 7), category_slug FROM articles WHERE guid = ?", [guid]
            ).fetchone()
            if row is not None:
                out.add((row[0], row[1]))
        return out

    def months_changed_since(self, since: datetime) -> set[tuple[str, str]]:
        """(month, category_slug) of articles whose ``updated`` is at or after ``since`` (indexed)."""
        rows = self.conn.execute(
            "SELECT DISTINCT substr(published, 1, 7), category_slug FROM articles WHERE updated >= ?",
            [iso(since)],
        ).fetchall()
        return {(r[0], r[1]) for r in rows}

    # --- feeds of a set of categories (newsletter lists); None = every article ---------

    def newest_in_categories(
        self, limit: int, category_slugs: Sequence[str] | None, *, now: datetime | None = None
    ) -> list[Article]:
        """The newest ``limit`` public articles in any of the categories, newest first.

        One indexed ``LIMIT`` per category, merged: cost grows with ``limit``
        times the number of categories, never with the store.
        """
        slugs = sorted(set(category_slugs)) if category_slugs is not None else None
        if slugs is None or len(slugs) == 1:
            return self.newest_articles(limit, slugs[0] if slugs else None, now=now)
        if not slugs:
            return []
        public = public_bound(now)
        one = (f"SELECT * FROM (SELECT {_COLUMNS} FROM articles WHERE category_slug = ? AND published <= ? "
               "ORDER BY published DESC, id DESC LIMIT ?)")
        sql = " UNION ALL ".join(one for _ in slugs) + " ORDER BY published DESC, id DESC LIMIT ?"
        params: list[object] = [p for slug in slugs for p in (slug, public, limit)]
        params.append(limit)
        return [row_to_article(r) for r in self.query(sql, params)]

    def article_months_in(self, category_slugs: Sequence[str] | None, *, now: datetime | None = None) -> list[str]:
        """Every ``YYYY-MM`` holding a public article in any of the categories, oldest first."""
        slugs = sorted(set(category_slugs)) if category_slugs is not None else None
        if slugs is None or len(slugs) == 1:
            return self.article_months(slugs[0] if slugs else None, now=now)
        if not slugs:
            return []
        rows = self.conn.execute(
            "SELECT DISTINCT substr(published, 1, 7) FROM articles "
            f"WHERE category_slug IN ({', '.join('?' for _ in slugs)}) AND published <= ? ORDER BY 1",
            [*slugs, public_bound(now)],
        ).fetchall()
        return [r[0] for r in rows]

    def articles_in_month_in(
        self, month: str, category_slugs: Sequence[str] | None, *, now: datetime | None = None
    ) -> list[Article]:
        """The public articles of one ``YYYY-MM`` in any of the categories, newest first (indexed)."""
        slugs = sorted(set(category_slugs)) if category_slugs is not None else None
        if slugs is None or len(slugs) == 1:
            return self.articles_in_month(month, slugs[0] if slugs else None, now=now)
        if not slugs:
            return []
        start, end = _month_bounds(month)
        rows = self.query(
            f"SELECT {_COLUMNS} FROM articles WHERE category_slug IN ({', '.join('?' for _ in slugs)}) "
            "AND published >= ? AND published < ? AND published <= ? ORDER BY published DESC, id DESC",
            [*slugs, start, end, public_bound(now)],
        )
        return [row_to_article(r) for r in rows]

    def adjacent_months_in(
        self, month: str, category_slugs: Sequence[str] | None, *, now: datetime | None = None
    ) -> tuple[str | None, str | None]:
        """The nearest older and newer months holding public articles in any of the categories (two probes each)."""
        slugs = sorted(set(category_slugs)) if category_slugs is not None else None
        if slugs is None:
            return self.adjacent_months(month, now=now)
        found = [self.adjacent_months(month, slug, now=now) for slug in slugs]
        older = max((o for o, _ in found if o is not None), default=None)
        newer = min((n for _, n in found if n is not None), default=None)
        return older, newer

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: changes when another connection commits."""
        return int(self.scalar("PRAGMA data_version"))

    def articles_stamp(self) -> tuple[int, int, str]:
        """(count, max id, max updated): changes whenever articles are added, edited or removed."""
        # Three statements, so SQLite answers max() from an index instead of a scan.
        count = int(self.scalar("SELECT count(*) FROM articles"))
        top = int(self.scalar("SELECT coalesce(max(id), 0) FROM articles"))
        newest = str(self.scalar("SELECT coalesce(max(updated), '') FROM articles"))
        return (count, top, newest)


def _month_bounds(month: str) -> tuple[str, str]:
    """ISO bounds ``[start, end)`` of a ``YYYY-MM`` month, as the store sorts them."""
    year, mon = int(month[:4]), int(month[5:7])
    nyear, nmon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    return f"{year:04d}-{mon:02d}-01T00:00:00+00:00", f"{nyear:04d}-{nmon:02d}-01T00:00:00+00:00"
