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
:meth:`GroupCommit.run_async` hands over a job from the event loop itself,
so a request whose whole handling runs as the job (an API create) never
occupies a worker thread: one hand-over to the writer and one back, instead
of four.
"""

from __future__ import annotations

import asyncio
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


#: Called once the job's outcome is known, with (error, value): after the commit, or with the commit's error.
_Done = Callable[[BaseException | None, Any], None]
_Job = tuple[Callable[["Store"], Any], _Done]


def _settle(fut: asyncio.Future[Any], error: BaseException | None, value: Any) -> None:
    if fut.cancelled():  # the client went away; the write stands
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


def in_savepoint(store: Store, job: Callable[[Store], Any]) -> Any:
    """Run ``job`` inside the current transaction so that, should it raise, its writes alone are undone."""
    conn = store.conn
    conn.execute("SAVEPOINT api_write")
    try:
        value = job(store)
    except BaseException:
        conn.execute("ROLLBACK TO api_write")
        conn.execute("RELEASE api_write")
        raise
    conn.execute("RELEASE api_write")
    return value


class GroupCommit:
    """One writer thread with its own store; :meth:`run` hands it a job and waits for the commit."""

    def __init__(self, db: str) -> None:
        self.db = db
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, job: Callable[[Store], Any]) -> Any:
        """Run ``job`` in the writer thread; block until its batch committed; its value or its error."""
        done: Future[Any] = Future()

        def settle(error: BaseException | None, value: Any) -> None:
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(value)

        self._put((job, settle))
        return done.result()

    async def run_async(self, job: Callable[[Store], Any]) -> Any:
        """:meth:`run` for the event loop: awaits the commit without holding a thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(error: BaseException | None, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(_settle, fut, error, value)
            except RuntimeError:  # the loop closed meanwhile (the server stopped): nobody waits for the answer
                pass

        self._put((job, settle))
        return await fut

    def _put(self, item: _Job) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="syndicate-api-writes", daemon=True)
                self._thread.start()
            self._queue.put(item)

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
        outcomes: list[tuple[_Done, BaseException | None, Any]] = []
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
                done(exc, None)
            return
        for done, error, value in outcomes:
            done(error, value)
