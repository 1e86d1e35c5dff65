"""Webhooks: endpoints, the queue of events for them, and the log of attempts.

Events are recorded where the rule lives, in the schema: SQLite triggers on
``subscriptions`` insert one ``webhook_deliveries`` row per enabled webhook
that wants the event, in the same transaction as the status change, whoever
wrote it (a web form, the CLI, an import, a bounce). A subscription that
becomes ``pending`` is ``subscribe``, ``active`` is ``confirm``,
``unsubscribed`` is ``unsubscribe``, ``bounced`` is ``bounce`` and
``complained`` is ``complaint``. The triggers do nothing at all while no
enabled webhook exists, and the write that causes an event never waits on
HTTP: delivery (``syndicate/webhooks.py``) reads the queue later.

The queue has the outbox's durability: a deliverer claims rows with a lease
(``lease_owner``, ``lease_until``); a row whose deliverer died is claimable
again once its lease runs out, so delivery is at least once (receivers
dedupe on ``Syndicate-Delivery``). Erasing a subscriber deletes the rows
that carry their address; the attempts log never holds one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database, Migrations

from ..errors import NotFound
from ..models import utcnow
from .base import StoreBase, iso, parse_time

migrations = Migrations("syndicate.webhooks")

#: Every event a webhook may ask for, in the order ``webhook ls`` shows them.
EVENTS = ("subscribe", "confirm", "unsubscribe", "bounce", "complaint", "campaign.sent")

#: The subscription status that makes each subscription event.
STATUS_EVENTS = {"pending": "subscribe", "active": "confirm", "unsubscribed": "unsubscribe",
                 "bounced": "bounce", "complained": "complaint"}

DELIVERY_STATES = ("queued", "delivered", "failed")

_NOW = "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"  # the store's ISO format (models.to_iso), in SQL
_ANY_WEBHOOK = "EXISTS (SELECT 1 FROM webhooks WHERE enabled = 1)"


def _subscription_trigger(name: str, when: str, previous: str) -> str:
    event = "CASE NEW.status " + " ".join(f"WHEN '{s}' THEN '{e}'" for s, e in STATUS_EVENTS.items()) + " END"
    return f"""
        CREATE TRIGGER {name} {when} WHEN {_ANY_WEBHOOK}
        BEGIN
            INSERT INTO webhook_deliveries (webhook_id, event, subscriber_id, payload, created, next_attempt)
            SELECT w.id, {event}, NEW.subscriber_id,
                json_object(
                    'subscription_id', NEW.id, 'subscriber_id', NEW.subscriber_id, 'email', s.email,
                    'name', s.name, 'list', l.slug, 'list_name', l.name, 'status', NEW.status,
                    'previous_status', {previous}, 'categories', json(NEW.categories),
                    'hard_bounces', NEW.hard_bounces, 'at', {_NOW}
                ),
                {_NOW}, {_NOW}
            FROM webhooks w JOIN subscribers s ON s.id = NEW.subscriber_id JOIN lists l ON l.id = NEW.list_id
            WHERE w.enabled = 1 AND instr(w.events, ',' || ({event}) || ',') > 0;
        END
    """


@migrations()
def m001_webhooks(db: Database) -> None:
    """Endpoints, their queue and attempts log, and the triggers that record subscription events."""
    db.execute(
        """
        CREATE TABLE webhooks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            url TEXT NOT NULL,
            events TEXT NOT NULL,  -- ',subscribe,confirm,' so a trigger matches with instr()
            secret TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1,
            disabled_reason TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE webhook_deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            webhook_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
            event TEXT NOT NULL,
            subscriber_id INTEGER,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt TEXT NOT NULL,
            lease_owner TEXT NOT NULL DEFAULT '',
            lease_until TEXT,
            last_error TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            finished TEXT
        )
        """
    )
    db.execute("CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt)")
    db.execute("CREATE INDEX webhook_deliveries_subscriber ON webhook_deliveries (subscriber_id)")
    db.execute(
        """
        CREATE TABLE webhook_attempts (
            id INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL,
            webhook_id INTEGER NOT NULL,
            event TEXT NOT NULL,
            url TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            at TEXT NOT NULL,
            status_code INTEGER,
            error TEXT NOT NULL DEFAULT '',
            outcome TEXT NOT NULL,
            duration_ms INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX webhook_attempts_at ON webhook_attempts (at)")
    db.execute(_subscription_trigger("webhooks_subscription_insert", "AFTER INSERT ON subscriptions", "NULL"))
    db.execute(_subscription_trigger(
        "webhooks_subscription_status", "AFTER UPDATE OF status ON subscriptions", "OLD.status"
    ).replace(f"WHEN {_ANY_WEBHOOK}", f"WHEN NEW.status IS NOT OLD.status AND {_ANY_WEBHOOK}", 1))
    # Erasure: the queued payloads carry the address; they go with the person.
    db.execute(
        "CREATE TRIGGER webhooks_subscriber_erased AFTER DELETE ON subscribers "
        "BEGIN DELETE FROM webhook_deliveries WHERE subscriber_id = OLD.id; END"
    )


@migrations()
def m002_campaign_sent(db: Database) -> None:
    """The ``campaign.sent`` event (the campaigns migrations run before these, so the table exists)."""
    create_campaign_sent_trigger(db)


def create_campaign_sent_trigger(db: Database | sqlite3.Connection) -> None:
    """The ``campaign.sent`` event: a campaign row whose status becomes ``sent``.

    The payload names the campaign, its list and subject.
    """
    db.execute(
        f"""
        CREATE TRIGGER webhooks_campaign_sent AFTER UPDATE OF status ON campaigns
        WHEN NEW.status = 'sent' AND OLD.status IS NOT 'sent' AND {_ANY_WEBHOOK}
        BEGIN
            INSERT INTO webhook_deliveries (webhook_id, event, subscriber_id, payload, created, next_attempt)
            SELECT w.id, 'campaign.sent', NULL,
                json_object('campaign_id', NEW.id, 'list', l.slug, 'list_name', l.name, 'subject', NEW.subject,
                            'status', NEW.status, 'at', {_NOW}),
                {_NOW}, {_NOW}
            FROM webhooks w JOIN lists l ON l.id = NEW.list_id
            WHERE w.enabled = 1 AND instr(w.events, ',campaign.sent,') > 0;
        END
        """
    )


# -- rows ------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    """One endpoint and the events it wants."""

    id: int
    url: str
    events: tuple[str, ...]
    secret: str
    enabled: bool
    disabled_reason: str
    created: datetime
    queued: int = 0
    delivered: int = 0
    failed: int = 0


@dataclass(frozen=True)
class ClaimedWebhookDelivery:
    """A queued event taken under a lease: what a deliverer needs to POST it."""

    id: int
    webhook_id: int
    url: str
    secret: str
    event: str
    payload: dict[str, Any]
    attempts: int  # tries before this one
    created: datetime


@dataclass(frozen=True)
class WebhookAttempt:
    """One line of ``webhook log``: a POST and what came of it."""

    id: int
    delivery_id: int
    webhook_id: int
    event: str
    url: str
    attempt: int
    at: datetime
    status_code: int | None
    error: str
    outcome: str  # delivered | retry | failed | disabled
    duration_ms: int


@dataclass(frozen=True)
class WebhookOutcome:
    """What a deliverer learnt from one attempt; see :meth:`WebhookQueries.finish_webhook_delivery`."""

    delivery_id: int
    outcome: str  # delivered | retry | failed | disabled
    at: datetime
    status_code: int | None = None
    error: str = ""
    next_attempt: datetime | None = None  # for retry
    duration_ms: int = 0


@dataclass(frozen=True)
class WebhookQueue:
    """Counts per state, and when the next retry is due."""

    counts: dict[str, int] = field(default_factory=dict)
    due_now: int = 0
    next_attempt: datetime | None = None


_WEBHOOK_COLS = "w.id, w.url, w.events, w.secret, w.enabled, w.disabled_reason, w.created"


def _row_to_webhook(r: Sequence[Any], counts: dict[str, int] | None = None) -> Webhook:
    counts = counts or {}
    return Webhook(
        id=r[0], url=r[1], events=tuple(e for e in r[2].split(",") if e), secret=r[3], enabled=bool(r[4]),
        disabled_reason=r[5], created=parse_time(r[6]) or utcnow(), queued=counts.get("queued", 0),
        delivered=counts.get("delivered", 0), failed=counts.get("failed", 0),
    )


class WebhookQueries(StoreBase):
    """Named queries for webhooks, their queue and the attempts log."""

    # -- endpoints -----------------------------------------------------------------

    def add_webhook(self, url: str, events: Sequence[str], secret: str, now: datetime | None = None) -> Webhook:
        """Store an endpoint (events already checked against :data:`EVENTS`)."""
        ordered = [e for e in EVENTS if e in events]
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO webhooks (url, events, secret, created) VALUES (?, ?, ?, ?)",
                [url, "," + ",".join(ordered) + ",", secret, iso(now or utcnow())],
            )
        assert cur.lastrowid is not None
        return self.get_webhook(cur.lastrowid)

    def get_webhook(self, webhook_id: int) -> Webhook:
        row = self.conn.execute(f"SELECT {_WEBHOOK_COLS} FROM webhooks w WHERE w.id = ?", [webhook_id]).fetchone()
        if row is None:
            raise NotFound(f"no webhook with id {webhook_id} (see `syndicate webhook ls`)")
        return _row_to_webhook(row, self._webhook_counts(webhook_id).get(webhook_id))

    def all_webhooks(self) -> list[Webhook]:
        counts = self._webhook_counts(None)
        rows = self.conn.execute(f"SELECT {_WEBHOOK_COLS} FROM webhooks w ORDER BY w.id").fetchall()
        return [_row_to_webhook(r, counts.get(r[0])) for r in rows]

    def _webhook_counts(self, webhook_id: int | None) -> dict[int, dict[str, int]]:
        sql = "SELECT webhook_id, status, count(*) FROM webhook_deliveries"
        params: list[object] = []
        if webhook_id is not None:
            sql += " WHERE webhook_id = ?"
            params.append(webhook_id)
        out: dict[int, dict[str, int]] = {}
        for wid, status, n in self.conn.execute(sql + " GROUP BY webhook_id, status", params):
            out.setdefault(wid, {})[status] = n
        return out

    def remove_webhook(self, webhook_id: int) -> Webhook:
        """Delete an endpoint and its queue (its attempts stay in the log). NotFound names the id."""
        with self.transaction(immediate=True) as conn:
            hook = self.get_webhook(webhook_id)
            conn.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", [webhook_id])
            conn.execute("DELETE FROM webhooks WHERE id = ?", [webhook_id])
        return hook

    def set_webhook_enabled(self, webhook_id: int, enabled: bool, reason: str = "") -> Webhook:
        """Turn an endpoint off (with the reason shown in ``webhook ls``) or back on."""
        with self.transaction() as conn:
            cur = conn.execute("UPDATE webhooks SET enabled = ?, disabled_reason = ? WHERE id = ?",
                               [1 if enabled else 0, "" if enabled else reason, webhook_id])
            if cur.rowcount == 0:
                raise NotFound(f"no webhook with id {webhook_id} (see `syndicate webhook ls`)")
        return self.get_webhook(webhook_id)

    # -- the queue -------------------------------------------------------------------

    def claim_webhook_deliveries(self, owner: str, now: datetime, lease: timedelta, limit: int,
                                 per_webhook: int) -> list[ClaimedWebhookDelivery]:
        """Take up to ``limit`` due rows (at most ``per_webhook`` of one endpoint) for ``owner``.

        A row is due when queued, its ``next_attempt`` has come and no live
        lease holds it (a lease that ran out belonged to a deliverer that
        died or stalled: the row is taken again). Only enabled endpoints.
        The write lock is taken only when something is due, so an idle
        deliverer polling the queue never blocks a writer.
        """
        at = iso(now)
        pick = (
            "SELECT id FROM (SELECT d.id, row_number() OVER (PARTITION BY d.webhook_id ORDER BY d.id) AS n "
            "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
            "WHERE d.status = 'queued' AND d.next_attempt <= ? AND (d.lease_until IS NULL OR d.lease_until <= ?) "
            "AND w.enabled = 1) WHERE n <= ? ORDER BY id LIMIT ?"
        )
        params = [at, at, per_webhook, limit]
        if limit <= 0 or not self.conn.execute(pick, params).fetchone():
            return []
        with self.transaction(immediate=True) as conn:
            ids = [r[0] for r in conn.execute(pick, params).fetchall()]
            conn.executemany(
                "UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ? WHERE id = ?",
                [(owner, iso(now + lease), did) for did in ids],
            )
            out = []
            for did in ids:
                r = conn.execute(
                    "SELECT d.id, d.webhook_id, w.url, w.secret, d.event, d.payload, d.attempts, d.created "
                    "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = ?", [did],
                ).fetchone()
                out.append(ClaimedWebhookDelivery(
                    id=r[0], webhook_id=r[1], url=r[2], secret=r[3], event=r[4], payload=json.loads(r[5]),
                    attempts=r[6], created=parse_time(r[7]) or now,
                ))
        return out

    def release_webhook_delivery(self, delivery_id: int, owner: str) -> None:
        """Give back a claimed row not tried (the pass ran out of lease time): due again at once."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE webhook_deliveries SET lease_owner = '', lease_until = NULL "
                "WHERE id = ? AND lease_owner = ? AND status = 'queued'",
                [delivery_id, owner],
            )

    def finish_webhook_delivery(self, claimed: ClaimedWebhookDelivery, owner: str, result: WebhookOutcome) -> bool:
        """Record one attempt: the log line, and the row's new state, in one transaction.

        ``delivered`` and ``failed`` end the row; ``retry`` queues it again at
        ``next_attempt``; ``disabled`` (the receiver said 410 Gone) ends it and
        turns the endpoint off. A delivery always counts, even if the lease
        ran out meanwhile; any other result is dropped when another deliverer
        has since claimed the row (it is trying again; its word counts).
        Returns whether the row changed.
        """
        with self.transaction(immediate=True) as conn:
            row = conn.execute("SELECT status, lease_owner, attempts FROM webhook_deliveries WHERE id = ?",
                               [claimed.id]).fetchone()
            attempt = (row[2] if row else claimed.attempts) + 1
            conn.execute(
                "INSERT INTO webhook_attempts (delivery_id, webhook_id, event, url, attempt, at, status_code, error, "
                "outcome, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [claimed.id, claimed.webhook_id, claimed.event, claimed.url, attempt, iso(result.at),
                 result.status_code, result.error[:500], result.outcome, result.duration_ms],
            )
            if row is None or row[0] != "queued":
                return False
            if result.outcome != "delivered" and row[1] != owner:
                return False
            if result.outcome == "retry":
                assert result.next_attempt is not None
                conn.execute(
                    "UPDATE webhook_deliveries SET attempts = ?, next_attempt = ?, last_error = ?, lease_owner = '', "
                    "lease_until = NULL WHERE id = ?",
                    [attempt, iso(result.next_attempt), result.error[:500], claimed.id],
                )
                return True
            status = "delivered" if result.outcome == "delivered" else "failed"
            conn.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_error = ?, finished = ?, "
                "lease_owner = '', lease_until = NULL WHERE id = ?",
                [status, attempt, result.error[:500], iso(result.at), claimed.id],
            )
            if result.outcome == "disabled":
                conn.execute("UPDATE webhooks SET enabled = 0, disabled_reason = ? WHERE id = ?",
                             [f"{result.error} on {iso(result.at)}", claimed.webhook_id])
        return True

    def webhook_queue(self, now: datetime | None = None) -> WebhookQueue:
        counts = {s: 0 for s in DELIVERY_STATES}
        for status, n in self.conn.execute("SELECT status, count(*) FROM webhook_deliveries GROUP BY status"):
            counts[status] = n
        at = iso(now or utcnow())
        due = self.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'queued' AND next_attempt <= ?", [at])
        upcoming = self.scalar("SELECT min(next_attempt) FROM webhook_deliveries WHERE status = 'queued' "
                               "AND next_attempt > ?", [at])
        return WebhookQueue(counts=counts, due_now=int(due), next_attempt=parse_time(upcoming))

    def webhook_attempts(self, limit: int = 50, webhook_id: int | None = None) -> list[WebhookAttempt]:
        """The latest attempts, newest first."""
        sql = ("SELECT id, delivery_id, webhook_id, event, url, attempt, at, status_code, error, outcome, duration_ms "
               "FROM webhook_attempts")
        params: list[object] = []
        if webhook_id is not None:
            sql += " WHERE webhook_id = ?"
            params.append(webhook_id)
        rows = self.conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
        return [WebhookAttempt(id=r[0], delivery_id=r[1], webhook_id=r[2], event=r[3], url=r[4], attempt=r[5],
                               at=parse_time(r[6]) or utcnow(), status_code=r[7], error=r[8], outcome=r[9],
                               duration_ms=r[10]) for r in rows]

    def prune_webhooks(self, before: datetime) -> int:
        """Forget finished rows and attempts older than ``before``; queued rows are never pruned.

        Looks first and writes only when something is old, so a pass that
        prunes nothing takes no write lock.
        """
        old = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM webhook_attempts WHERE at < ?) OR EXISTS (SELECT 1 FROM webhook_deliveries "
            "WHERE status != 'queued' AND finished < ?)", [iso(before), iso(before)]).fetchone()[0]
        if not old:
            return 0
        with self.transaction() as conn:
            n = conn.execute("DELETE FROM webhook_deliveries WHERE status != 'queued' AND finished < ?",
                             [iso(before)]).rowcount
            conn.execute("DELETE FROM webhook_attempts WHERE at < ?", [iso(before)])
        return int(n)

    def webhook_deliveries(self) -> list[tuple[int, int, str, str, dict[str, Any]]]:
        """(id, webhook id, event, status, payload) of every row still kept, in id order."""
        return [(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in self.conn.execute(
            "SELECT id, webhook_id, event, status, payload FROM webhook_deliveries ORDER BY id")]
