"""One-off announcements (campaigns): their rows, their outbox rows, their reports and link clicks.

A campaign is planned into the same ``deliveries`` table the digests use
(``kind`` 'campaign', ``campaign_id`` set, ``period`` ``campaign:<id>``), one
row per active, unsuppressed subscription of its list, so claiming, leases,
the journal, retries, bounces and suppression are the outbox's, unchanged.
A partial UNIQUE index on (campaign_id, subscription_id) makes planning
idempotent: planning twice, or resuming a plan cut off half way, queues
nothing twice. When the last row of a sending campaign is settled the
campaign becomes ``sent`` (one UPDATE, :meth:`CampaignQueries.settle_campaigns`).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlite_utils import Database, Migrations

from ..errors import NotFound
from ..models import utcnow
from .base import StoreBase, dumps, iso, parse_time

migrations = Migrations("syndicate.campaigns")

CAMPAIGN_STATUSES = ("draft", "scheduled", "sending", "sent", "cancelled")
#: Subscriptions planned per transaction.
PLAN_BATCH = 1000


@migrations()
def m001_campaigns(db: Database) -> None:
    """The campaigns table, per-list tracking opt-ins, links and clicks, and campaign outbox rows.

    SQLite cannot alter a CHECK constraint, so ``deliveries`` is rebuilt with
    'campaign' added to its ``kind`` CHECK and a ``campaign_id`` column: its
    own stored CREATE text is edited (every other column and constraint stays
    as it was), the rows copied, and its indexes and triggers made again.
    """
    db.execute(
        """
        CREATE TABLE campaigns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
            status TEXT NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'scheduled', 'sending', 'sent', 'cancelled')),
            subject TEXT NOT NULL,
            body_md TEXT NOT NULL,
            categories TEXT NOT NULL DEFAULT '[]',
            send_at TEXT,
            created TEXT NOT NULL,
            planned_at TEXT,
            sent_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX campaigns_due ON campaigns (status, send_at)")
    db.execute("CREATE INDEX campaigns_list ON campaigns (list_id, id)")
    db.execute(
        "CREATE TABLE list_tracking (list_id INTEGER PRIMARY KEY REFERENCES lists(id) ON DELETE CASCADE, "
        "track_clicks INTEGER NOT NULL DEFAULT 0, per_person_stats INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute(
        "CREATE TABLE campaign_links (id INTEGER PRIMARY KEY, "
        "campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE, url TEXT NOT NULL, "
        "clicks INTEGER NOT NULL DEFAULT 0, UNIQUE (campaign_id, url))"
    )
    db.execute(
        "CREATE TABLE campaign_clicks (id INTEGER PRIMARY KEY, "
        "link_id INTEGER NOT NULL REFERENCES campaign_links(id) ON DELETE CASCADE, "
        "subscriber_id INTEGER NOT NULL, at TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX campaign_clicks_link ON campaign_clicks (link_id, subscriber_id)")
    _rebuild_deliveries(db)


def _rebuild_deliveries(db: Database) -> None:
    conn = db.conn
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'").fetchone()
    sql = str(row[0])
    check = re.search(r"CHECK\s*\(\s*kind\s+IN\s*\(([^)]*)\)\s*\)", sql)
    if check is None:
        raise sqlite3.DatabaseError("deliveries has no kind CHECK to extend (an unknown schema)")
    # the new column goes right after the kind column (table constraints such as UNIQUE come last)
    column = ", campaign_id INTEGER REFERENCES campaigns(id) ON DELETE CASCADE"
    sql = sql[: check.start(1)] + check.group(1) + ", 'campaign'" + sql[check.end(1): check.end()] + column \
        + sql[check.end():]
    sql = re.sub(r"^CREATE TABLE\s+(\"?deliveries\"?)", "CREATE TABLE deliveries_new", sql, count=1)
    extras = [r[0] for r in conn.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'deliveries' AND type IN ('index', 'trigger') "
        "AND sql IS NOT NULL ORDER BY type, name"
    )]
    columns = [r[1] for r in conn.execute("PRAGMA table_info(deliveries)")]
    cols = ", ".join(f'"{c}"' for c in columns)
    conn.execute(sql)
    conn.execute(f"INSERT INTO deliveries_new ({cols}) SELECT {cols} FROM deliveries")
    conn.execute("DROP TABLE deliveries")
    conn.execute("ALTER TABLE deliveries_new RENAME TO deliveries")
    for extra in extras:
        conn.execute(extra)
    conn.execute(
        "CREATE UNIQUE INDEX deliveries_campaign ON deliveries (campaign_id, subscription_id) "
        "WHERE campaign_id IS NOT NULL"
    )
    # notices are claimed first through this index: campaign rows stay out of it, as digests do, so a
    # queued campaign of any size is never walked to find them (store/outbox_claims.py matches its WHERE)
    conn.execute("DROP INDEX IF EXISTS deliveries_notice_queue")
    conn.execute(
        "CREATE INDEX deliveries_notice_queue ON deliveries (status, id) WHERE kind NOT IN ('digest', 'campaign')"
    )


