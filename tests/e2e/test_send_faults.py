"""Fault trials: real `syndicate send` processes against an aiosmtpd sink on 127.0.0.1 that
writes every Message-ID it accepts to an fsynced file, then reruns until the outbox is settled.

Invariants checked after every trial (:func:`check`):
- no Message-ID twice at the sink;
- every due digest is `sent` or `unknown`;
- every `sent` row was accepted by the sink, and everything the sink accepted is `sent` or `unknown`;
- `unknown` rows are only messages whose DATA had begun (at most the pool size per interrupted drain).

Each trial runs with one drain and with ``--workers 2`` (two drain processes), where a SIGKILL may also
hit one worker alone and a SIGTERM to the parent must reach both.

``SYNDICATE_TRIALS=50`` runs many SIGKILL trials (default 3).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from loopback import smtp_server

from syndicate.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_send_smtp import AT, TIMEOUT, populate, wait_for  # noqa: E402

TRIALS = int(os.environ.get("SYNDICATE_TRIALS", "3"))
POOL = 2


@dataclass
class RecordingSink:
    """Accepts every message after writing its Message-ID to ``path`` (fsynced before the 250)."""

    path: Path
    delay: float = 0.02
    drop_after_accept: set[str] = field(default_factory=set)  # recipients: record, then drop without a reply
    busy: int = 0
    parked: int = 0  # messages waiting at the closed gate
    lock: threading.Lock = field(default_factory=threading.Lock)
    gate: threading.Event = field(default_factory=threading.Event)  # while clear, DATA waits before accepting

    def __post_init__(self) -> None:
        self.gate.set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.busy += 1
        try:
            await asyncio.sleep(self.delay)
            mid = ""
            for line in envelope.original_content.split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    mid = line.split(b":", 1)[1].strip().decode()
                    break
            with self.lock:
                self.parked += 1
            recorded = False
            try:
                while not self.gate.is_set():
                    await asyncio.sleep(0.005)
                with self.lock:  # leaving the gate and recording are one step for held()
                    self.parked -= 1
                    recorded = True
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                    try:
                        os.write(fd, mid.encode() + b"\n")
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            finally:
                if not recorded:  # the client went away while the message waited at the gate
                    with self.lock:
                        self.parked -= 1
            if any(r in self.drop_after_accept for r in envelope.rcpt_tos):
                server.transport.abort()  # accepted, but the client never hears the 250
            return "250 OK"
        finally:
            with self.lock:
                self.busy -= 1

    def ids(self) -> list[str]:
        with self.lock:
            return self.path.read_text().split() if self.path.exists() else []

    def idle(self) -> bool:
        with self.lock:
            return self.busy == 0

    def waiting(self) -> int:
        """Messages whose DATA ended, held at the closed gate."""
        with self.lock:
            return self.parked

    def held(self) -> int:
        """Messages accepted so far plus those held at the gate: all of them will be accepted once it opens."""
        with self.lock:
            return len(self.path.read_text().split() if self.path.exists() else []) + self.parked


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[RecordingSink, int]]:
    handler = RecordingSink(tmp_path / "accepted.txt")
    with smtp_server(handler) as port:
        yield handler, port


def syndicate(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "syndicate", *args], env=env,
                            cwd=str(Path(env["SYNDICATE_DB"]).parent), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    p = syndicate(env, *args)
    out, err = p.communicate(timeout=TIMEOUT)
    return p.returncode, out, err


def settle(env: dict[str, str]) -> None:
    """Run `send` until nothing is left queued or sending (never more than a few times)."""
    for _ in range(5):
        code, out, err = run(env, "send", "--at", AT)
        assert code in (0, 4), (code, out, err)
        store = open_store(env["SYNDICATE_DB"])
        try:
            if not store.scalar("SELECT count(*) FROM deliveries WHERE status IN ('queued', 'sending')"):
                return
        finally:
            store.close()
    raise AssertionError("the outbox did not settle")


def children(pid: int) -> list[int]:
    """The pids of a process's children (its send workers), oldest first."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def unknown_rows(db: str) -> int:
    store = open_store(db)
    try:
        return int(store.scalar("SELECT count(*) FROM deliveries WHERE status = 'unknown'"))
    finally:
        store.close()


