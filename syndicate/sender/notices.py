"""Confirmation and welcome emails: outbox rows like digests, sent at once through the same drain.

A notice is queued with :meth:`~syndicate.store.Store.queue_notices` (the
store checks, in the same write, that the subscription is in the right state,
that the address is not suppressed, that a welcome goes once ever and that a
confirmation is not queued twice within a few minutes). :func:`notify` queues
one and then :func:`deliver_now` tries to send that row at once, through the
drain every digest goes through (claim under a lease, journal, VERP return
path, Message-ID recorded on the row), so the person has it in seconds. When
the relay fails, the row stays queued with the relay's error, one log line
says so, and the next ``syndicate send`` retries it with the usual backoff.

Sending at once needs no run lock, so a notice never waits for a ``send``
(planning a million digests, say) and a ``send`` never stops for a notice:
claims keep the two from taking the same row, and the row's journal is kept
apart (``<db>.journal/notices/``) with a live lease that a run's recovery
leaves alone. Should the process die mid-send, :func:`recover_notice_journals`
(called by every ``send`` and every notice sent at once) settles its rows from
that journal once their lease has run out: accepted ones are recorded
``sent``, ones never handed to the relay go back to the queue, and only one
on the wire at the instant of death becomes ``unknown`` (never resent on its own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..config import Settings
from ..mailer import Transport, make_transport
from ..mailer.transports import OnData
from ..models import utcnow
from ..store import Store
from .drain import LEASE, drain
from .journal import SendJournal, journal_dir
from .lock import new_run_id
from .report import SendReport

log = logging.getLogger(__name__)


def notice_journal_dir(settings: Settings) -> Path:
    """Where notices sent at once keep their journals: apart from the runs', which a run's recovery reads."""
    return journal_dir(settings) / "notices"


@dataclass(frozen=True)
class NoticeOutcome:
    """What became of one notice: ``sent``, ``queued`` (in the outbox, not delivered yet; ``error`` says
    why), ``not queued`` (``error`` says why none was), or ``failed``/``cancelled``/``unknown`` (not retried)."""

    kind: str
    subscription_id: int
    delivery_id: int | None
    status: str
    message_id: str = ""
    error: str = ""

    @property
    def delivered(self) -> bool:
        return self.status == "sent"

    def describe(self, what: str = "", via: str = "") -> str:
        """One line for a person.

        Example:
            >>> NoticeOutcome("confirm", 3, 9, "queued", error="SMTP replied 451 try later").describe()
            'confirmation email queued but not yet delivered (SMTP replied 451 try later); the next `syndicate send` retries it'
        """
        what = what or ("confirmation email" if self.kind == "confirm" else f"{self.kind} email")
        if self.status == "sent":
            return f"{what} sent{' via ' + via if via else ''} ({self.message_id})"
        if self.status == "queued":
            return f"{what} queued but not yet delivered ({self.error}); the next `syndicate send` retries it"
        if self.status == "not queued":
            return f"no {what} queued: {self.error}"
        return f"{what} {self.status}, not retried: {self.error}"


def notify(store: Store, settings: Settings, kind: str, subscription_id: int, *, transport: Transport | None = None,
           send: bool = True, now: datetime | None = None) -> NoticeOutcome:
    """Queue a ``kind`` notice ("confirm" or "welcome") for one subscription and, with ``send``,
    deliver that row at once. Never raises for a relay failure: the outcome says what happened."""
    [queued] = store.queue_notices(kind, [subscription_id], now=now)
    if queued.delivery_id is None:
        if transport is not None:
            asyncio.run(transport.close())
        return NoticeOutcome(kind, subscription_id, None, "not queued", error=queued.reason)
    if not send:
        if transport is not None:
            asyncio.run(transport.close())
        return NoticeOutcome(kind, subscription_id, queued.delivery_id, "queued",
                             error="not sent now; the next `syndicate send` sends it")
    outcome = deliver_now(store, settings, [queued.delivery_id], transport=transport)[0]
    if kind == "confirm" and outcome.message_id:  # proof of consent: which email asked them
        store.set_confirmation_message_id(subscription_id, outcome.message_id)
    return outcome


def deliver_notices(store: Store, settings: Settings, subscription_ids: Sequence[int], *,
                    transport: Transport | None = None) -> list[NoticeOutcome]:
    """Send at once the notices still queued for these subscriptions (the welcome a confirmation queued)."""
    ids = store.queued_notices(subscription_ids)
    if not ids:
        if transport is not None:
            asyncio.run(transport.close())
        return []
    return deliver_now(store, settings, ids, transport=transport)


def recover_notice_journals(store: Store, settings: Settings, now: datetime | None = None) -> tuple[int, int, int]:
    """Settle the rows of notice senders that died, from their journals, once their leases ran out.

    A journal whose rows still hold a live lease belongs to a sender that may
    be alive: it is left alone. Returns (recorded sent, given back, unknown).
    """
    directory = notice_journal_dir(settings)
    if not directory.is_dir():
        return (0, 0, 0)
    now = now or utcnow()
    totals = [0, 0, 0]
    for path in sorted(directory.glob("*.log")):
        try:
            state = SendJournal.read(path)
        except FileNotFoundError:
            continue  # its sender finished meanwhile: a journal is removed only once all it held is committed
        if not state.run_id:
            continue
        with store.transaction(immediate=True):
            pending = store.sending_ids(state.run_id)
            leases = [store.get_delivery(did).lease_until for did in pending]
            if any(lease is not None and lease >= now for lease in leases):
                continue  # maybe alive
            if not pending and not _older_than(path, now - LEASE):
                continue  # nothing claimed yet, or finishing (or finished): not ours to judge before a lease ran out
            sent = [(did, mid) for did, mid in state.accepted.items() if did in pending]
            store.mark_sent(state.run_id, sent, utcnow())
            on_the_wire = sorted((state.started - set(state.accepted)) & set(pending))
            store.mark_unknown(state.run_id, on_the_wire,
                               f"on the wire when notice sender {state.run_id} died; not resent automatically")
            never_started = sorted(set(pending) - state.started)
            store.release_claims(state.run_id, never_started)
        totals[0] += len(sent)
        totals[1] += len(never_started)
        totals[2] += len(on_the_wire)
        path.unlink(missing_ok=True)
    return (totals[0], totals[1], totals[2])


def _older_than(path: Path, when: datetime) -> bool:
    """Whether ``path`` was last written before ``when``; False once it is gone (its sender finished)."""
    try:
        return path.stat().st_mtime <= when.timestamp()
    except FileNotFoundError:
        return False


class KeepOpen:
    """A transport lent to one drain: the drain's ``close`` leaves it open for the next (its owner closes it)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    async def send(self, envelope_from: str, recipients: list[str], message: bytes,
                   on_data: OnData | None = None) -> None:
        await self.inner.send(envelope_from, recipients, message, on_data=on_data)

    async def close(self) -> None:
        return None


