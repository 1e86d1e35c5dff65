"""``send --workers N``: N drain processes over one outbox, after one planning.

Planning stays in the parent (it holds the run lock). Each worker is a
forked child that opens its own store and transport and runs the ordinary
:func:`~syndicate.sender.drain.drain` under its own run id
(``<run id>.w<i>``), so it has its own journal and its own claims; the
claims' leases already keep drains apart. The workers stream their progress
and, at the end, their figures to the parent through a pipe each, and the
parent adds them into the run's :class:`SendReport`.

- SIGTERM to the parent is passed to every worker; each stops as a single
  drain does, the parent waits for all of them, then acts on the SIGTERM
  itself as it would have alone.
- A worker dies with the parent (Linux ``PR_SET_PDEATHSIG``): a SIGKILL of
  ``syndicate send`` stops every drain at once, as it stops a single one,
  and the next run recovers each worker's journal.
- The forked workers share the parent's lock descriptor, so the run lock is
  held until the last worker is gone.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import selectors
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from types import FrameType

from ..config import Settings
from ..mailer import make_transport
from ..mailer.loop import run as run_loop
from .report import SendReport
from .stop import Stop

__all__ = ["drain_in_workers", "default_workers"]

_PROGRESS_EVERY = 0.2  # seconds between a worker's progress lines


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _worker(settings: Settings, kind: str, now: datetime, run_id: str, limit: int | None, out: int,
            parent: int) -> None:
    from ..store import open_store
    from .drain import drain
    from .stop import stop_on_signals

    _die_with_parent(parent)
    report = SendReport(run_id=run_id)
    done = 0
    last = time.monotonic()

    def progress(n: int) -> None:
        nonlocal done, last
        done += n
        if time.monotonic() - last > _PROGRESS_EVERY:
            os.write(out, b"p %d\n" % done)
            done, last = 0, time.monotonic()

    store = open_store(settings.db)
    try:
        stop = Stop()  # SIGTERM (forwarded by the parent): finish what is on the wire, give the rest back
        with stop_on_signals(stop):
            run_loop(drain(store, settings, make_transport(settings, kind), now, report, limit, progress, stop),
                     settings.send_loop)
    finally:
        store.close()
        os.write(out, b"p %d\nr %s\n" % (done, json.dumps(report.as_dict()).encode()))
        os.close(out)


def drain_in_workers(settings: Settings, kind: str, now: datetime, report: SendReport, limit: int | None,
                     on_progress: Callable[[int], None] | None, workers: int, stop: Stop | None = None) -> None:
    """Drain the outbox with ``workers`` processes; their figures are added to ``report``."""
    ctx = multiprocessing.get_context("fork")
    shares = [None] * workers if limit is None else [limit // workers + (i < limit % workers) for i in range(workers)]
    procs: list[tuple[multiprocessing.process.BaseProcess, int]] = []
    terminated: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        terminated.append(signum)
        for proc, _ in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    old = signal.signal(signal.SIGTERM, forward)
    try:
        for i, share in enumerate(shares):
            if share == 0 or terminated:  # a SIGTERM while starting: start no more
                continue
            r, w = os.pipe()
            proc = ctx.Process(target=_worker, args=(settings, kind, now, f"{report.run_id}.w{i}", share, w, os.getpid()),
                               name=f"syndicate-send-w{i}")
            proc.start()
            os.close(w)
            procs.append((proc, r))
        _collect(procs, report, on_progress)
        for child, _ in procs:
            child.join()
            if child.exitcode not in (0, None) and not terminated:
                report.errors.append(f"send worker {child.name} exited {child.exitcode}")
    finally:
        signal.signal(signal.SIGTERM, old)
    if terminated and stop is not None:  # the workers finished what was on the wire and gave the rest back
        report.stopped = report.stopped or signal.Signals(terminated[0]).name
    elif terminated and callable(old):
        old(signal.SIGTERM, None)  # what this process would have done on SIGTERM without workers


def _collect(procs: list[tuple[multiprocessing.process.BaseProcess, int]], report: SendReport,
             on_progress: Callable[[int], None] | None) -> None:
    sel = selectors.DefaultSelector()
    buffers: dict[int, bytes] = {}
    for _, fd in procs:
        sel.register(fd, selectors.EVENT_READ)
        buffers[fd] = b""
    try:
        while buffers:
            for key, _ in sel.select():
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                    os.close(fd)
                    del buffers[fd]
                    continue
                *lines, buffers[fd] = (buffers[fd] + chunk).split(b"\n")
                for line in lines:
                    kind, _, rest = line.partition(b" ")
                    if kind == b"p" and on_progress is not None and int(rest):
                        on_progress(int(rest))
                    elif kind == b"r":
                        _add(report, json.loads(rest))
    finally:
        sel.close()


def _add(report: SendReport, figures: dict[str, object]) -> None:
    for name in ("sent", "failed", "retry_later", "unknown", "given_back"):
        value = figures.get(name, 0)
        assert isinstance(value, int)
        setattr(report, name, getattr(report, name) + value)
    errors = figures.get("errors", [])
    assert isinstance(errors, list)
    report.errors.extend(str(e) for e in errors)
