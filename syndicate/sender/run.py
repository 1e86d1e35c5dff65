"""One run of the sender: lock, recover, purge, plan, drain; stop cleanly on SIGTERM or a storage error."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime

from .. import subscribers as subs
from ..config import Settings
from ..mailer import MaildirTransport, SmtpTransport, Transport
from ..mailer.loop import run as run_loop
from ..models import utcnow
from ..store import Store
from .drain import describe_storage_error, drain
from .journal import journal_dir, recover_dead_runs
from .lock import new_run_id, nothing, run_lock
from .notices import recover_notice_journals
from .plan import dry_run as _dry_run
from .plan import plan_due
from .report import SendReport
from .stop import Stop, Stopped, stop_on_signals
from .workers import default_workers, drain_in_workers


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
    workers: int | None = 1,
) -> SendReport:
    """Plan due digests and drain the outbox once. ``now`` defaults to the clock.

    ``on_planned(queued)`` is called when planning ends, ``on_progress(1)``
    per message finished (for a progress bar). Closes ``transport`` at the end.
    SIGTERM or SIGINT stops the run cleanly (see :mod:`syndicate.sender.stop`);
    a storage error or an unexpected one ends it with ``report.fatal`` set
    after recording what it could. ``report.exit_code`` is what ``send`` exits with.
    ``workers`` > 1 drains with that many processes, each with its own
    transport of the same kind (see :mod:`.workers`); None picks
    :func:`~.workers.default_workers` for what is due (the usable cores, one
    per ``ROWS_PER_WORKER`` messages at most); a memory transport always
    drains in this process.
    """
    now = now or utcnow()
    report = SendReport(run_id=run_id or new_run_id(), dry_run=dry_run)
    if dry_run:
        _dry_run(store, settings, now, report)
        return report
    stop = Stop()
    with (run_lock(settings) if lock else nothing()), stop_on_signals(stop):
        try:
            store.durable_writes()
            if lock:
                report.recovered, _, report.unknown = recover_dead_runs(store, settings, report.run_id)
            sent, _, unknown = recover_notice_journals(store, settings, utcnow())  # notices sent at once, no lock
            report.recovered, report.unknown = report.recovered + sent, report.unknown + unknown
            report.unknown += store.mark_orphans_unknown(report.run_id, utcnow(), all_foreign=lock)
            if settings.mail_pending_max_age_days > 0:  # cron runs only `send`: it keeps the list clean too
                # by the real clock, never --at: a replay must not delete anyone early
                report.purged = subs.purge_pending(store, settings, source="sender")
            t0 = time.perf_counter()
            report.queued, report.skipped = plan_due(store, now)
            report.planning_seconds = time.perf_counter() - t0
            due = store.outbox_status(now).due_now
            if on_planned is not None:
                on_planned(due)
            if workers is None:
                workers = default_workers(due if limit is None else min(due, limit))
            t1 = time.perf_counter()
            kind = {SmtpTransport: "smtp", MaildirTransport: "maildir"}.get(type(transport))
            if workers > 1 and kind is not None:
                asyncio.run(transport.close())  # each worker opens its own
                drain_in_workers(store, settings, kind, now, report, limit, on_progress, workers, stop)
            else:
                run_loop(drain(store, settings, transport, now, report, limit, on_progress, stop), settings.send_loop)
            report.sending_seconds = time.perf_counter() - t1
            store.settle_campaigns(utcnow())  # a campaign whose last row is settled is sent
            if report.stopped and not report.fatal:
                report.left = store.outbox_status(now).due_now
        except Stopped as exc:  # while recovering or planning: each batch is atomic, replanning is harmless
            report.stopped = str(exc)
        except (sqlite3.Error, OSError) as exc:
            report.fatal = describe_storage_error(exc, settings, str(journal_dir(settings)))
        finally:
            asyncio.run(transport.close())  # the drain closed it already unless it never ran; twice is harmless
    return report
