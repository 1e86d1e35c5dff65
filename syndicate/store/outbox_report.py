"""Read-only views of the outbox: counts, rows, per-period reports, single deliveries.

What ``syndicate outbox status/ls/report/show`` print; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import NotFound
from ..models import DELIVERY_STATUSES, Delivery, utcnow
from .base import StoreBase, iso, parse_time


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery as ``syndicate outbox ls`` shows it."""

    id: int
    list_slug: str
    email: str
    period: str
    status: str
    attempts: int
    last_reply: str
    message_id: str
    created: datetime | None
    last_attempt: datetime | None
    next_attempt: datetime | None
    sent_at: datetime | None
    bounced: bool


@dataclass(frozen=True)
class DigestReport:
    """What became of one list's digests for one period (``syndicate outbox report``)."""

    list_slug: str
    period: str
    planned: int
    sent: int
    skipped: int
    queued: int
    deferred: int
    sending: int
    failed: int
    bounced: int
    unknown: int
    cancelled: int
    complained: int
    unsubscribed: int


@dataclass
class OutboxCounts:
    """Rows per status (every status present), what is due, what waits to retry."""

    counts: dict[str, int] = field(default_factory=dict)
    due_now: int = 0
    deferred: int = 0  # queued after a temporary failure, waiting for their retry time
    next_retry: datetime | None = None  # the earliest of those retry times
    oldest_deferred: datetime | None = None  # when the oldest of them was planned
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> status -> rows (only kinds present)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _row_to_delivery(row: object) -> Delivery:
    r: dict[str, object] = dict(row)  # type: ignore[call-overload]
    return Delivery(
        id=r["id"],  # type: ignore[arg-type]
        list_id=r["list_id"],  # type: ignore[arg-type]
        subscriber_id=r["subscriber_id"],  # type: ignore[arg-type]
        subscription_id=r["subscription_id"],  # type: ignore[arg-type]
        period=r["period"],  # type: ignore[arg-type]
        status=r["status"],  # type: ignore[arg-type]
        attempts=r["attempts"],  # type: ignore[arg-type]
        next_attempt=parse_time(r["next_attempt"]),  # type: ignore[arg-type]
        lease_until=parse_time(r["lease_until"]),  # type: ignore[arg-type]
        lease_owner=r["lease_owner"],  # type: ignore[arg-type]
        message_id=r["message_id"],  # type: ignore[arg-type]
        error=r["error"],  # type: ignore[arg-type]
        created=parse_time(r["created"]),  # type: ignore[arg-type]
        sent_at=parse_time(r["sent_at"]),  # type: ignore[arg-type]
        kind=str(r.get("kind") or "digest"),
    )



