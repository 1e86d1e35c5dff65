"""One writer at a time in the API's process, queued in Python rather than in SQLite's busy handler.

The API's worker threads and its notice sender each have their own SQLite
connection. When two of them want the write lock at once, SQLite's busy
handler makes the loser sleep 1, 2, 5 ... up to 100 ms between tries, so
under a burst of creates most of the time went to sleeping while the lock
was free. Here every transaction of those stores first takes one process-wide
lock, which wakes the next writer the moment the last one commits. Other
processes (`syndicate send` from cron) still meet the busy timeout as before.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store import Store

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
