"""Loopback helpers the test modules share: a free port, and a real aiosmtpd server for a block.

(Importable from every test module: pytest puts tests/ on sys.path when it loads
tests/conftest.py.)
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

#: Seconds aiosmtpd may take to start and answer its first connection: generous, as the
#: machine may be busy with other test runs (aiosmtpd's own default is 5).
READY_TIMEOUT = 120.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _BoundController(Controller):
    """aiosmtpd serving on a socket bound before it starts: no other process can take the port
    between choosing it and listening on it. It closes its clients' connections before it stops:
    aiosmtpd's own stop halts the loop with them open (a client that has its 250 but has not
    sent QUIT yet), and their transports then warn "unclosed transport" in whichever test runs
    when they are collected."""

    def __init__(self, handler: Any, sock: socket.socket, **options: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=int(sock.getsockname()[1]), **options)
        self._sock = sock
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)

    def factory(self) -> Any:
        smtp = super().factory()
        self._sessions.add(smtp)
        return smtp

    async def _hang_up(self) -> None:
        if self.server is not None:
            self.server.close()  # accept no one new
        quiet = 0
        for _ in range(1000):  # until a few turns of the loop find nothing open: accepts in flight
            await asyncio.sleep(0.005)  # still make transports, and each close ends on a later turn
            open_ = [t for t in (getattr(s, "transport", None) for s in list(self._sessions))
                     if t is not None and not t.is_closing()]
            for transport in open_:
                transport.close()
            quiet = 0 if open_ else quiet + 1
            if quiet >= 3:
                return

    def stop(self, no_assert: bool = False) -> None:
        if self._thread is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self._hang_up(), self.loop).result(READY_TIMEOUT)
        super().stop(no_assert)


def _bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's create_server would
        sock.bind(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


@contextmanager
def smtp_server(handler: Any, port: int | None = None, **options: Any) -> Iterator[int]:
    """Run aiosmtpd with ``handler`` on 127.0.0.1 for the block; yields its port.

    Without ``port`` it listens on a port the kernel picks, bound before the
    server starts (no race with other processes for it).
    """
    sock = _bound(port or 0)
    options.setdefault("ready_timeout", READY_TIMEOUT)
    controller = _BoundController(handler, sock, **options)
    try:
        controller.start()
    except BaseException:
        sock.close()
        raise
    try:
        yield controller.port
    finally:
        controller.stop()
        sock.close()  # closed with the server already; twice is harmless


@dataclass
class SmtpSink:
    """What a real SMTP server (aiosmtpd) accepted: (envelope from, recipients, raw bytes)."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        raw = getattr(envelope, "original_content", None) or getattr(envelope, "content", b"")
        with self._lock:
            self.messages.append((str(getattr(envelope, "mail_from", "")), list(getattr(envelope, "rcpt_tos", [])),
                                  bytes(raw)))
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 60.0) -> list[tuple[str, list[str], bytes]]:
        """Block until at least ``count`` messages arrived (or fail the test)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} message(s) in the SMTP sink, got {len(self.messages)}")
            time.sleep(0.02)


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie not yet reaped: it runs no more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
