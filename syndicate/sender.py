"""The sender: plan due digests into the outbox, then drain it (listmonk's manager).

One run of :func:`run_send` (what ``syndicate send`` calls from cron):

1. takes the run lock, an ``fcntl`` lock on ``<db>.send.lock`` beside the
   database. The kernel drops it when the process dies, even by SIGKILL, so
   it never goes stale. A second run started while one holds it does not
   wait: it raises :class:`~syndicate.errors.LockError` (exit 75, EX_TEMPFAIL)
   and the next cron tick carries on;
2. recovers what a dead run left ``sending`` from its journal (below): rows
   the server had accepted are recorded ``sent``, rows never handed to the
   transport go back to the queue, and only rows that were on the wire at the
   instant of the kill become ``unknown`` (never resent unless
   ``syndicate outbox retry --unknown``);
3. purges pending subscriptions older than ``[mail] pending_max_age_days``
   (0 turns this off), each with an event;
4. plans: streams due subscriptions and writes one outbox row each (UNIQUE
   per list, subscriber and period, so a replan never duplicates), batched;
5. drains: claims small batches under a lease (``BEGIN IMMEDIATE``), builds
   each message from a digest rendered once per group, sends concurrently
   through the Transport, and records results in batched transactions.
   4xx and dropped connections are retried later with exponential backoff
   up to ``smtp_max_attempts``; 5xx fails at once and counts a hard bounce.

The journal is an append-only file per run in ``<db>.journal/``: a line
before each message goes to the transport and one when the server accepts
it. Each line is one ``write`` to an ``O_APPEND`` descriptor, so it is in the
kernel's hands at once and survives SIGKILL; a run that ends normally deletes
its journal.

Claims alone already keep two drains (with or without the lock) from ever
taking the same row; the lock keeps two runs from planning at once and lets
a new run recover a dead run's rows at once instead of waiting for leases.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

from . import subscribers as subs
from .config import Settings
from .digest import (
    DigestRenderer,
    RenderedDigest,
    outlook,
    personalise,
    plan,
    render_notice,
)
from .errors import LockError, NotFound, TransportError
from .mailer import DkimSigner, Mail, Transport, encode_address, list_headers, render_mail, verp_address
from .models import NewsList, Subscriber, utcnow
from .store import Store
from .store.outbox import ClaimedDelivery
from .store.subscribers import HARD_BOUNCE_LIMIT

#: How long a claim is held before another drain may call it abandoned.
LEASE = timedelta(minutes=10)
#: First retry delay; doubles per attempt, capped at :data:`MAX_BACKOFF`.
BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=6)
#: Record results at least this often (seconds) or this many at a time,
#: besides with every claim. Small, so a SIGKILL leaves few rows ``unknown``.
FLUSH_EVERY = 0.1
FLUSH_ROWS = 100


@dataclass
class SendReport:
    """What one run did; :meth:`summary` is the line cron mails to the admin."""

    run_id: str
    queued: int = 0
    skipped: int = 0
    sent: int = 0
    failed: int = 0
    retry_later: int = 0
    unknown: int = 0
    recovered: int = 0  # sent by a run that died before recording it
    purged: int = 0  # pending subscriptions never confirmed in time, removed by this run
    dry_run: bool = False
    planning_seconds: float = 0.0
    sending_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.unknown == 0

    def summary(self) -> str:
        """Example:
        >>> SendReport("r", sent=1234, failed=2, skipped=10, retry_later=3).summary()
        'sent 1,234, failed 2, skipped 10, retry later 3'
        """
        if self.dry_run:
            return f"dry run: would send {self.queued:,}, skip {self.skipped:,} (nothing written)"
        text = f"sent {self.sent:,}, failed {self.failed:,}, skipped {self.skipped:,}, retry later {self.retry_later:,}"
        if self.unknown:
            text += f", unknown {self.unknown:,} (not resent; see `syndicate outbox retry --unknown`)"
        if self.recovered:
            text += f"; recorded {self.recovered:,} sent by an interrupted run"
        if self.purged:
            text += f"; purged {self.purged:,} never confirmed in time"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id, "queued": self.queued, "sent": self.sent, "failed": self.failed,
            "skipped": self.skipped, "retry_later": self.retry_later, "unknown": self.unknown, "recovered": self.recovered,
            "purged": self.purged,
            "dry_run": self.dry_run, "planning_seconds": round(self.planning_seconds, 3),
            "sending_seconds": round(self.sending_seconds, 3), "errors": self.errors[:20],
        }


# -- the run lock --------------------------------------------------------------------


def lock_path(settings: Settings) -> Path:
    return Path(f"{settings.db}.send.lock")


@contextmanager
def run_lock(settings: Settings) -> Iterator[None]:
    """Hold the send lock for the block, or raise LockError at once."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise LockError(
                f"another `syndicate send` is running (pid {holder}, lock {path}); "
                "this run stops here and the next one will carry on"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so claims are recorded or released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def new_run_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


