"""One run of the sender: lock, recover, purge, plan, drain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from .. import subscribers as subs
from ..config import Settings
from ..mailer import Transport
from ..models import utcnow
from ..store import Store
from .drain import drain
from .journal import recover_dead_runs
from .lock import new_run_id, nothing, run_lock, sigterm_as_exit
from .notices import recover_notice_journals
from .plan import dry_run as _dry_run
from .plan import plan_due
from .report import SendReport


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
    with (run_lock(settings) if lock else nothing()), sigterm_as_exit():
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
        if on_planned is not None:
            on_planned(store.outbox_status(now).due_now)
        t1 = time.perf_counter()
        asyncio.run(drain(store, settings, transport, now, report, limit, on_progress))
        report.sending_seconds = time.perf_counter() - t1
    return report