@dataclass(frozen=True)
class Campaign:
    """One announcement, as stored."""

    id: int
    list_id: int
    list_slug: str
    status: str
    subject: str
    body_md: str
    categories: tuple[str, ...]
    send_at: datetime | None
    created: datetime
    planned_at: datetime | None = None
    sent_at: datetime | None = None


@dataclass(frozen=True)
class LinkClicks:
    url: str
    clicks: int
    people: int | None = None  # distinct subscribers, only when the list keeps per-person stats


@dataclass(frozen=True)
class CampaignReport:
    """What became of one campaign's outbox rows (``campaign report``)."""

    campaign_id: int
    status: str
    planned: int
    sent: int
    failed: int
    bounced: int
    complained: int
    unsubscribed: int
    queued: int = 0
    sending: int = 0
    unknown: int = 0
    cancelled: int = 0
    links: tuple[LinkClicks, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Tracking:
    """A list's analytics opt-ins (both off unless an admin turns them on)."""

    track_clicks: bool = False
    per_person_stats: bool = False


#: Who a campaign goes to: the list's active, unsuppressed subscriptions past an id, whose topics meet
#: its categories (none = everyone). Parameters: list id, after id, categories JSON twice.
_RECIPIENTS = (
    "FROM subscriptions x JOIN subscribers s ON s.id = x.subscriber_id "
    "WHERE x.list_id = ? AND x.status = 'active' AND x.id > ? "
    "AND NOT EXISTS (SELECT 1 FROM suppressions p WHERE p.email_hash = s.email_hash) "
    "AND (? = '[]' OR x.categories = '[]' OR EXISTS (SELECT 1 FROM json_each(x.categories) a "
    "WHERE a.value IN (SELECT value FROM json_each(?))))"
)

_COLS = ("c.id, c.list_id, l.slug, c.status, c.subject, c.body_md, c.categories, c.send_at, c.created, "
         "c.planned_at, c.sent_at")


def _row(r: Sequence[object]) -> Campaign:
    return Campaign(
        id=int(r[0]), list_id=int(r[1]), list_slug=str(r[2]), status=str(r[3]),  # type: ignore[call-overload]
        subject=str(r[4]), body_md=str(r[5]), categories=tuple(json.loads(str(r[6]))),
        send_at=parse_time(r[7]), created=parse_time(str(r[8])) or utcnow(),  # type: ignore[arg-type]
        planned_at=parse_time(r[9]), sent_at=parse_time(r[10]),  # type: ignore[arg-type]
    )


class CampaignQueries(StoreBase):
    """Named queries for campaigns."""

    # -- the campaigns themselves -----------------------------------------------

    def insert_campaign(self, list_id: int, subject: str, body_md: str, categories: Sequence[str],
                        send_at: datetime | None, status: str, now: datetime) -> Campaign:
        with self.transaction(immediate=True) as conn:
            cur = conn.execute(
                "INSERT INTO campaigns (list_id, status, subject, body_md, categories, send_at, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [list_id, status, subject, body_md, dumps(list(categories)), iso(send_at), iso(now)],
            )
            assert cur.lastrowid is not None
            new_id = cur.lastrowid
        return self.get_campaign(new_id)

    def get_campaign(self, campaign_id: int) -> Campaign:
        r = self.conn.execute(
            f"SELECT {_COLS} FROM campaigns c JOIN lists l ON l.id = c.list_id WHERE c.id = ?", [campaign_id]
        ).fetchone()
        if r is None:
            raise NotFound(f"no campaign with id {campaign_id} (see `syndicate campaign ls`)")
        return _row(r)

    def list_campaigns(self, list_id: int | None = None, limit: int = 1000) -> list[Campaign]:
        """Newest first."""
        where, params = ("WHERE c.list_id = ?", [list_id]) if list_id is not None else ("", [])
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM campaigns c JOIN lists l ON l.id = c.list_id {where} ORDER BY c.id DESC LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [_row(r) for r in rows]

    def update_campaign(self, campaign_id: int, *, subject: str, body_md: str, categories: Sequence[str],
                        send_at: datetime | None, status: str, allowed: Sequence[str]) -> bool:
        """Rewrite an editable campaign; False if its status is no longer one of ``allowed``
        (checked in the same transaction, so a send that began meanwhile wins)."""
        with self.transaction(immediate=True) as conn:
            cur = conn.execute(
                "UPDATE campaigns SET subject = ?, body_md = ?, categories = ?, send_at = ?, status = ? "
                "WHERE id = ? AND status IN (SELECT value FROM json_each(?))",
                [subject, body_md, dumps(list(categories)), iso(send_at), status, campaign_id, dumps(list(allowed))],
            )
            return cur.rowcount == 1

    def cancel_campaign_rows(self, campaign_id: int, allowed: Sequence[str]) -> int | None:
        """Cancel a campaign and its rows still queued; None if its status is not one of ``allowed``.
        Returns the outbox rows cancelled."""
        with self.transaction(immediate=True) as conn:
            cur = conn.execute(
                "UPDATE campaigns SET status = 'cancelled' WHERE id = ? AND status IN (SELECT value FROM json_each(?))",
                [campaign_id, dumps(list(allowed))],
            )
            if cur.rowcount != 1:
                return None
            return conn.execute(
                "UPDATE deliveries SET status = 'cancelled', error = 'campaign cancelled' "
                "WHERE campaign_id = ? AND status = 'queued'",
                [campaign_id],
            ).rowcount

    def start_campaign(self, campaign_id: int, allowed: Sequence[str]) -> bool:
        """Move a campaign to ``sending`` (from one of ``allowed``); False if it was not in one."""
        with self.transaction(immediate=True) as conn:
            cur = conn.execute(
                "UPDATE campaigns SET status = 'sending' WHERE id = ? AND status IN (SELECT value FROM json_each(?))",
                [campaign_id, dumps(list(allowed))],
            )
            return cur.rowcount == 1

    def campaigns_to_plan(self, now: datetime) -> list[int]:
        """Scheduled campaigns whose time has come, and sending ones whose planning was cut off."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT id FROM campaigns WHERE (status = 'scheduled' AND send_at <= ?) "
            "OR (status = 'sending' AND planned_at IS NULL) ORDER BY id",
            [iso(now)],
        )]

    # -- planning -------------------------------------------------------------

    def plan_campaign(self, campaign_id: int, now: datetime, batch: int = PLAN_BATCH) -> int:
        """Queue one outbox row per active, unsuppressed subscription of the campaign's list
        (only those whose topics meet its categories, if it has any), ``batch`` subscriptions
        per transaction, streamed by id. Idempotent. Returns the rows newly queued."""
        c = self.get_campaign(campaign_id)
        cats = dumps(list(c.categories))
        period = f"campaign:{c.id}"
        created = iso(now)
        after = 0
        queued = 0
        select = f"SELECT x.id {_RECIPIENTS} ORDER BY x.id LIMIT ?"
        while True:
            with self.transaction(immediate=True) as conn:
                ids = [int(r[0]) for r in conn.execute(select, [c.list_id, after, cats, cats, batch])]
                if not ids:
                    break
                queued += conn.execute(
                    "INSERT OR IGNORE INTO deliveries (list_id, subscriber_id, subscription_id, period, status, "
                    "created, kind, campaign_id, categories) SELECT x.list_id, x.subscriber_id, x.id, ?, 'queued', "
                    "?, 'campaign', ?, ? FROM subscriptions x WHERE x.id IN (SELECT value FROM json_each(?))",
                    [period, created, c.id, cats, dumps(ids)],
                ).rowcount
            after = ids[-1]
        with self.transaction(immediate=True) as conn:
            conn.execute("UPDATE campaigns SET planned_at = coalesce(planned_at, ?) WHERE id = ?", [created, c.id])
        self.settle_campaigns(now)
        return queued

    def count_campaign_recipients(self, campaign_id: int) -> int:
        """How many rows planning the campaign now would queue (for ``send --dry-run``)."""
        c = self.get_campaign(campaign_id)
        cats = dumps(list(c.categories))
        planned = f"campaign:{c.id}"
        return int(self.scalar(
            f"SELECT count(*) {_RECIPIENTS} AND NOT EXISTS (SELECT 1 FROM deliveries d "
            "WHERE d.list_id = x.list_id AND d.subscriber_id = x.subscriber_id AND d.period = ?)",
            [c.list_id, 0, cats, cats, planned],
        ))

    def settle_campaigns(self, now: datetime | None = None) -> int:
        """Every planned, sending campaign with no row left queued or sending becomes ``sent`` (one UPDATE)."""
        with self.transaction(immediate=True) as conn:
            return conn.execute(
                "UPDATE campaigns SET status = 'sent', sent_at = ? WHERE status = 'sending' "
                "AND planned_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM deliveries d "
                "WHERE d.campaign_id = campaigns.id AND d.status IN ('queued', 'sending'))",
                [iso(now or utcnow())],
            ).rowcount

    # -- reports --------------------------------------------------------------

    def campaign_report(self, campaign_id: int) -> CampaignReport:
        c = self.get_campaign(campaign_id)
        r = self.conn.execute(
            "SELECT count(*), sum(d.status = 'sent'), sum(d.status = 'failed' AND d.bounced = 0), "
            "sum(d.bounced = 1), "
            "sum(d.status = 'sent' AND EXISTS (SELECT 1 FROM events e WHERE e.subscriber_id = d.subscriber_id "
            "AND e.list_id = d.list_id AND e.kind = 'complaint' AND e.at >= d.sent_at)), "
            "sum(d.status = 'sent' AND EXISTS (SELECT 1 FROM events e WHERE e.subscriber_id = d.subscriber_id "
            "AND e.list_id = d.list_id AND e.kind = 'unsubscribe' AND e.at >= d.sent_at)), "
            "sum(d.status = 'queued'), sum(d.status = 'sending'), sum(d.status = 'unknown'), "
            "sum(d.status = 'cancelled') FROM deliveries d WHERE d.campaign_id = ?",
            [campaign_id],
        ).fetchone()
        n = [int(x or 0) for x in r]
        per_person = self.list_tracking(c.list_id).per_person_stats
        links = tuple(
            LinkClicks(str(u), int(k), int(p) if per_person else None)
            for u, k, p in self.conn.execute(
                "SELECT k.url, k.clicks, (SELECT count(DISTINCT subscriber_id) FROM campaign_clicks x "
                "WHERE x.link_id = k.id) FROM campaign_links k WHERE k.campaign_id = ? ORDER BY k.id",
                [campaign_id],
            )
        )
        return CampaignReport(campaign_id, c.status, planned=n[0], sent=n[1], failed=n[2], bounced=n[3],
                              complained=n[4], unsubscribed=n[5], queued=n[6], sending=n[7], unknown=n[8],
                              cancelled=n[9], links=links)

    # -- tracking -------------------------------------------------------------

    def list_tracking(self, list_id: int) -> Tracking:
        r = self.conn.execute(
            "SELECT track_clicks, per_person_stats FROM list_tracking WHERE list_id = ?", [list_id]
        ).fetchone()
        return Tracking(bool(r[0]), bool(r[1])) if r else Tracking()

    def set_list_tracking(self, list_id: int, tracking: Tracking) -> None:
        with self.transaction(immediate=True) as conn:
            conn.execute(
                "INSERT INTO list_tracking (list_id, track_clicks, per_person_stats) VALUES (?, ?, ?) "
                "ON CONFLICT (list_id) DO UPDATE SET track_clicks = excluded.track_clicks, "
                "per_person_stats = excluded.per_person_stats",
                [list_id, int(tracking.track_clicks), int(tracking.per_person_stats)],
            )

    def campaign_links(self, campaign_id: int, urls: Sequence[str]) -> dict[str, int]:
        """url -> link id for these links of a campaign, stored on first sight."""
        with self.transaction(immediate=True) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO campaign_links (campaign_id, url) VALUES (?, ?)",
                [(campaign_id, u) for u in urls],
            )
            return {str(u): int(i) for i, u in conn.execute(
                "SELECT id, url FROM campaign_links WHERE campaign_id = ? "
                "AND url IN (SELECT value FROM json_each(?))",
                [campaign_id, dumps(list(urls))],
            )}

    def record_click(self, campaign_id: int, link_id: int, subscriber_id: int | None,
                     now: datetime | None = None) -> str | None:
        """Count one click on a stored link of this campaign; return its URL, or None if the
        campaign has no such link (a forged or foreign token: nothing is counted)."""
        with self.transaction(immediate=True) as conn:
            r = conn.execute(
                "SELECT k.url, t.per_person_stats FROM campaign_links k JOIN campaigns c ON c.id = k.campaign_id "
                "LEFT JOIN list_tracking t ON t.list_id = c.list_id WHERE k.id = ? AND k.campaign_id = ?",
                [link_id, campaign_id],
            ).fetchone()
            if r is None:
                return None
            conn.execute("UPDATE campaign_links SET clicks = clicks + 1 WHERE id = ?", [link_id])
            if subscriber_id is not None and r[1]:
                conn.execute(
                    "INSERT INTO campaign_clicks (link_id, subscriber_id, at) VALUES (?, ?, ?)",
                    [link_id, subscriber_id, iso(now or utcnow())],
                )
            return str(r[0])

    # -- the archive ------------------------------------------------------------

    def sent_campaigns(self, list_id: int, limit: int = 100) -> list[Campaign]:
        """Campaigns of the list that went out (sending or sent), newest first: the web archive's."""
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM campaigns c JOIN lists l ON l.id = c.list_id "
            "WHERE c.list_id = ? AND c.status IN ('sending', 'sent') ORDER BY coalesce(c.planned_at, c.created) DESC, "
            "c.id DESC LIMIT ?",
            [list_id, limit],
        ).fetchall()
        return [_row(r) for r in rows]