def check(db: str, sink: RecordingSink, n: int, max_unknown: int) -> dict[str, int]:
    ids = sink.ids()
    assert len(ids) == len(set(ids)), "a Message-ID reached the relay twice"
    store = open_store(db)
    try:
        rows = store.query("SELECT status, message_id, subscriber_id, period FROM deliveries")
        by_status: dict[str, int] = {}
        for r in rows:
            by_status[r[0]] = by_status.get(r[0], 0) + 1
        assert len(rows) == n and set(by_status) <= {"sent", "unknown"}, by_status
        sent = {r[1] for r in rows if r[0] == "sent"}
        unknown = {f"<digest.tin-sang.{r[2]}.{r[3]}@news.example.org>" for r in rows if r[0] == "unknown"}
        assert sent <= set(ids), "recorded sent but the relay never accepted it"
        assert set(ids) <= sent | unknown, "the relay accepted it but the store lost track of it"
        assert len(unknown) <= max_unknown, unknown
        assert not list(Path(f"{db}.journal").glob("*.log")), "a journal outlived its recovery"
        return by_status
    finally:
        store.close()


WORKERS = [pytest.param(1, id="1-drain"), pytest.param(2, id="2-workers")]


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_at_a_random_moment(tmp_path: Path, sink: tuple[RecordingSink, int], trial: int) -> None:
    handler, port = sink
    n = 40
    env, settings = populate(tmp_path, port, n)
    rnd = random.Random(trial)
    at_least = rnd.randrange(0, n)  # 0: somewhere in startup or planning
    first = syndicate(env, "send", "--at", AT, "--workers", "1")
    wait_for(lambda: len(handler.ids()) >= at_least or first.poll() is not None)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=TIMEOUT)
    wait_for(handler.idle)
    settle(env)
    check(settings.db, handler, n, max_unknown=POOL)


