"""The store: the only package that touches SQLite.

``open_store(path)`` connects (WAL, busy timeout, foreign keys), applies any
pending migrations, and returns a :class:`Store` whose methods are the named
queries of each area: articles (``store/articles.py``), lists and subscribers
(``store/subscribers.py``), consent events, suppressions and stats
(``store/consent.py``), the outbox (planning in ``store/outbox.py``, claims and
results in ``store/outbox_claims.py``, reports in ``store/outbox_report.py``), the
digest archive (``store/archive.py``) and the notices queued in the outbox
(``store/notices.py``), followed sources (``store/sources.py``), campaigns
(``store/campaigns.py``), API tokens (``store/tokens.py``), the change counter
and embargoed feed reads (``store/changes.py``), webhooks and their queue
(``store/webhooks.py``). Parameters are always bound,
never formatted into SQL.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import sqlite_utils

from ..errors import StoreError
from .archive import ArchiveQueries
from .articles import ArticleQueries, UpsertResult
from .campaigns import CampaignQueries
from .changes import ChangeQueries, FeedState
from .consent import ConsentQueries
from .migrations import ALL
from .notices import NoticeQueries
from .outbox import OutboxQueries
from .outbox_report import OutboxReportQueries
from .sources import SourceQueries
from .subscribers import SubscriberQueries
from .tokens import TokenQueries
from .webhooks import WebhookQueries

__all__ = ["Store", "open_store", "UpsertResult", "FeedState"]


class Store(ArticleQueries, ChangeQueries, OutboxQueries, OutboxReportQueries, ArchiveQueries, NoticeQueries,
            SubscriberQueries, ConsentQueries, SourceQueries, CampaignQueries, TokenQueries, WebhookQueries):
    """Every named query, grouped by area in the mixins it inherits."""


def _create_private(path: Path) -> None:
    """Create a missing database file 0600 before SQLite opens it.

    SQLite gives the -wal and -shm files the database file's mode, so they are
    private too. An existing file keeps the mode its admin gave it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def open_store(path: str | Path, *, migrate: bool = True) -> Store:
    """Open (creating if needed) the SQLite store at ``path`` and migrate it.

    Example:
        >>> store = open_store(tmp / "s.db")  # doctest: +SKIP
        >>> store.count_articles()  # doctest: +SKIP
        0
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if str(path) != ":memory:":
            _create_private(path)
        conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from None
    if mode.lower() != "wal" and str(path) != ":memory:":
        raise StoreError(f"database {path}: cannot switch to WAL mode (got {mode!r})")
    db = sqlite_utils.Database(conn)
    if migrate:
        try:
            for migrations in ALL:
                migrations.apply(db)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"database {path}: migration failed: {exc} (is it a syndicate database?)") from None
    return Store(db, str(path))
