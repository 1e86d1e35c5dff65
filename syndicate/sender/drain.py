"""The async drain: claim small batches under a lease, send concurrently, record results in batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from ..config import Settings
from ..errors import NotFound, TransportError
from ..mailer import Transport
from ..models import utcnow
from ..store import Store
from ..store.outbox import ClaimedDelivery
from ..store.subscribers import HARD_BOUNCE_LIMIT
from .build import MessageBuilder
from .journal import SendJournal, journal_dir
from .notice_mail import NoticeBuilder
from .report import SendReport

#: How long a claim is held before another drain may call it abandoned.
LEASE = timedelta(minutes=10)
#: First retry delay; doubles per attempt, capped at :data:`MAX_BACKOFF`.
BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=6)
#: Record results at least this often (seconds) or this many at a time,
#: besides with every claim. Small, so a SIGKILL leaves few rows ``unknown``.
FLUSH_EVERY = 0.1
FLUSH_ROWS = 100


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after ``attempts`` failed ones.

    Example:
        >>> [int(backoff(n).total_seconds()) for n in (1, 2, 3)]
        [60, 120, 240]
    """
    delay: timedelta = BACKOFF * (2 ** max(attempts - 1, 0))
    return min(delay, MAX_BACKOFF)


async def drain(
    store: Store, settings: Settings, transport: Transport, now: datetime, report: SendReport,
    limit: int | None, on_progress: Callable[[int], None] | None, *, only: Sequence[int] | None = None,
    journal_at: Path | None = None,
) -> None:
    """Claim, send and record until nothing is due (``only``: just these rows, e.g. a notice sent at
    once, which keeps its journal in ``journal_at``, apart from the runs' journals)."""
    builder = MessageBuilder(store, settings)
    notices = NoticeBuilder(store, settings, builder.signer)
    concurrency = max(1, settings.smtp_pool_size) * 2
    claim_size = max(8, concurrency * 2)
    sem = asyncio.Semaphore(concurrency)
    owner = report.run_id
    max_attempts = max(1, settings.smtp_max_attempts)
    sent: list[tuple[int, str]] = []
    retry: list[tuple[int, datetime, str]] = []
    failed: list[tuple[int, str]] = []
    bounces: list[tuple[int, str]] = []
    claimed: set[int] = set()  # claimed, no result recorded yet
    started: set[int] = set()  # handed to the transport
    tasks: set[asyncio.Task[None]] = set()
    last_flush = time.monotonic()
    journal = SendJournal(journal_at or journal_dir(settings), owner)

    def note_error(msg: str) -> None:
        if len(report.errors) < 50:
            report.errors.append(msg)

    def flush() -> None:
        nonlocal last_flush
        if sent or retry or failed or bounces:
            with store.transaction(immediate=True):
                if sent:
                    store.mark_sent(owner, sent, utcnow())
                if retry:
                    store.schedule_retry(owner, retry)
                if failed:
                    store.mark_failed(owner, failed)
                for did, detail in bounces:
                    store.mark_failed(owner, [(did, detail)], bounced=True)
                    store.record_bounce(did, True, detail, now=utcnow(), limit=HARD_BOUNCE_LIMIT)
            for batch in (sent, retry, failed, bounces):
                for item in batch:
                    claimed.discard(item[0])
                    started.discard(item[0])
            report.sent += len(sent)
            report.retry_later += len(retry)
            report.failed += len(failed) + len(bounces)
            sent.clear()
            retry.clear()
            failed.clear()
            bounces.clear()
        last_flush = time.monotonic()

    async def send_one(d: ClaimedDelivery, envelope_from: str, rcpts: list[str], raw: bytes, mid: str) -> None:
        try:
            journal.started(d.id)
            await transport.send(envelope_from, rcpts, raw)
        except TransportError as exc:
            if not exc.temporary:
                bounces.append((d.id, str(exc)))
                note_error(f"{d.email}: {exc}")
            elif d.attempts >= max_attempts:
                failed.append((d.id, f"gave up after {d.attempts} attempts: {exc}"))
                note_error(f"{d.email}: gave up after {d.attempts} attempts: {exc}")
            else:
                retry.append((d.id, now + backoff(d.attempts), str(exc)))
        except Exception as exc:  # one bad message never stops the run
            failed.append((d.id, f"{type(exc).__name__}: {exc}"))
            note_error(f"{d.email}: {type(exc).__name__}: {exc}")
        else:
            journal.accepted(d.id, mid)
            sent.append((d.id, mid))
        finally:
            sem.release()
            if on_progress is not None:
                on_progress(1)

    remaining = limit if limit is not None else -1
    try:
        while remaining != 0:
            size = claim_size if remaining < 0 else min(claim_size, remaining)
            with store.transaction(immediate=True):  # results so far and the next claim: one commit
                flush()
                batch = store.claim_deliveries(owner, now, utcnow() + LEASE, size, only=only)
            if not batch:
                break
            if remaining > 0:
                remaining -= len(batch)
            claimed.update(d.id for d in batch)
            for d in batch:
                try:
                    mail, raw = builder.build(d, utcnow(), now) if d.kind == "digest" else notices.build(d, utcnow())
                    envelope_from, rcpts = mail.envelope_from, mail.recipients
                except NotFound as exc:
                    failed.append((d.id, str(exc)))
                    continue
                except Exception as exc:  # a bad address or template: this row only
                    failed.append((d.id, f"cannot build the message: {type(exc).__name__}: {exc}"))
                    note_error(f"{d.email}: cannot build the message: {exc}")
                    continue
                await sem.acquire()
                started.add(d.id)
                task = asyncio.create_task(send_one(d, envelope_from, rcpts, raw, mail.message_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if len(sent) + len(retry) + len(failed) >= FLUSH_ROWS or time.monotonic() - last_flush > FLUSH_EVERY:
                    flush()
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        try:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            flush()
            never_started = sorted(claimed - started)
            if never_started:
                store.release_claims(owner, never_started)
            lost = sorted(started & claimed)
            if lost:
                store.mark_unknown(owner, lost, "interrupted while sending; not resent automatically")
                report.unknown += len(lost)
            journal.close()
        finally:
            await transport.close()

