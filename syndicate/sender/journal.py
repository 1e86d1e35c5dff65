"""The send journal (one append-only file per run) and recovery of what dead runs left ``sending``.

A run's journal ``<db>.journal/<run id>.log`` holds three kinds of line:

``R <run id>``
    the header, written when the run opens it;
``S <delivery id>``
    the DATA command is about to begin for this delivery on a connection (it
    has a connection, the rate limiter let it through and the relay took MAIL
    FROM and RCPT TO): from here on the relay may accept it;
``D <delivery id> <Message-ID>``
    the relay accepted it (250 after the final dot).

The durability contract (what the README's "Never twice, never lost" states):

* every line is one ``write`` to an ``O_APPEND`` descriptor, so it is in the
  kernel the moment it is written and survives SIGKILL of the process;
* with ``[send] fsync`` on (the default) an ``S`` line is on disk
  (``fdatasync``) before DATA begins, a group commit shared by every
  message starting at the same moment, and the ``D`` lines are on disk before
  the store records those rows ``sent``, so after a power cut or an OS crash
  the journal still names every message the relay may have;
* the sender's store connection runs ``synchronous = FULL``, so a committed
  result survives a power cut too;
* a journal is deleted only after everything it holds is committed to the
  store; a run that cannot record (an error, a full disk) keeps it, and the
  next run settles its rows from it: ``D`` -> ``sent``, ``S`` without ``D``
  -> ``unknown``, neither -> back to the queue.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..models import utcnow
from ..store import Store
from .faults import inject
from .lock import database_path


def journal_dir(settings: Settings) -> Path:
    return Path(f"{database_path(settings)}.journal")


def journal_file(directory: Path, run_id: str) -> Path:
    """Where run ``run_id`` keeps its journal in ``directory``."""
    return directory / (re.sub(r"[^A-Za-z0-9._-]", "_", run_id) + ".log")


@dataclass
class JournalState:
    """What a run's journal says: rows whose DATA began, rows accepted."""

    run_id: str = ""
    started: set[int] = field(default_factory=set)
    accepted: dict[int, str] = field(default_factory=dict)


class SendJournal:
    """One run's append-only record of what went on the wire (see the module docstring).

    ``fsync`` false skips every ``fdatasync`` (SIGKILL is still covered, a
    power cut is not): for benchmarks only.
    """

    def __init__(self, directory: Path, run_id: str, *, fsync: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = journal_file(directory, run_id)
        self.fsync = fsync
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._written = 0  # lines written so far
        self._synced = 0  # lines known to be on disk
        self._syncing: asyncio.Future[None] | None = None
        self._write(f"R {run_id}\n".encode())
        self.sync()

    def _write(self, line: bytes) -> None:
        inject("journal-write")
        os.write(self._fd, line)
        self._written += 1

    def started(self, delivery_id: int) -> None:
        self._write(b"S %d\n" % delivery_id)

    async def wait_synced(self) -> None:
        """Wait until every line written so far is on disk: one ``fdatasync`` in a thread
        serves every message that starts meanwhile (a group commit)."""
        if not self.fsync:
            return
        target = self._written
        while self._synced < target:
            if self._syncing is None:
                self._syncing = asyncio.ensure_future(self._sync_in_thread())
            fut = self._syncing
            await asyncio.shield(fut)

    async def _sync_in_thread(self) -> None:
        upto = self._written
        try:
            await asyncio.to_thread(os.fdatasync, self._fd)
            self._synced = max(self._synced, upto)
        finally:
            self._syncing = None

    def accepted(self, delivery_id: int, message_id: str) -> None:
        self._write(f"D {delivery_id} {message_id}\n".encode())

    def sync(self) -> None:
        """Every line written so far is on disk (before the store records them)."""
        if self.fsync and self._synced < self._written:
            upto = self._written
            os.fdatasync(self._fd)
            self._synced = upto

    def close(self, *, delete: bool) -> None:
        """Close the file; ``delete`` only once the store holds everything the journal knew."""
        try:
            os.close(self._fd)
        finally:
            if delete:
                self.path.unlink(missing_ok=True)

    @staticmethod
    def read(path: Path) -> JournalState:
        state = JournalState()
        for line in path.read_text("utf-8", "replace").splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "R":
                state.run_id = rest
            elif kind == "S" and rest.isdigit():
                state.started.add(int(rest))
            elif kind == "D":
                did, _, mid = rest.partition(" ")
                if did.isdigit():
                    state.accepted[int(did)] = mid
        return state


def recover_dead_runs(store: Store, settings: Settings, own_run_id: str) -> tuple[int, int, int]:
    """Settle the rows dead runs left ``sending``, from their journals.

    Only call it while holding the run lock (no other run is alive). The
    journal is trusted over the store: a ``D`` line makes its row ``sent``
    even where the store lost or never recorded the result. Returns
    (recorded sent, given back to the queue, marked unknown).
    """
    directory = journal_dir(settings)
    totals = [0, 0, 0]
    if not directory.is_dir():
        return (0, 0, 0)
    for path in sorted(directory.glob("*.log")):
        state = SendJournal.read(path)
        if not state.run_id or state.run_id == own_run_id:
            continue
        for i, n in enumerate(_settle(store, state)):
            totals[i] += n
        path.unlink(missing_ok=True)
    return (totals[0], totals[1], totals[2])


def recover_run(store: Store, settings: Settings, run_id: str) -> tuple[int, int, int]:
    """Settle the rows one stopped run (a send worker that died) left ``sending``, as
    :func:`recover_dead_runs` would, and delete its journal.

    Without a journal its ``sending`` rows become ``unknown``: a journal is
    opened before the first claim and deleted only once everything is
    recorded, so nothing here says they never reached the relay.
    """
    path = journal_file(journal_dir(settings), run_id)
    if not path.exists():
        ids = store.sending_ids(run_id)
        store.mark_unknown(run_id, ids, f"run {run_id} stopped without a journal; not resent automatically")
        return (0, 0, len(ids))
    out = _settle(store, SendJournal.read(path))
    path.unlink(missing_ok=True)
    return out


def _settle(store: Store, state: JournalState) -> tuple[int, int, int]:
    return store.settle_journal(
        state.run_id, state.accepted, state.started, utcnow(),
        f"on the wire when run {state.run_id} stopped; not resent automatically",
    )
