"""Sending the notices API calls queue, after the answer, in batches.

A subscriber created through the API gets its confirmation email the way the
web form's does: the handler queues the outbox row (``store.queue_notices``,
with all its rules) before it answers, so the row is durable; then this one
sender thread drains the rows handed to it through the same drain every
notice goes through (:func:`syndicate.sender.deliver_now`). Rows handed over
together are sent in one batch, so a burst of creates costs one drain, not
one each. Should the process stop first, the rows stay queued and the next
``syndicate send`` sends them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time

from ..config import Settings
from ..store import open_store
from .writes import serialise_writes

log = logging.getLogger("syndicate.api")

BATCH = 500
#: Seconds between two settlings of dead notice senders' journals (every `syndicate send` settles them too).
RECOVER_EVERY = 60.0
#: Seconds a batch waits for more rows after its first (the delay an email may get for it).
FILL = 0.01
_STOP = -1


class NoticeSender:
    """One background thread with its own store; :meth:`send` hands it outbox row ids."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: queue.Queue[int] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Condition()
        self._pending = 0  # rows handed over and not tried yet

    def send(self, delivery_ids: list[int]) -> None:
        if not delivery_ids:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="syndicate-api-notices", daemon=True)
                self._thread.start()
            with self._done:
                self._pending += len(delivery_ids)
            for did in delivery_ids:
                self._queue.put(did)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every row handed over so far was tried (tests and benchmarks use this)."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def _tried(self, count: int) -> None:
        with self._done:
            self._pending -= count
            self._done.notify_all()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(60)

    def _run(self) -> None:
        from ..mailer import make_transport
        from ..sender.notices import KeepOpen, deliver_async, recover_notice_journals

        store = serialise_writes(open_store(self.settings.db))
        # One event loop and one transport for the thread's life (SMTP connections stay open between batches);
        # dead senders' journals are settled when it starts and then now and then, not before every batch.
        runner = asyncio.Runner()
        transport = None
        recovered = -RECOVER_EVERY
        try:
            while True:
                first = self._queue.get()
                batch = [first]
                # let the batch fill a little: under a burst, rows arrive a commit's worth at a time, and a batch's
                # own cost (its journal, its claims, its builders) is then paid once for many of them
                until = time.monotonic() + FILL
                while len(batch) < BATCH and batch[-1] != _STOP:
                    try:
                        batch.append(self._queue.get(timeout=max(0.0, until - time.monotonic())))
                    except queue.Empty:
                        break
                stop = _STOP in batch
                ids = [d for d in batch if d != _STOP]
                if ids:
                    try:
                        if transport is None:
                            transport = make_transport(self.settings)
                        if time.monotonic() - recovered >= RECOVER_EVERY:
                            recover_notice_journals(store, self.settings)
                            recovered = time.monotonic()
                        outcomes = runner.run(deliver_async(store, self.settings, ids, KeepOpen(transport)))
                        proofs = [(o.subscription_id, o.message_id) for o in outcomes
                                  if o.kind == "confirm" and o.message_id]
                        if proofs:  # proof of consent: which email asked them (one transaction for the batch)
                            with store.transaction():
                                for subscription_id, message_id in proofs:
                                    store.set_confirmation_message_id(subscription_id, message_id)
                    except Exception:
                        log.exception("sending %d notice(s) queued by the API failed; they stay queued", len(ids))
                self._tried(len(ids))
                if stop:
                    return
        finally:
            try:
                if transport is not None:
                    runner.run(transport.close())
            finally:
                runner.close()
                store.close()
