"""The send journal (one append-only file per run) and recovery of what dead runs left ``sending``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..models import utcnow
from ..store import Store


def journal_dir(settings: Settings) -> Path:
    return Path(f"{settings.db}.journal")


@dataclass
class JournalState:
    """What a run's journal says: rows handed to the transport, rows accepted."""

    run_id: str = ""
    started: set[int] = field(default_factory=set)
    accepted: dict[int, str] = field(default_factory=dict)


class SendJournal:
    """One run's append-only record of what went on the wire (see the module docstring)."""

    def __init__(self, directory: Path, run_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / (re.sub(r"[^A-Za-z0-9._-]", "_", run_id) + ".log")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(self._fd, f"R {run_id}\n".encode())

    def started(self, delivery_id: int) -> None:
        os.write(self._fd, b"S %d\n" % delivery_id)

    def accepted(self, delivery_id: int, message_id: str) -> None:
        os.write(self._fd, f"D {delivery_id} {message_id}\n".encode())

    def close(self) -> None:
        """The run recorded every result in the store: the journal is no longer needed."""
        os.close(self._fd)
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

    Only call it while holding the run lock (no other run is alive). Returns
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
        with store.transaction(immediate=True):
            pending = set(store.sending_ids(state.run_id))
            sent = [(did, mid) for did, mid in state.accepted.items() if did in pending]
            store.mark_sent(state.run_id, sent, utcnow())
            on_the_wire = sorted((state.started - set(state.accepted)) & pending)
            store.mark_unknown(state.run_id, on_the_wire,
                               f"on the wire when run {state.run_id} died; not resent automatically")
            never_started = sorted(pending - state.started)
            store.release_claims(state.run_id, never_started)
        totals[0] += len(sent)
        totals[1] += len(never_started)
        totals[2] += len(on_the_wire)
        path.unlink(missing_ok=True)
    return (totals[0], totals[1], totals[2])
