"""The digest archive: each rendered digest kept for the "view in browser" pages.

One ``digests`` row per (list, period, category set); the table is created by
the outbox migrations (``store/outbox.py``, ``m001_deliveries``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..errors import NotFound
from ..models import utcnow
from .base import StoreBase, iso, parse_time


@dataclass(frozen=True)
class ArchivedDigest:
    list_id: int
    period: str
    categories_key: str
    subject: str
    html: str
    text: str
    article_count: int
    created: datetime



class ArchiveQueries(StoreBase):
    # -- the archive ----------------------------------------------------------

    def archive_digest(self, d: ArchivedDigest) -> None:
        """Keep the first rendering of a (list, period, category set)."""
        with self.transaction(immediate=True) as conn:
            conn.execute(
                "INSERT OR IGNORE INTO digests (list_id, period, categories_key, subject, html, text, "
                "article_count, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [d.list_id, d.period, d.categories_key, d.subject, d.html, d.text, d.article_count, iso(d.created)],
            )

    def archived_digests(self, list_id: int, limit: int = 100) -> list[ArchivedDigest]:
        """The list's archived digests and campaigns, the one that went out last first (all category sets).

        By when each was made, not by period: a period is a day ("2026-11-24"), a week or "campaign-7", and
        those strings do not sort by time.
        """
        rows = self.query(
            "SELECT * FROM digests WHERE list_id = ? ORDER BY created DESC, period DESC, categories_key LIMIT ?",
            [list_id, limit],
        )
        return [_row_to_archived(r) for r in rows]

    def get_archived_digest(self, list_id: int, period: str, categories_key: str | None = None) -> ArchivedDigest:
        """One archived digest; without ``categories_key`` the all-categories
        one if there is one, else the first."""
        if categories_key is not None:
            row = self.query_one(
                "SELECT * FROM digests WHERE list_id = ? AND period = ? AND categories_key = ?",
                [list_id, period, categories_key],
            )
        else:
            row = self.query_one(
                "SELECT * FROM digests WHERE list_id = ? AND period = ? ORDER BY categories_key != '', "
                "categories_key LIMIT 1",
                [list_id, period],
            )
        if row is None:
            raise NotFound(f"no archived digest for list {list_id} and period {period!r}")
        return _row_to_archived(row)


def _row_to_archived(row: object) -> ArchivedDigest:
    r: dict[str, object] = dict(row)  # type: ignore[call-overload]
    return ArchivedDigest(
        list_id=int(r["list_id"]),  # type: ignore[call-overload]
        period=str(r["period"]),
        categories_key=str(r["categories_key"]),
        subject=str(r["subject"]),
        html=str(r["html"]),
        text=str(r["text"]),
        article_count=int(r["article_count"]),  # type: ignore[call-overload]
        created=parse_time(str(r["created"])) or utcnow(),
    )
