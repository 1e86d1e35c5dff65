"""One writer at a time in the API's process, queued in Python rather than in SQLite's busy handler.

The API's worker threads and its notice sender each have their own SQLite
connection. When two of them want the write lock at once, SQLite's busy
handler makes the loser sleep 1, 2, 5 ... up to 100 ms between tries, so
under a burst of creates most of the time went to sleeping while the lock
was free. Here every transaction of those stores first takes one process-wide
lock, which wakes the next writer the moment the last one commits. Other
processes (`syndicate send` from cron) still meet the busy timeout as before.

:class:`GroupCommit` goes one step further for the create path: jobs handed
over by request threads run in one writer thread, as many as are waiting
(up to ``BATCH``) in one transaction, each in its own savepoint, so a job
that fails is rolled back alone and the others still commit together. A
request gets its answer only after the commit that holds its write.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger("syndicate.api")
BATCH = 64

WRITES = threading.RLock()


def serialise_writes(store: Store) -> Store:
    """Make ``store.transaction`` take :data:`WRITES` first (once per store; nested calls join the outer one)."""
    if getattr(store, "_serialised_writes", False):
        return store
    inner: Callable[[bool], AbstractContextManager[sqlite3.Connection]] = store.transaction

    @contextmanager
    def transaction(immediate: bool = False) -> Iterator[sqlite3.Connection]:
        with WRITES, inner(immediate) as conn:
            yield conn

    setattr(store, "transaction", transaction)  # noqa: B010 (an instance attribute shadowing the method)
    setattr(store, "_serialised_writes", True)  # noqa: B010
    return store


_Job = tuple[Callable[["Store"], Any], "Future[Any]"]


class GroupCommit:
    """One writer thread with its own store; :meth:`run` hands it a job and waits for the commit."""

    def __init__(self, db: str) -> None:
        self.db = db
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, job: Callable[[Store], Any]) -> Any:
        done: Future[Any] = Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="syndicate-api-writes", daemon=True)
                self._thread.start()
            self._queue.put((job, done))
        return done.result()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(60)

    def _loop(self) -> None:
        from ..store import open_store

        store = serialise_writes(open_store(self.db))
        try:
            while True:
                first = self._queue.get()
                batch: list[_Job] = [] if first is None else [first]
                stop = first is None
                while not stop and len(batch) < BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                    else:
                        batch.append(more)
                if batch:
                    self._commit(store, batch)
                if stop:
                    return
        finally:
            store.close()

    @staticmethod
    def _commit(store: Store, batch: list[_Job]) -> None:
        outcomes: list[tuple[Future[Any], BaseException | None, Any]] = []
        try:
            with store.transaction(immediate=True) as conn:
                for job, done in batch:
                    conn.execute("SAVEPOINT api_job")
                    try:
                        value = job(store)
                    except Exception as exc:  # this job's writes go, the batch's others stay
                        conn.execute("ROLLBACK TO api_job")
                        conn.execute("RELEASE api_job")
                        outcomes.append((done, exc, None))
                    else:
                        conn.execute("RELEASE api_job")
                        outcomes.append((done, None, value))
        except Exception as exc:  # the commit itself failed: nothing of the batch is stored
            log.exception("committing %d API write(s) failed", len(batch))  # store.transaction rolled it back
            for _, done in batch:
                done.set_exception(exc)
            return
        for done, error, value in outcomes:
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(value)
