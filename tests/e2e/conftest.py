"""Real servers on 127.0.0.1 for end-to-end tests: uvicorn for the app, aiosmtpd as the mail sink."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from loopback import SmtpSink, smtp_server
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


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it is given."""
    sink = SmtpSink()
    with smtp_server(sink) as port:  # bound before it starts: no other process can take the port meanwhile
        sink.port = port
        yield sink
