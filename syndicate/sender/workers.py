"""``send --workers N``: N drain processes over one outbox, after one planning.

Planning stays in the parent (it holds the run lock). Each worker is a
forked child that opens its own store and transport and runs the ordinary
:func:`~syndicate.sender.drain.drain` under its own run id
(``<run id>.w<i>``), so it has its own journal and its own claims; the
claims' leases already keep drains apart. The workers stream their progress
and, at the end, their figures to the parent through a pipe each, and the
parent adds them into the run's :class:`SendReport` (counts summed; the first
worker's storage error or stop reason is the run's), so it prints one summary.

- A SIGTERM or SIGINT to the parent is passed on to every worker (as
  ``SIGUSR1``; a second one as ``SIGUSR2``: stop at once). Each stops as a
  single drain does: no new claim, what is on the wire gets ``[send]
  grace_seconds``, the rest of its claims go back to the queue; the parent
  waits for all of them and reports the run stopped. A worker that gets the
  signal itself too (systemd signals the whole control group, a terminal's
  Ctrl-C the whole process group) counts the two as one request.
- A worker dies with the parent (Linux ``PR_SET_PDEATHSIG``): a SIGKILL of
  ``syndicate send`` stops every drain at once, as it stops a single one,
  and the next run recovers each worker's journal.
- A worker that dies alone (killed, or a crash before it reported) has its
  rows settled by the parent from its journal once the others are done, as
  the next run would: accepted -> ``sent``, on the wire -> ``unknown``, the
  rest back to the queue. The run then exits 1, naming the worker.
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
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType

from ..config import Settings
from ..mailer import make_transport
from ..mailer.loop import run as run_loop
from ..store import Store
from .journal import recover_run
from .report import SendReport
from .stop import SIGNALS, Stop, Stopped

__all__ = ["drain_in_workers", "default_workers", "ROWS_PER_WORKER"]

_PROGRESS_EVERY = 0.2  # seconds between a worker's progress lines
#: The default ``--workers`` starts one worker per this many due messages, up to the cores:
#: a small run is done before extra processes would have rendered their first digest.
ROWS_PER_WORKER = 200
_ASK, _HURRY = signal.SIGUSR1, signal.SIGUSR2  # from the parent: stop; stop at once


def default_workers(due: int | None = None) -> int:
    """The number of cores this process may use (at most one per :data:`ROWS_PER_WORKER` ``due`` messages).

    Example:
        >>> default_workers(due=1)
        1
    """
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    if due is None:
        return cores
    return max(1, min(cores, -(-due // ROWS_PER_WORKER)))


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _listen(stop: Stop) -> None:
    """Route this worker's signals to ``stop``. Its own SIGTERM/SIGINT and the parent's SIGUSR1 are each
    a first request; a second of the same source (a second signal to this worker, or the parent's
    SIGUSR2) asks it to hurry. So one SIGTERM that reaches both the worker and the parent (systemd
    signals the whole control group) is one request, whichever arrives first."""
    own_signals = [0]

    def ask(reason: str) -> None:
        if not stop.requested:
            stop.request(reason)

    def hurry(reason: str) -> None:
        ask(reason)
        if not stop.hurry:
            stop.request(reason)

    def own(signum: int, frame: FrameType | None) -> None:
        own_signals[0] += 1
        (ask if own_signals[0] == 1 else hurry)(signal.Signals(signum).name)

    def parent(signum: int, frame: FrameType | None) -> None:
        (ask if signum == _ASK else hurry)("SIGTERM")

    for sig in SIGNALS:
        signal.signal(sig, own)
    signal.signal(_ASK, parent)
    signal.signal(_HURRY, parent)


def _worker(settings: Settings, kind: str, now: datetime, run_id: str, limit: int | None, out: int,
            parent: int, mask: set[signal.Signals]) -> None:
    from ..store import open_store
    from .drain import drain

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

    stop = Stop()
    _listen(stop)
    store = None
    try:
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a signal that came while forking is acted on here
            store = open_store(settings.db)
            run_loop(drain(store, settings, make_transport(settings, kind), now, report, limit, progress, stop),
                     settings.send_loop)
        except Stopped as exc:  # before the drain began: nothing claimed
            report.stopped = str(exc)
    finally:
        if store is not None:
            store.close()
        os.write(out, b"p %d\nr %s\n" % (done, json.dumps(report.as_dict()).encode()))
        os.close(out)


@dataclass
class _Child:
    index: int
    run_id: str
    proc: multiprocessing.process.BaseProcess
    fd: int
    figures: dict[str, object] | None = None
    buffer: bytes = field(default=b"")


def drain_in_workers(store: Store, settings: Settings, kind: str, now: datetime, report: SendReport,
                     limit: int | None, on_progress: Callable[[int], None] | None, workers: int,
                     stop: Stop | None = None) -> None:
    """Drain the outbox with ``workers`` processes; their figures are added to ``report``.

    ``store`` is the parent's (it holds the run lock): it settles the rows of
    a worker that died from that worker's journal.
    """
    ctx = multiprocessing.get_context("fork")
    shares = [None] * workers if limit is None else [limit // workers + (i < limit % workers) for i in range(workers)]
    children: list[_Child] = []
    signals: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)
        for child in children:
            if child.proc.pid is not None and child.proc.exitcode is None:
                try:
                    os.kill(child.proc.pid, _ASK if len(signals) == 1 else _HURRY)
                except ProcessLookupError:
                    pass

    old = {sig: signal.signal(sig, forward) for sig in SIGNALS}
    try:
        for i, share in enumerate(shares):
            if share == 0 or signals:  # a signal while starting: start no more
                continue
            r, w = os.pipe()
            run_id = f"{report.run_id}.w{i}"
            # no signal between fork and the child's own handlers: the child unblocks them once they are in place
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*SIGNALS, _ASK, _HURRY})
            try:
                proc = ctx.Process(target=_worker, args=(settings, kind, now, run_id, share, w, os.getpid(), mask),
                                   name=f"syndicate-send-w{i}")
                proc.start()
                children.append(_Child(i, run_id, proc, r))
            finally:
                os.close(w)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _collect(children, on_progress)
        for child in children:
            child.proc.join()
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
    for child in children:
        if child.figures is not None:
            _add(report, child.figures)
    for child in children:
        if child.figures is None or child.proc.exitcode != 0:
            _settle_dead(store, settings, report, child, len(children))
    if signals and stop is not None:  # the workers finished what was on the wire and gave the rest back
        report.stopped = signal.Signals(signals[0]).name
    elif signals:
        raise Stopped(signal.Signals(signals[0]).name)


def _settle_dead(store: Store, settings: Settings, report: SendReport, child: _Child, of: int) -> None:
    """A worker died without recording everything: settle its rows from its journal now."""
    code = child.proc.exitcode
    if code is not None and code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited {code}" if code else "stopped without reporting"
    sent, released, unknown = recover_run(store, settings, child.run_id)
    report.recovered += sent
    report.given_back += released
    report.unknown += unknown
    report.fatal = report.fatal or (f"send worker {child.index + 1} of {of} {how}; its messages were recorded "
                                    "from its journal")


def _collect(children: list[_Child], on_progress: Callable[[int], None] | None) -> None:
    sel = selectors.DefaultSelector()
    open_ = {child.fd: child for child in children}
    for fd in open_:
        sel.register(fd, selectors.EVENT_READ)
    try:
        while open_:
            for key, _ in sel.select():
                child = open_[int(key.fd)]
                chunk = os.read(child.fd, 65536)
                if not chunk:
                    sel.unregister(child.fd)
                    os.close(child.fd)
                    del open_[child.fd]
                    continue
                *lines, child.buffer = (child.buffer + chunk).split(b"\n")
                for line in lines:
                    kind, _, rest = line.partition(b" ")
                    if kind == b"p" and on_progress is not None and int(rest):
                        on_progress(int(rest))
                    elif kind == b"r":
                        child.figures = json.loads(rest)
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
    for name in ("fatal", "stopped"):  # the first worker's storage error or stop reason is the run's
        value = figures.get(name, "")
        if value and not getattr(report, name):
            setattr(report, name, str(value))
