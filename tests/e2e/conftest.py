"""Real servers on 127.0.0.1 for end-to-end tests: uvicorn for the app, aiosmtpd as the mail sink."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from loopback import smtp_server
from starlette.types import ASGIApp

#: Seconds a server may take to start or stop on a machine busy with other test runs.
STARTUP_TIMEOUT = 120.0


@dataclass
class LiveServer:
    """A uvicorn server on its own thread, listening on an already bound loopback socket."""

    sock: socket.socket
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, app: ASGIApp) -> str:
        config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none", http="h11")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(STARTUP_TIMEOUT)
        self.sock.close()


@pytest.fixture
def live_server() -> Iterator[Callable[[], LiveServer]]:
    """Factory: ``srv = live_server()`` binds a free port (``srv.url`` is known at once, so settings can
    carry it as base_url), then ``srv.start(app)`` serves the app. All are stopped at teardown."""
    servers: list[LiveServer] = []

    def make() -> LiveServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        srv = LiveServer(sock)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


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


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it is given."""
    sink = SmtpSink()
    with smtp_server(sink) as port:  # bound before it starts: no other process can take the port meanwhile
        sink.port = port
        yield sink