def deliver_now(store: Store, settings: Settings, delivery_ids: Sequence[int], *,
                transport: Transport | None = None) -> list[NoticeOutcome]:
    """Drain exactly these outbox rows now (closes ``transport``; makes one from the settings if None).

    Runs its own event loop: call it from synchronous code (a Starlette
    background task or sync handler runs in a worker thread: fine).
    """
    transport = transport if transport is not None else make_transport(settings)
    recover_notice_journals(store, settings)
    return asyncio.run(deliver_async(store, settings, delivery_ids, transport))


async def deliver_async(store: Store, settings: Settings, delivery_ids: Sequence[int],
                        transport: Transport) -> list[NoticeOutcome]:
    """:func:`deliver_now` inside a running event loop, without the recovery of dead senders' journals
    (a long-lived sender calls :func:`recover_notice_journals` itself). Closes ``transport``: lend one
    with :class:`KeepOpen` to use it again."""
    report = SendReport(run_id="notice:" + new_run_id())
    await drain(store, settings, transport, utcnow(), report, None, None, only=list(delivery_ids),
                journal_at=notice_journal_dir(settings))
    out = []
    for did in delivery_ids:
        d = store.get_delivery(did)
        status = "queued" if d.status == "sending" else d.status  # "sending": a running `send` took it first
        error = d.error or ("being sent by a running `syndicate send`" if d.status == "sending" else "")
        if d.status == "sending":
            log.info("%s email for subscription %d (delivery %d) is being sent by a running `syndicate send`",
                     d.kind, d.subscription_id, did)
        elif status == "queued":
            log.warning("%s email for subscription %d not delivered (delivery %d, attempt %d): %s; it stays queued "
                        "and the next `syndicate send` retries it", d.kind, d.subscription_id, did, d.attempts, error)
        elif status != "sent":
            log.error("%s email for subscription %d %s (delivery %d): %s", d.kind, d.subscription_id, status, did, error)
        out.append(NoticeOutcome(d.kind, d.subscription_id, did, status, d.message_id if status == "sent" else "",
                                 error))
    return out