class OutboxReportQueries(StoreBase):
    # -- status and admin -----------------------------------------------------

    def outbox_status(self, now: datetime | None = None) -> OutboxCounts:
        counts = {s: 0 for s in DELIVERY_STATUSES}
        by_kind: dict[str, dict[str, int]] = {}
        for kind, status, n in self.conn.execute("SELECT kind, status, count(*) FROM deliveries GROUP BY kind, status"):
            counts[status] += n
            by_kind.setdefault(kind, {s: 0 for s in DELIVERY_STATUSES})[status] = n
        at = iso(now or utcnow())
        due = self.scalar(
            "SELECT count(*) FROM deliveries WHERE status = 'queued' AND (next_attempt IS NULL OR next_attempt <= ?)",
            [at],
        )
        deferred, next_retry, oldest = self.conn.execute(
            "SELECT count(*), min(next_attempt), min(created) FROM deliveries "
            "WHERE status = 'queued' AND next_attempt > ?",
            [at],
        ).fetchone()
        return OutboxCounts(counts=counts, due_now=int(due), deferred=int(deferred),
                            next_retry=parse_time(next_retry), oldest_deferred=parse_time(oldest),
                            by_kind=by_kind)

    def list_deliveries(self, *, status: str | None = None, list_slug: str | None = None,
                        period: str | None = None, email: str | None = None,
                        page: int = 1000) -> Iterator[DeliveryRow]:
        """Deliveries matching every filter given, streamed in id order."""
        where = ["d.id > ?"]
        params: list[object] = []
        if status == "deferred":
            where.append("d.status = 'queued' AND d.attempts > 0")
        elif status == "bounced":
            where.append("d.bounced = 1")
        elif status is not None:
            where.append("d.status = ?")
            params.append(status)
        if list_slug is not None:
            where.append("l.slug = ?")
            params.append(list_slug)
        if period is not None:
            where.append("d.period = ?")
            params.append(period)
        if email is not None:
            where.append("s.email = ?")
            params.append(email)
        sql = (
            "SELECT d.id, l.slug, s.email, d.period, d.status, d.attempts, d.error, d.message_id, d.created, "
            "d.last_attempt, d.next_attempt, d.sent_at, d.bounced FROM deliveries d "
            "JOIN lists l ON l.id = d.list_id JOIN subscribers s ON s.id = d.subscriber_id "
            f"WHERE {' AND '.join(where)} ORDER BY d.id LIMIT ?"
        )
        after = 0
        while True:
            rows = self.conn.execute(sql, [after, *params, page]).fetchall()
            for r in rows:
                yield DeliveryRow(
                    id=r[0], list_slug=r[1], email=r[2], period=r[3], status=r[4], attempts=r[5], last_reply=r[6],
                    message_id=r[7], created=parse_time(r[8]), last_attempt=parse_time(r[9]),
                    next_attempt=parse_time(r[10]), sent_at=parse_time(r[11]), bounced=bool(r[12]),
                )
            if len(rows) < page:
                return
            after = rows[-1][0]

    def digest_reports(self, *, list_slug: str | None = None, period: str | None = None) -> list[DigestReport]:
        """Per list and period: what was planned and what became of it, newest period first.

        ``complained`` and ``unsubscribed`` count recipients of a sent digest
        who complained about or left the list at or after its sending.
        """
        where, params = ["1"], []
        if list_slug is not None:
            where.append("l.slug = ?")
            params.append(list_slug)
        if period is not None:
            where.append("d.period = ?")
            params.append(period)
        rows = self.conn.execute(
            "SELECT l.slug, d.period, count(*), "
            "sum(d.status = 'sent'), sum(d.status = 'skipped'), sum(d.status = 'queued' AND d.attempts = 0), "
            "sum(d.status = 'queued' AND d.attempts > 0), sum(d.status = 'sending'), "
            "sum(d.status = 'failed' AND d.bounced = 0), sum(d.bounced = 1), sum(d.status = 'unknown'), "
            "sum(d.status = 'cancelled'), "
            "sum(d.status = 'sent' AND EXISTS (SELECT 1 FROM events e WHERE e.subscriber_id = d.subscriber_id "
            "AND e.list_id = d.list_id AND e.kind = 'complaint' AND e.at >= d.sent_at)), "
            "sum(d.status = 'sent' AND EXISTS (SELECT 1 FROM events e WHERE e.subscriber_id = d.subscriber_id "
            "AND e.list_id = d.list_id AND e.kind = 'unsubscribe' AND e.at >= d.sent_at)) "
            "FROM deliveries d JOIN lists l ON l.id = d.list_id "
            f"WHERE {' AND '.join(where)} GROUP BY d.list_id, d.period ORDER BY d.period DESC, l.slug",
            params,
        ).fetchall()
        return [DigestReport(r[0], r[1], *(int(x or 0) for x in r[2:])) for r in rows]

    def get_delivery(self, delivery_id: int) -> Delivery:
        row = self.query_one("SELECT * FROM deliveries WHERE id = ?", [delivery_id])
        if row is None:
            raise NotFound(f"no delivery with id {delivery_id} (see `syndicate outbox status`)")
        return _row_to_delivery(row)

    def deliveries_for(self, subscription_id: int) -> list[Delivery]:
        rows = self.query("SELECT * FROM deliveries WHERE subscription_id = ? ORDER BY id", [subscription_id])
        return [_row_to_delivery(r) for r in rows]
