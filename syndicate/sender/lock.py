"""The run locks: one `syndicate send` (and one `syndicate fetch`) at a time per database, dropped by the kernel when the process dies.

The lock (and the journal directory) sit beside the database file itself,
with symlinks resolved: ``--db syn.db`` and ``--db link.db`` (a symlink to it)
take the same lock. (Two hard links to one SQLite file are not a setup SQLite
supports in WAL mode: each name would get its own ``-wal`` file.)
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..config import Settings
from ..errors import LockError


def database_path(settings: Settings) -> Path:
    """The database file's real path (symlinks resolved): what the lock and the journal are keyed on."""
    return Path(os.path.realpath(settings.db))


def lock_path(settings: Settings, command: str = "send") -> Path:
    return Path(f"{database_path(settings)}.{command}.lock")


@contextmanager
def run_lock(settings: Settings, command: str = "send") -> Iterator[None]:
    """Hold ``command``'s lock (``send``, ``fetch``) for the block, or raise LockError at once.

    Each command has its own lock: a fetch and a send may run side by side,
    two sends (or two fetches) never do.
    """
    path = lock_path(settings, command)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise LockError(
                f"another `syndicate {command}` is running (pid {holder}, lock {path}); "
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


def new_run_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@contextmanager
def nothing() -> Iterator[None]:
    yield
