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

from .build import MessageBuilder, digest_message_id
from .drain import BACKOFF, FLUSH_EVERY, FLUSH_ROWS, LEASE, MAX_BACKOFF, backoff
from .journal import JournalState, SendJournal, journal_dir, recover_dead_runs
from .lock import lock_path, new_run_id, run_lock
from .notice_mail import NoticeBuilder, notice_message_id
from .notices import NoticeOutcome, deliver_notices, deliver_now, notify
from .preview import Preview, preview
from .report import SendReport
from .run import run_send

__all__ = [
    "BACKOFF", "FLUSH_EVERY", "FLUSH_ROWS", "LEASE", "MAX_BACKOFF", "JournalState", "MessageBuilder", "NoticeBuilder",
    "NoticeOutcome", "Preview", "SendJournal", "SendReport", "backoff", "deliver_notices", "deliver_now",
    "digest_message_id", "journal_dir", "lock_path", "new_run_id", "notice_message_id", "notify", "preview",
    "recover_dead_runs", "run_lock", "run_send",
]
