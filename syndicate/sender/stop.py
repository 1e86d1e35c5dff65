"""SIGTERM and SIGINT: stop claiming, finish what is on the wire, give the rest back.

systemd sends SIGTERM on every stop and deploy, and SIGKILL after
``TimeoutStopSec``. The first signal asks the run to stop: while it plans, the
current batch rolls back (planning again is harmless) and the run ends; while
it drains, no new row is claimed or started, messages whose DATA has begun get
``[send] grace_seconds`` (default 20) to finish, the rest of the claims go back
to the queue, every result is recorded and the summary printed. A second
signal stops at once: what is still on the wire becomes ``unknown``.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """Raised in the synchronous phases (recovery, planning) when a stop is requested.

    A BaseException so that no ``except Exception`` on the way swallows it.
    """


class Stop:
    """One run's stop request: an exception for the synchronous phases, an event for the drain."""

    def __init__(self) -> None:
        self.reason = ""
        self.at = 0.0  # time.monotonic() of the first request
        self.hurry = False  # a second request: do not wait for the grace period
        self._loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None

    @property
    def requested(self) -> bool:
        return bool(self.reason)

    def attach(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """From now on a request sets the returned event instead of raising."""
        self.event = asyncio.Event()
        if self.reason:
            self.event.set()
        self._loop = loop
        return self.event

    def detach(self) -> None:
        self._loop = None
        self.event = None

    def request(self, reason: str) -> None:
        if self.reason:
            self.hurry = True
        else:
            self.reason = reason
            self.at = time.monotonic()
        loop, event = self._loop, self.event
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)
        elif not self.hurry:
            raise Stopped(reason)


@contextmanager
def stop_on_signals(stop: Stop) -> Iterator[Stop]:
    """Route SIGTERM and SIGINT to ``stop`` for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.request(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield stop
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
