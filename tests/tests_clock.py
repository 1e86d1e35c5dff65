"""A clock the tests move by hand and `serve` reads (through ``syndicate.web.feeds.with_clock``)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta


class Clock:
    """The instant the server and the test agree on; only the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self.now = self.now + delta
