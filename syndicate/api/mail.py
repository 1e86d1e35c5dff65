"""Sending the notices API calls queue, after the answer, in batches.

A subscriber created through the API gets its confirmation email the way the
web form's does: the handler queues the outbox row (``store.queue_notices``,
with all its rules) before it answers, so the row is durable; then one
sender thread (:class:`NoticeSender`) drains the rows handed to it through
the same drain every notice goes through. Rows handed over together are sent
in one batch, so a burst of creates costs one drain, not one each. ``serve``
runs that thread in a child process (:class:`ProcessNoticeSender`), so the
emails' rendering and file writes do not take turns with the requests under
one interpreter lock. Should either process stop first, the rows stay queued
and the next ``syndicate send`` sends them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from ..child import start_child
from ..config import Settings
from ..store import open_store
from .writes import serialise_writes

log = logging.getLogger("syndicate.api")

BATCH = 500
#: Seconds between two settlings of dead notice senders' journals (every `syndicate send` settles them too).
RECOVER_EVERY = 60.0
#: Seconds a batch waits for more rows after its first (the delay an email may get for it).
FILL = 0.01
_STOP = -1


class NoticeSender:
    """One background thread with its own store; :meth:`send` hands it outbox row ids."""

    def __init__(self, settings: Settings, on_tried: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self._on_tried = on_tried  # told how many rows each batch tried (the process sender's child reports it)
        self._queue: queue.Queue[int] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Condition()
        self._pending = 0  # rows handed over and not tried yet

    def send(self, delivery_ids: list[int]) -> None:
        if not delivery_ids:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="syndicate-api-notices", daemon=True)
                self._thread.start()
            with self._done:
                self._pending += len(delivery_ids)
            for did in delivery_ids:
                self._queue.put(did)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every row handed over so far was tried (tests and benchmarks use this)."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def _tried(self, count: int) -> None:
        with self._done:
            self._pending -= count
            self._done.notify_all()
        if self._on_tried is not None and count:
            self._on_tried(count)

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(60)

    def _run(self) -> None:
        from ..mailer import make_transport
        from ..sender.notices import KeepOpen, deliver_async, recover_notice_journals

        store = serialise_writes(open_store(self.settings.db))
        # One event loop and one transport for the thread's life (SMTP connections stay open between batches);
        # dead senders' journals are settled when it starts and then now and then, not before every batch.
        runner = asyncio.Runner()
        transport = None
        recovered = -RECOVER_EVERY
        try:
            while True:
                first = self._queue.get()
                batch = [first]
                # let the batch fill a little: under a burst, rows arrive a commit's worth at a time, and a batch's
                # own cost (its journal, its claims, its builders) is then paid once for many of them
                until = time.monotonic() + FILL
                while len(batch) < BATCH and batch[-1] != _STOP:
                    try:
                        batch.append(self._queue.get(timeout=max(0.0, until - time.monotonic())))
                    except queue.Empty:
                        break
                stop = _STOP in batch
                ids = [d for d in batch if d != _STOP]
                if ids:
                    try:
                        if transport is None:
                            transport = make_transport(self.settings)
                        if time.monotonic() - recovered >= RECOVER_EVERY:
                            recover_notice_journals(store, self.settings)
                            recovered = time.monotonic()
                        outcomes = runner.run(deliver_async(store, self.settings, ids, KeepOpen(transport)))
                        proofs = [(o.subscription_id, o.message_id) for o in outcomes
                                  if o.kind == "confirm" and o.message_id]
                        if proofs:  # proof of consent: which email asked them (one transaction for the batch)
                            with store.transaction():
                                for subscription_id, message_id in proofs:
                                    store.set_confirmation_message_id(subscription_id, message_id)
                    except Exception:
                        log.exception("sending %d notice(s) queued by the API failed; they stay queued", len(ids))
                self._tried(len(ids))
                if stop:
                    return
        finally:
            try:
                if transport is not None:
                    runner.run(transport.close())
            finally:
                runner.close()
                store.close()


def child_main(fd: int) -> None:
    """The notice sender process: settings, then lists of row ids, over ``fd``; answers with counts tried.

    It is a :class:`NoticeSender` in a process of its own. It ends when the
    connection closes (the server stopped or died), after trying every row
    handed to it; rows it never got stay queued for ``syndicate send``.
    """
    # Its own process group keeps a terminal's Ctrl-C away; a stop signal sent to every process of the service
    # (systemd's KillMode=control-group) is ignored too: the server closes the pipe, and this process finishes
    # what it holds and exits on that, rather than dying mid-batch with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(fd)
    lock = threading.Lock()

    def report(count: int) -> None:
        with lock:
            try:
                conn.send(count)
            except OSError:
                pass  # the server is gone; the rows are recorded in the store all the same

    sender = NoticeSender(conn.recv(), on_tried=report)
    try:
        while True:
            try:
                ids = conn.recv()
            except (EOFError, OSError):
                break
            sender.send(list(ids))
    finally:
        sender.close()
        conn.close()


class ProcessNoticeSender:
    """:class:`NoticeSender`'s interface, with the sending in a child process.

    Rendering, DKIM and the transport's file writes then run beside the API's
    event loop instead of taking turns with it under one interpreter lock: on
    two cores the creates and their emails each get one. The child starts at
    the first row handed over and again should it die (its rows stay queued:
    the next ``syndicate send`` sends them, and the error is logged).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._done = threading.Condition()
        self._pending = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None  # our end: shut for writing to tell the child to finish
        self._conn: Connection | None = None  # the same end, for pickled messages
        self._reader: threading.Thread | None = None

    def _start(self) -> None:
        # process_group: a terminal's Ctrl-C reaches serve alone, which then ends this one in order
        self._proc, ours = start_child("syndicate.api.mail", "child_main", process_group=0)
        self._sock, self._conn = ours, Connection(os.dup(ours.fileno()))
        self._conn.send(self.settings)
        self._reader = threading.Thread(target=self._read, args=(self._sock, self._conn, self._proc),
                                        name="syndicate-api-notices", daemon=True)
        self._reader.start()

    def _read(self, sock: socket.socket, conn: Connection, proc: subprocess.Popen[bytes]) -> None:
        """Count what the child reports until it closes its end (it finished, or died); then clean up."""
        try:
            while True:
                try:
                    count = conn.recv()
                except (EOFError, OSError):
                    break
                with self._done:
                    self._pending -= int(count)
                    self._done.notify_all()
            code = proc.wait()
        finally:
            conn.close()
            sock.close()
        with self._done:
            lost, self._pending = self._pending, 0
            self._done.notify_all()
        if lost:
            log.error("the notice sender process exited with status %s before trying %d notice(s); they stay "
                      "queued for the next `syndicate send`", code, lost)

    def send(self, delivery_ids: list[int]) -> None:
        if not delivery_ids:
            return
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                if self._reader is not None:
                    self._reader.join(60)  # the dead child's end is closed: the reader ends and cleans up
                self._start()
            assert self._conn is not None
            with self._done:
                self._pending += len(delivery_ids)
            try:
                self._conn.send(list(delivery_ids))
            except OSError:
                with self._done:
                    self._pending -= len(delivery_ids)
                    self._done.notify_all()
                log.exception("cannot hand %d notice(s) to the sender process; they stay queued", len(delivery_ids))

    def wait_idle(self, timeout: float) -> bool:
        """Block until every row handed over so far was tried (tests and benchmarks use this)."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Let the child try what it was handed, then end it (killed after 60 s)."""
        with self._lock:
            proc, reader, sock = self._proc, self._reader, self._sock
            self._proc = self._reader = self._sock = self._conn = None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_WR)  # the child reads EOF: it finishes what it has, then exits
            except OSError:
                pass  # already gone
        if proc is not None:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if reader is not None:
            reader.join(60)