VICTIMS = ("the parent", "worker 1", "worker 2")


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_with_two_workers(tmp_path: Path, sink: tuple[RecordingSink, int], trial: int) -> None:
    """Trial by trial the SIGKILL hits `send` itself (every worker dies with it; the rerun recovers
    both journals) or one worker alone (the other carries on; the parent records the dead one's rows
    from its journal, prints one summary and exits 1)."""
    handler, port = sink
    n = 60
    env, settings = populate(tmp_path, port, n)
    rnd = random.Random(trial)
    victim = VICTIMS[trial % len(VICTIMS)]
    first = syndicate(env, "send", "--at", AT, "--workers", "2")
    if victim == "the parent":
        at_least = rnd.randrange(0, n)  # 0: somewhere in startup or planning
        wait_for(lambda: len(handler.ids()) >= at_least or first.poll() is not None)
        workers = children(first.pid)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=TIMEOUT)
        wait_for(lambda: all(gone(w) for w in workers))  # they die with the parent
    else:
        at_least = rnd.randrange(0, n // 3)
        wait_for(lambda: len(handler.ids()) >= at_least and len(children(first.pid)) == 2)
        handler.gate.clear()  # hold what is on the wire: both workers are mid-run when one is killed
        index = VICTIMS.index(victim) - 1
        os.kill(children(first.pid)[index], signal.SIGKILL)
        handler.gate.set()
        out, err = first.communicate(timeout=TIMEOUT)
        assert first.returncode == 1, (out, err)
        assert len(out.splitlines()) == 1 and out.startswith("sent "), out
        assert err.endswith(f"error: send worker {index + 1} of 2 was killed by SIGKILL; its messages were "
                            "recorded from its journal; the next `syndicate send` recovers\n"), err
        assert not list(Path(f"{settings.db}.journal").glob("*.log")), "the dead worker's journal was not settled"
    wait_for(handler.idle)
    settle(env)
    check(settings.db, handler, n, max_unknown=POOL * (2 if victim == "the parent" else 1))


@pytest.mark.parametrize("workers", WORKERS)
def test_sigterm_then_rerun_loses_nothing(tmp_path: Path, sink: tuple[RecordingSink, int], workers: int) -> None:
    """SIGTERM to `send` (the parent): every drain stops claiming, what is on the wire finishes within
    the grace, the rest goes back to the queue, and one summary is printed."""
    handler, port = sink
    n = 40
    env, settings = populate(tmp_path, port, n)
    first = syndicate(env, "send", "--at", AT, "--workers", str(workers))
    wait_for(lambda: len(handler.ids()) >= 5)
    handler.gate.clear()
    wait_for(lambda: handler.waiting() >= workers)  # messages on the wire when the signal comes
    held = handler.held()
    first.send_signal(signal.SIGTERM)
    handler.gate.set()
    out, err = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 3 and "stopped early (SIGTERM)" in out, (out, err)
    assert len(out.splitlines()) == 1, out
    assert len(handler.ids()) >= held, "a message on the wire at the SIGTERM was cut off"
    assert unknown_rows(settings.db) == 0
    settle(env)
    assert check(settings.db, handler, n, max_unknown=0) == {"sent": n}


@pytest.mark.parametrize("workers", WORKERS)
def test_an_exception_in_the_claim_transaction(tmp_path: Path, sink: tuple[RecordingSink, int],
                                                workers: int) -> None:
    handler, port = sink
    n = 40
    env, settings = populate(tmp_path, port, n)
    code, out, err = run({**env, "SYNDICATE_FAULT": "claim@3"}, "send", "--at", AT, "--workers", str(workers))
    assert code == 1
    assert err.endswith("error: InjectedFault: fault injected at claim pass 3 (SYNDICATE_FAULT); "
                        "the next `syndicate send` recovers\n")
    assert out.startswith("sent ") and "unknown" not in out
    settle(env)
    assert check(settings.db, handler, n, max_unknown=0) == {"sent": n}


@pytest.mark.parametrize("workers", WORKERS)
def test_a_full_disk_for_the_journal(tmp_path: Path, sink: tuple[RecordingSink, int], workers: int) -> None:
    handler, port = sink
    n = 40
    env, settings = populate(tmp_path, port, n)
    code, out, err = run({**env, "SYNDICATE_FAULT": "journal-write@15"}, "send", "--at", AT, "--workers", str(workers))
    assert code == 1, (out, err)
    journal = Path(os.path.realpath(settings.db + ".journal"))
    assert err.startswith(f"error: cannot write {journal}/") and err.endswith(
        ": No space left on device; the next `syndicate send` recovers\n"), err
    settle(env)
    assert check(settings.db, handler, n, max_unknown=0) == {"sent": n}


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, timeout=TIMEOUT).returncode == 0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (root only; skipped elsewhere)."""
    where = tmp_path / "fs"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or not _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs",
                                                                           str(where)):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=TIMEOUT)


@pytest.mark.parametrize("workers", WORKERS)
def test_a_really_full_disk_then_space_is_freed(tmp_path: Path, sink: tuple[RecordingSink, int],
                                               small_fs: Path, workers: int) -> None:
    handler, port = sink
    n = 40
    env, settings = populate(tmp_path, port, n)
    for suffix in ("", "-wal", "-shm"):
        if Path(settings.db + suffix).exists():
            shutil.copy(settings.db + suffix, small_fs / ("s.db" + suffix))
    env = {**env, "SYNDICATE_DB": str(small_fs / "s.db")}
    filler = small_fs / "filler"
    with filler.open("wb") as f:  # leave a few pages: planning fits, sending soon does not
        free = shutil.disk_usage(small_fs).free
        f.write(b"\0" * max(0, free - 48 * 1024))
    code, out, err = run(env, "send", "--at", AT, "--workers", str(workers))
    assert code == 1, (code, out, err)
    assert err.startswith("error: cannot write ") and ("database or disk is full" in err
                                                       or "No space left on device" in err), err
    assert len(err.splitlines()) == 1 + len([line for line in err.splitlines() if line.startswith("  ")])
    filler.unlink()
    settle(env)
    check(env["SYNDICATE_DB"], handler, n, max_unknown=POOL * workers)


@pytest.mark.parametrize("workers", WORKERS)
def test_a_read_only_journal_directory(tmp_path: Path, sink: tuple[RecordingSink, int], workers: int) -> None:
    handler, port = sink
    n = 10
    env, settings = populate(tmp_path, port, n)
    journal = Path(settings.db + ".journal")
    journal.mkdir()
    if os.geteuid() != 0 or not _mount("--bind", str(journal), str(journal)):
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        assert _mount("-o", "remount,bind,ro", str(journal))
        code, out, err = run(env, "send", "--at", AT, "--workers", str(workers))
        assert code == 1 and out == "sent 0, failed 0, skipped 0, retry later 0\n", (out, err)
        assert err.startswith(f"error: cannot write {journal}/") and err.endswith(
            ": Read-only file system; the next `syndicate send` recovers\n"), err
    finally:
        subprocess.run(["umount", str(journal)], capture_output=True, timeout=TIMEOUT)
    assert handler.ids() == []
    settle(env)
    assert check(settings.db, handler, n, max_unknown=0) == {"sent": n}


@pytest.mark.parametrize("workers", WORKERS)
def test_accept_then_drop_is_unknown_never_resent(tmp_path: Path, sink: tuple[RecordingSink, int],
                                                  workers: int) -> None:
    handler, port = sink
    n = 12
    env, settings = populate(tmp_path, port, n)
    handler.drop_after_accept.update({"r003@example.org", "r007@example.org"})
    code, out, err = run(env, "send", "--at", AT, "--workers", str(workers))
    assert code == 4, (out, err)
    assert out == "sent 10, failed 0, skipped 0, retry later 0, unknown 2 (not resent; see " \
                  "`syndicate outbox retry --unknown`)\n"
    settle(env)
    assert check(settings.db, handler, n, max_unknown=2) == {"sent": 10, "unknown": 2}
