"""The Maildir transport: each message one file, durable before it counts as delivered.

Split from :mod:`syndicate.mailer.transports`, which re-exports it and picks
it (:func:`~syndicate.mailer.transports.make_transport`) when no SMTP host is
set. It follows the same protocol: ``await send(envelope_from, recipients,
message_bytes, on_data=None)``, TransportError on failure, ``await close()``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import TransportError
from .message import encode_address

__all__ = ["MaildirTransport"]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _datasync(fd: int) -> OSError | None:
    """``fdatasync`` and close one staged file; the error, if any."""
    try:
        os.fdatasync(fd)
    except OSError as exc:
        return exc
    finally:
        os.close(fd)
    return None


def _datasync_all(staged: list[_Staged]) -> list[OSError | None]:
    return [_datasync(s.fd) for s in staged]


#: Threads a Maildir group's file syncs are spread over (4 was as fast as 8 on a busy ext4 disk, 1 was 9x slower).
SYNC_THREADS = 4


@dataclass
class _Staged:
    """A message written to ``tmp/`` and not yet durable: its open descriptor and both of its names."""

    fd: int
    tmp: str
    final: str


class MaildirTransport:
    """Writes each message to a Maildir (``tmp/`` then ``new/``, unique names).

    A ``Return-Path`` line with the envelope sender is prepended, as a local
    delivery agent does, and line endings are LF, as a local delivery agent
    writes them (mutt, formail and mailbox read LF; CRLF showed as ``^M``).
    The CRLF wire form is SMTP's alone.

    Durability: :meth:`send` returns (the drain may then record the row
    ``sent``) only once the message's bytes and its entry in ``new/`` are on
    disk: the file is written in ``tmp/`` and ``fdatasync``-ed, renamed into
    ``new/``, and ``new/`` itself is ``fsync``-ed. Messages sent concurrently
    share that work in one group commit (each file still gets its own
    ``fdatasync``, all of a group's at once from worker threads, so the
    filesystem joins them in one journal commit; the directory one ``fsync``
    per group), while the event loop builds the next messages. When a sync fails, the messages
    it covered are removed again and each ``send`` raises a temporary
    TransportError, so a retry cannot leave a second copy behind.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._made = False
        self._count = 0
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._dirs = (str(self.path / "tmp"), str(self.path / "new"))
        self._staged: list[tuple[_Staged, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None

    def _ensure(self) -> None:
        if not self._made:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            self._made = True

    def _error(self, exc: OSError) -> TransportError:
        return TransportError(f"maildir {self.path}: cannot write a message: {exc.strerror or exc}", temporary=True)

    def _stage(self, envelope_from: str, message: bytes) -> _Staged:
        """Write one message into ``tmp/`` (not synced yet); the descriptor stays open for the sync."""
        self._ensure()
        self._count += 1
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{self._count}R{os.urandom(4).hex()}.{self._host}"
        tmp = f"{self._dirs[0]}/{name}"
        data = b"Return-Path: <" + envelope_from.encode("ascii", "replace") + b">\n" + message.replace(b"\r\n", b"\n")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            os.close(fd)
            _unlink(tmp)
            raise
        return _Staged(fd, tmp, f"{self._dirs[1]}/{name}")

    def _commit(self, staged: list[_Staged]) -> list[OSError | None]:
        """Make staged messages durable in ``new/`` (see the class docstring); one error or None per message."""
        return self._publish(staged, [_datasync(s.fd) for s in staged])

    def _publish(self, staged: list[_Staged], errors: list[OSError | None]) -> list[OSError | None]:
        """Move the synced messages into ``new/`` and sync it; the others are removed. One error or None each."""
        errors = list(errors)
        moved = []
        for i, s in enumerate(staged):
            try:
                if errors[i] is None:
                    os.replace(s.tmp, s.final)
                    moved.append(i)
                    continue
            except OSError as exc:
                errors[i] = exc
            _unlink(s.tmp)
        if moved:
            try:
                fd = os.open(self._dirs[1], os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:  # the entries may not survive a crash: take them back, the sends fail
                for i in moved:
                    _unlink(staged[i].final)
                    errors[i] = exc
        return errors

    def write(self, envelope_from: str, message: bytes) -> Path:
        """Write one message synchronously, durable when it returns; returns its path in ``new/``."""
        try:
            staged = self._stage(envelope_from, message)
        except OSError as exc:
            raise self._error(exc) from None
        [error] = self._commit([staged])
        if error is not None:
            raise self._error(error)
        return Path(staged.final)

    async def send(self, envelope_from: str, recipients: list[str], message: bytes,
                   on_data: Callable[[], Awaitable[None]] | None = None) -> None:
        for r in recipients:
            encode_address(r)
        if on_data is not None:
            await on_data()
        try:
            staged = self._stage(encode_address(envelope_from) if envelope_from else "", message)
        except OSError as exc:
            raise self._error(exc) from None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._staged.append((staged, done))
        if self._committer is None:
            self._committer = asyncio.ensure_future(self._commit_staged())
        await done

    async def _commit_staged(self) -> None:
        """Commit what is staged, as many at a time as wait, until nothing is left (one task at a time)."""
        try:
            while self._staged:
                group, self._staged = self._staged, []
                staged = [s for s, _ in group]
                try:
                    # the files' syncs at the same time, from a few of the loop's worker threads: the filesystem
                    # commits them together (one after another, each waited for its own journal commit)
                    loop = asyncio.get_running_loop()
                    ways = min(SYNC_THREADS, len(staged))
                    parts = await asyncio.gather(*(loop.run_in_executor(None, _datasync_all, staged[k::ways])
                                                   for k in range(ways)))
                    synced: list[OSError | None] = [None] * len(staged)
                    for k, part in enumerate(parts):
                        synced[k::ways] = part
                    errors: list[OSError | None] = await asyncio.to_thread(self._publish, staged, synced)
                except BaseException as exc:  # cancelled (the loop is closing) or a bug: no send may hang on it
                    for _, done in group:
                        if not done.done():
                            done.set_exception(TransportError(f"maildir {self.path}: the write was cut off ({exc!r})",
                                                              temporary=True))
                    raise
                for (_, done), error in zip(group, errors, strict=True):
                    if done.done():  # its send was cancelled
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(self._error(error))
        finally:
            self._committer = None

    async def close(self) -> None:
        """Wait for a group commit under way (nothing is left half written)."""
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
