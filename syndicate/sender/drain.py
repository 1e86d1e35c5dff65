"""The async drain: claim small batches under a lease, send concurrently, record results in batches.

How each outcome is recorded:

* accepted (250 after the final dot): ``D`` journal line, then ``sent``;
* a reply of 4xx, or a failure before DATA began (no connection, dropped
  during MAIL/RCPT): back to the queue for a retry by time, with exponential
  backoff up to ``[send] max_retry_minutes``, until ``[send]
  queue_lifetime_hours`` after it was planned; then ``failed``;
* a 5xx reply: ``failed`` and a hard bounce;
* the connection lost or timed out after DATA began: ``unknown`` (the relay
  may have it; never resent automatically);
* claimed but never started (SIGTERM, the relay unreachable, a storage error):
  given back to the queue as if never claimed.

Results and the next claim share one transaction; the in-memory results are
forgotten only after it commits, and the journal is deleted only when nothing
it holds is left unrecorded.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from ..config import Settings
from ..errors import NotFound, SyndicateError, TransportError
from ..mailer import Transport
from ..models import utcnow
from ..store import Store
from ..store.outbox import ClaimedDelivery
from ..store.subscribers import HARD_BOUNCE_LIMIT
from .build import MessageBuilder
from .faults import inject
from .journal import SendJournal, journal_dir
from .notice_mail import NoticeBuilder
from .report import SendReport
from .stop import Stop

#: How long a claim is held before another drain may call it abandoned.
LEASE = timedelta(minutes=10)
#: First retry delay; doubles per attempt, capped at ``[send] max_retry_minutes``.
BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
#: Record results at least this often (seconds) or this many at a time,
#: besides with every claim. Small, so a SIGKILL leaves few rows ``unknown``.
FLUSH_EVERY = 0.1
FLUSH_ROWS = 100


class GiveBack(SyndicateError):
    """Raised by the DATA hook of a run that is stopping: the message does not start.

    A stopping run lets its not yet started sends reach this point instead of
    cancelling them mid-connect (a cancelled handshake can leak its socket);
    the transport then drops that connection."""


class JournalError(SyndicateError):
    """The journal could not be written: the message must not start (not an OSError,
    so that no transport mistakes it for a connection failure)."""


def backoff(attempts: int, cap: timedelta = MAX_BACKOFF) -> timedelta:
    """Delay before the next try after ``attempts`` failed ones.

    Example:
        >>> [int(backoff(n).total_seconds()) for n in (1, 2, 3, 8)]
        [60, 120, 240, 3600]
    """
    delay: timedelta = BACKOFF * (2 ** min(max(attempts - 1, 0), 30))
    return min(delay, cap)


def retry_time(d: ClaimedDelivery, now: datetime, settings: Settings) -> datetime | None:
    """When to try ``d`` again after a temporary failure at ``now``; None to give up.

    Retries back off exponentially up to ``[send] max_retry_minutes``; the
    last one falls at the end of the queue lifetime (``[send]
    queue_lifetime_hours`` after planning), and a row past it gives up.
    ``[smtp] max_attempts`` (0, the default: no cap) caps attempts as well.
    """
    if settings.smtp_max_attempts > 0 and d.attempts >= settings.smtp_max_attempts:
        return None
    deadline = (d.created or now) + timedelta(hours=settings.send_queue_lifetime_hours)
    if now >= deadline:
        return None
    return min(now + backoff(d.attempts, timedelta(minutes=settings.send_max_retry_minutes)), deadline)


def describe_storage_error(exc: BaseException, settings: Settings, journal: str) -> str:
    """One line naming the path and the cause."""
    if isinstance(exc, OSError):
        where = exc.filename or journal
        return f"cannot write {where}: {exc.strerror or exc}"
    return f"cannot write the database {settings.db}: {exc}"


@dataclass
class _Pending:
    """Results not yet committed to the store (each list only grows between commits)."""

    sent: list[tuple[int, str]] = field(default_factory=list)
    retry: list[tuple[int, datetime, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    bounces: list[tuple[int, str]] = field(default_factory=list)
    unknown: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sent) + len(self.retry) + len(self.failed) + len(self.bounces) + len(self.unknown)

    def clear(self) -> None:
        for batch in (self.sent, self.retry, self.failed, self.bounces, self.unknown):
            batch.clear()

    def ids(self) -> list[int]:
        return [item[0] for batch in (self.sent, self.retry, self.failed, self.bounces, self.unknown) for item in batch]


async def drain(
    store: Store, settings: Settings, transport: Transport, now: datetime, report: SendReport,
    limit: int | None, on_progress: Callable[[int], None] | None, stop: Stop | None = None, *,
    only: Sequence[int] | None = None, journal_at: Path | None = None,
) -> None:
    """Claim, send and record until nothing is due (``only``: just these rows, e.g. a notice sent at
    once, which keeps its journal in ``journal_at``, apart from the runs' journals)."""
    stop = stop or Stop()
    stop_event = stop.attach(asyncio.get_running_loop())
    builder = MessageBuilder(store, settings)
    notices = NoticeBuilder(store, settings, builder.signer)
    concurrency = max(1, settings.smtp_pool_size) * 2
    claim_size = max(8, concurrency * 2)
    relay_down_after = max(8, concurrency)
    sem = asyncio.Semaphore(concurrency)
    owner = report.run_id
    pending = _Pending()
    claimed: set[int] = set()  # claimed, no result committed yet
    on_wire: set[int] = set()  # DATA began (its S line is on disk)
    tasks: dict[asyncio.Task[None], int] = {}
    last_flush = time.monotonic()
    connect_failures = 0  # in a row, before DATA, with no reply: the relay may be down
    halt = ""  # why this run stops claiming (besides a stop request)

    def note_error(msg: str) -> None:
        if len(report.errors) < 50:
            report.errors.append(msg)

    def flush(claim: int = 0) -> list[ClaimedDelivery]:
        """Commit the results so far (and claim ``claim`` more in the same transaction)."""
        nonlocal last_flush
        batch: list[ClaimedDelivery] = []
        if len(pending) or claim:
            journal.sync()  # accepted lines on disk before the store says sent
            with store.transaction(immediate=True):
                if pending.sent:
                    store.mark_sent(owner, pending.sent, utcnow())
                if pending.retry:
                    store.schedule_retry(owner, pending.retry)
                if pending.failed:
                    store.mark_failed(owner, pending.failed)
                for did, detail in pending.bounces:
                    store.mark_failed(owner, [(did, detail)], bounced=True)
                    store.record_bounce(did, True, detail, now=utcnow(), limit=HARD_BOUNCE_LIMIT)
                if pending.unknown:
                    for did, reason in pending.unknown:
                        store.mark_unknown(owner, [did], reason)
                if claim:
                    inject("claim")
                    batch = store.claim_deliveries(owner, now, utcnow() + LEASE, claim, only=only)
            # committed: only now may the results be forgotten
            for did in pending.ids():
                claimed.discard(did)
                on_wire.discard(did)
            report.sent += len(pending.sent)
            report.retry_later += len(pending.retry)
            report.failed += len(pending.failed) + len(pending.bounces)
            report.unknown += len(pending.unknown)
            pending.clear()
        last_flush = time.monotonic()
        return batch

    async def send_one(d: ClaimedDelivery, envelope_from: str, rcpts: list[str], raw: bytes, mid: str) -> None:
        nonlocal connect_failures, halt
        wire = False

        async def on_data() -> None:
            nonlocal wire
            if stopping():  # the run is stopping: this one never starts, it goes back to the queue
                raise GiveBack(d.id)
            try:
                journal.started(d.id)
            except OSError as exc:
                raise JournalError(describe_storage_error(exc, settings, str(journal.path))) from None
            # from its S line on, a message counts as on the wire: a stop lets it finish, and a
            # cut-off (grace over, a second signal) makes it `unknown`, never given back
            wire = True
            on_wire.add(d.id)
            try:
                await journal.wait_synced()
            except OSError as exc:  # DATA never began: given back
                wire = False
                on_wire.discard(d.id)
                raise JournalError(describe_storage_error(exc, settings, str(journal.path))) from None

        try:
            await transport.send(envelope_from, rcpts, raw, on_data=on_data)
        except TransportError as exc:
            if wire and exc.code is None:
                pending.unknown.append((d.id, f"the connection failed after the message was handed over ({exc}); "
                                              "the relay may have it, not resent automatically"))
                note_error(f"{d.email}: outcome unknown: {exc}")
            elif not exc.temporary:
                pending.bounces.append((d.id, str(exc)))
                note_error(f"{d.email}: {exc}")
            else:
                if exc.code is None and not wire:
                    connect_failures += 1
                    if connect_failures >= relay_down_after and not halt:
                        halt = f"the relay is unreachable: {exc}"
                when = retry_time(d, now, settings)
                if when is None:
                    pending.failed.append((d.id, f"gave up after {d.attempts} attempts: {exc}"))
                    note_error(f"{d.email}: gave up after {d.attempts} attempts: {exc}")
                else:
                    pending.retry.append((d.id, when, str(exc)))
        except GiveBack:  # given back when the run settles
            pass
        except JournalError as exc:  # never started: given back when the run settles
            if not halt:
                halt = "storage error"
                report.fatal = report.fatal or str(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one bad message never stops the run
            pending.failed.append((d.id, f"{type(exc).__name__}: {exc}"))
            note_error(f"{d.email}: {type(exc).__name__}: {exc}")
        else:
            connect_failures = 0
            pending.sent.append((d.id, mid))
            try:
                journal.accepted(d.id, mid)
            except OSError as exc:  # recorded from memory if the store can still be written
                if not halt:
                    halt = "storage error"
                    report.fatal = report.fatal or describe_storage_error(exc, settings, str(journal.path))
        finally:
            sem.release()
            if on_progress is not None:
                on_progress(1)

    async def acquire_slot() -> bool:
        """A free sending slot, or False once a stop is requested."""
        if not sem.locked():
            await sem.acquire()
            return True
        acq = asyncio.ensure_future(sem.acquire())
        waiter = asyncio.ensure_future(stop_event.wait())
        await asyncio.wait({acq, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not acq.done():
            acq.cancel()
            try:
                await acq
            except asyncio.CancelledError:
                return False
        if stop.requested:
            sem.release()
            return False
        return True

    def stopping() -> bool:
        return stop.requested or bool(halt)

    async def finish() -> None:
        """Wait for the tasks. On a stop, sends not yet in DATA give themselves back at the DATA hook, and
        every task gets the grace period; what is still running after it is cut off (`unknown` if on the wire)."""
        while tasks:
            if not stopping():
                waiter = asyncio.ensure_future(stop_event.wait())
                await asyncio.wait({*tasks, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                continue
            grace = 0.0 if stop.hurry else settings.send_grace_seconds
            deadline = (stop.at if stop.requested else time.monotonic()) + grace
            while tasks and not stop.hurry:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                waiter = asyncio.ensure_future(stop_event.wait())
                stop_event.clear()
                await asyncio.wait({*tasks, waiter}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def settle() -> None:
        """Record what is left: results, unknown for what was on the wire, give back the rest."""
        flush()
        ids = sorted(claimed)
        lost = [did for did in ids if did in on_wire]
        never_started = [did for did in ids if did not in on_wire]
        with store.transaction(immediate=True):
            if never_started:
                report.given_back += store.release_claims(owner, never_started)
            if lost:
                store.mark_unknown(owner, lost, "interrupted while sending; not resent automatically")
        report.unknown += len(lost)
        claimed.clear()
        on_wire.clear()

    try:
        journal = SendJournal(journal_at or journal_dir(settings), owner, fsync=settings.send_fsync)
    except OSError as exc:
        report.fatal = describe_storage_error(exc, settings, str(journal_dir(settings)))
        stop.detach()
        await transport.close()
        return
    remaining = limit if limit is not None else -1
    recorded = False
    try:
        try:
            while remaining != 0 and not stopping():
                size = claim_size if remaining < 0 else min(claim_size, remaining)
                batch = flush(claim=size)  # results so far and the next claim: one commit
                if not batch:
                    break
                if remaining > 0:
                    remaining -= len(batch)
                claimed.update(d.id for d in batch)
                for d in batch:
                    if stopping():
                        break
                    try:
                        mail, raw = (builder.build(d, utcnow(), now) if d.kind in ("digest", "campaign")
                                     else notices.build(d, utcnow()))
                        envelope_from, rcpts = mail.envelope_from, mail.recipients
                    except NotFound as exc:
                        pending.failed.append((d.id, str(exc)))
                        continue
                    except Exception as exc:  # a bad address or template: this row only
                        pending.failed.append((d.id, f"cannot build the message: {type(exc).__name__}: {exc}"))
                        note_error(f"{d.email}: cannot build the message: {exc}")
                        continue
                    if not await acquire_slot():
                        break
                    task = asyncio.create_task(send_one(d, envelope_from, rcpts, raw, mail.message_id))
                    tasks[task] = d.id
                    task.add_done_callback(tasks.pop)
                    if len(pending) >= FLUSH_ROWS or time.monotonic() - last_flush > FLUSH_EVERY:
                        flush()
            await finish()
        except BaseException:
            # an error above (the store, a bug): start nothing more, let what is on the wire finish
            halt = halt or "error"
            await finish()
            raise
        finally:
            try:
                if tasks:  # cancelled from outside: whatever is still running is cut off
                    for task in list(tasks):
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                settle()
                recorded = True
            finally:
                journal.close(delete=recorded)
    except (sqlite3.Error, OSError) as exc:
        report.fatal = report.fatal or describe_storage_error(exc, settings, str(journal.path))
    except Exception as exc:  # a bug or an injected fault: recorded what it could, the run stops here
        report.fatal = report.fatal or f"{type(exc).__name__}: {exc}"
    finally:
        stop.detach()
        await transport.close()
    if stop.requested:
        report.stopped = stop.reason
    elif halt and not report.fatal:
        report.stopped = halt
        note_error(halt)