# -- the journal ---------------------------------------------------------------------


def journal_dir(settings: Settings) -> Path:
    return Path(f"{settings.db}.journal")


@dataclass
class JournalState:
    """What a run's journal says: rows handed to the transport, rows accepted."""

    run_id: str = ""
    started: set[int] = field(default_factory=set)
    accepted: dict[int, str] = field(default_factory=dict)


class SendJournal:
    """One run's append-only record of what went on the wire (see the module docstring)."""

    def __init__(self, directory: Path, run_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / (re.sub(r"[^A-Za-z0-9._-]", "_", run_id) + ".log")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(self._fd, f"R {run_id}\n".encode())

    def started(self, delivery_id: int) -> None:
        os.write(self._fd, b"S %d\n" % delivery_id)

    def accepted(self, delivery_id: int, message_id: str) -> None:
        os.write(self._fd, f"D {delivery_id} {message_id}\n".encode())

    def close(self) -> None:
        """The run recorded every result in the store: the journal is no longer needed."""
        os.close(self._fd)
        self.path.unlink(missing_ok=True)

    @staticmethod
    def read(path: Path) -> JournalState:
        state = JournalState()
        for line in path.read_text("utf-8", "replace").splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "R":
                state.run_id = rest
            elif kind == "S" and rest.isdigit():
                state.started.add(int(rest))
            elif kind == "D":
                did, _, mid = rest.partition(" ")
                if did.isdigit():
                    state.accepted[int(did)] = mid
        return state


def recover_dead_runs(store: Store, settings: Settings, own_run_id: str) -> tuple[int, int, int]:
    """Settle the rows dead runs left ``sending``, from their journals.

    Only call it while holding the run lock (no other run is alive). Returns
    (recorded sent, given back to the queue, marked unknown).
    """
    directory = journal_dir(settings)
    totals = [0, 0, 0]
    if not directory.is_dir():
        return (0, 0, 0)
    for path in sorted(directory.glob("*.log")):
        state = SendJournal.read(path)
        if not state.run_id or state.run_id == own_run_id:
            continue
        with store.transaction(immediate=True):
            pending = set(store.sending_ids(state.run_id))
            sent = [(did, mid) for did, mid in state.accepted.items() if did in pending]
            store.mark_sent(state.run_id, sent, utcnow())
            on_the_wire = sorted((state.started - set(state.accepted)) & pending)
            store.mark_unknown(state.run_id, on_the_wire,
                               f"on the wire when run {state.run_id} died; not resent automatically")
            never_started = sorted(pending - state.started)
            store.release_claims(state.run_id, never_started)
        totals[0] += len(sent)
        totals[1] += len(never_started)
        totals[2] += len(on_the_wire)
        path.unlink(missing_ok=True)
    return (totals[0], totals[1], totals[2])


# -- messages ------------------------------------------------------------------------


def _domain(address: str) -> str:
    return encode_address(address).rpartition("@")[2]


def _atom(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-") or "list"


def digest_message_id(newslist: NewsList, subscriber_id: int, period: str, domain: str) -> str:
    """Stable per (list, subscriber, period), so a resend can be recognised.

    Example:
        >>> digest_message_id(NewsList(slug="tin-sang", name="x"), 7, "2026-11-24", "news.example.org")
        '<digest.tin-sang.7.2026-11-24@news.example.org>'
    """
    return f"<digest.{_atom(newslist.slug)}.{subscriber_id}.{period}@{domain}>"


class MessageBuilder:
    """Turns a claimed delivery into bytes: personalise, headers, MIME, DKIM."""

    def __init__(self, store: Store, settings: Settings, renderer: DigestRenderer | None = None) -> None:
        self.store = store
        self.settings = settings
        self.renderer = renderer or DigestRenderer(store, settings)
        self.signer = DkimSigner.from_settings(settings)

    def build(self, d: ClaimedDelivery, date: datetime, now: datetime | None = None,
              delivery_id: int | None = None) -> tuple[Mail, bytes]:
        nl = self.renderer.newslist(d.list_id)
        r = self.renderer.render(nl, d.period, d.categories, d.window, now)
        mail = self.mail_for(nl, r, d.subscriber_id, d.email, d.name, d.period, date,
                             d.id if delivery_id is None else delivery_id)
        return mail, render_mail(mail, self.signer)

    def mail_for(self, nl: NewsList, r: RenderedDigest, subscriber_id: int, email: str, name: str, period: str,
                 date: datetime, delivery_id: int) -> Mail:
        s = self.settings
        assert nl.id is not None
        from_addr = nl.sender_address or s.mail_sender_address
        domain = _domain(from_addr)
        unsub = subs.unsubscribe_url(s, subscriber_id, nl.id, email)
        prefs = subs.preferences_url(s, subscriber_id, nl.id, email)
        p = personalise(r, name, unsub, prefs)
        return_domain = _domain("x@" + (s.mail_return_path_domain or domain))
        headers = list_headers(
            nl.name, f"{_atom(nl.slug)}.{domain}", unsub, f"mailto:unsubscribe@{return_domain}?subject=unsubscribe%20{unsub.rsplit('/', 1)[1]}"
        )
        if s.mail_feedback_id:
            headers.append(("Feedback-ID", f"{_atom(nl.slug)}:digest:{_atom(s.mail_feedback_id)}"))
        headers.append(("Precedence", "bulk"))
        return Mail(
            from_name=nl.sender_name or s.mail_sender_name, from_addr=from_addr, to_name=name, to_addr=email,
            subject=p.subject, text=p.text, html=p.html,
            message_id=digest_message_id(nl, subscriber_id, period, domain), date=date, headers=headers,
            return_path=verp_address(s, delivery_id, domain),
        )


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after ``attempts`` failed ones.

    Example:
        >>> [int(backoff(n).total_seconds()) for n in (1, 2, 3)]
        [60, 120, 240]
    """
    delay: timedelta = BACKOFF * (2 ** max(attempts - 1, 0))
    return min(delay, MAX_BACKOFF)


# -- the run -------------------------------------------------------------------------


def run_send(
    store: Store,
    settings: Settings,
    transport: Transport,
    *,
    now: datetime | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    on_planned: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    lock: bool = True,
    run_id: str | None = None,
) -> SendReport:
    """Plan due digests and drain the outbox once. ``now`` defaults to the clock.

    ``on_planned(queued)`` is called when planning ends, ``on_progress(1)``
    per message finished (for a progress bar). Closes ``transport`` at the end.
    """
    now = now or utcnow()
    report = SendReport(run_id=run_id or new_run_id(), dry_run=dry_run)
    if dry_run:
        _dry_run(store, settings, now, report)
        return report
    with (run_lock(settings) if lock else _nothing()), _sigterm_as_exit():
        if lock:
            report.recovered, _, report.unknown = recover_dead_runs(store, settings, report.run_id)
        report.unknown += store.mark_orphans_unknown(report.run_id, utcnow(), all_foreign=lock)
        if settings.mail_pending_max_age_days > 0:  # cron runs only `send`: it keeps the list clean too
            # by the real clock, never --at: a replay must not delete anyone early
            report.purged = subs.purge_pending(store, settings, source="sender")
        t0 = time.perf_counter()
        report.queued, report.skipped = store.plan_deliveries(plan(store, now), now=utcnow())
        report.planning_seconds = time.perf_counter() - t0
        if on_planned is not None:
            on_planned(store.outbox_status(now).due_now)
        t1 = time.perf_counter()
        asyncio.run(_drain(store, settings, transport, now, report, limit, on_progress))
        report.sending_seconds = time.perf_counter() - t1
    return report


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _dry_run(store: Store, settings: Settings, now: datetime, report: SendReport) -> None:
    """Count what would be sent, rendering each group once to check templates."""
    renderer = DigestRenderer(store, settings, archive=False)
    for p in plan(store, now, release=False):
        if p.skipped:
            report.skipped += 1
            continue
        report.queued += 1
        renderer.render(renderer.newslist(p.list_id), p.period, p.categories, p.window, now)


async def _drain(
    store: Store, settings: Settings, transport: Transport, now: datetime, report: SendReport,
    limit: int | None, on_progress: Callable[[int], None] | None,
) -> None:
    builder = MessageBuilder(store, settings)
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
    journal = SendJournal(journal_dir(settings), owner)

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
                batch = store.claim_deliveries(owner, now, utcnow() + LEASE, size)
            if not batch:
                break
            if remaining > 0:
                remaining -= len(batch)
            claimed.update(d.id for d in batch)
            for d in batch:
                try:
                    mail, raw = builder.build(d, utcnow(), now)
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


# -- one-off notices (double opt-in) -------------------------------------------------


def send_confirmation(store: Store, settings: Settings, transport: Transport, subscriber: Subscriber,
                      newslist: NewsList, token_url: str, *, kind: str = "confirm") -> str:
    """Send the double opt-in email (or ``kind="welcome"``) now; return its Message-ID.

    Runs its own event loop, so call it from synchronous code (a Starlette
    sync handler runs in a thread pool: fine). Raises TransportError.
    """
    return asyncio.run(asend_confirmation(store, settings, transport, subscriber, newslist, token_url, kind=kind))


async def asend_confirmation(store: Store, settings: Settings, transport: Transport, subscriber: Subscriber,
                             newslist: NewsList, token_url: str, *, kind: str = "confirm") -> str:
    """The async form of :func:`send_confirmation` (closes the transport too)."""
    from .render import make_environment

    assert subscriber.id is not None and newslist.id is not None
    sub = store.find_subscription(subscriber.id, newslist.id)
    content = render_notice(
        settings, make_environment(settings), kind, newslist, subscriber.name, token_url,
        unsubscribe_url=subs.unsubscribe_url(settings, subscriber.id, newslist.id, subscriber.email),
        cadence=sub.cadence if sub else newslist.cadence, weekday=sub.weekday if sub else newslist.weekday,
        send_hour=sub.send_hour if sub else newslist.send_hour,
    )
    from_addr = newslist.sender_address or settings.mail_sender_address
    domain = _domain(from_addr)
    mid = f"<{kind}.{_atom(newslist.slug)}.{subscriber.id}.{int(time.time())}.{secrets.token_hex(4)}@{domain}>"
    mail = Mail(
        from_name=newslist.sender_name or settings.mail_sender_name, from_addr=from_addr, to_name=subscriber.name,
        to_addr=subscriber.email, subject=content.subject, text=content.text, html=content.html, message_id=mid,
        date=utcnow(), headers=[("Auto-Submitted", "auto-generated")],
    )
    try:
        await transport.send(mail.envelope_from, mail.recipients, render_mail(mail, DkimSigner.from_settings(settings)))
    finally:
        await transport.close()
    return mid


# -- preview ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    subject: str
    html: str
    text: str
    eml: bytes
    period: str
    article_count: int
    due: bool
    note: str = ""  # why `send` would send nothing now (already sent, not due, nothing new); "" if it sends
    shown: bool = True  # False: nothing to show (not due, nothing new, skipped); only the note counts


def preview(store: Store, settings: Settings, email: str, list_slug: str, now: datetime | None = None) -> Preview:
    """Exactly what ``send`` would send this subscriber at ``now``, without
    writing anything; when it would send nothing, ``note`` says why, and the
    rendering is the digest already queued or sent for the period (``shown``)
    or of an empty period, for reference only (not ``shown``)."""
    now = now or utcnow()
    nl = store.get_list(list_slug)
    subscriber = store.get_subscriber(subs.normalize_address(email))
    assert nl.id is not None and subscriber.id is not None
    subscription = store.get_subscription(subscriber.id, nl.id)
    assert subscription.id is not None
    # Read as planning reads it, even when the subscription is not active: shows what it would get.
    o = outlook(store, nl, subscription.id, subscriber.email, now)
    builder = MessageBuilder(store, settings, DigestRenderer(store, settings, archive=False))
    r = builder.renderer.render(nl, o.period.key, o.categories, o.window, now)
    mail = builder.mail_for(nl, r, subscriber.id, subscriber.email, subscriber.name, o.period.key, now, 0)
    return Preview(mail.subject, mail.html, mail.text, render_mail(mail, builder.signer), o.period.key,
                   r.article_count, o.due, o.note, o.show)
