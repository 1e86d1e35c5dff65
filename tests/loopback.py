"""Loopback helpers the test modules share: a free port, and a real aiosmtpd server for a block.

(Importable from every test module: pytest puts tests/ on sys.path when it loads
tests/conftest.py.)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(handler: Any, port: int | None = None, **options: Any) -> Iterator[int]:
    """Run aiosmtpd with ``handler`` on 127.0.0.1 for the block; yields its port."""
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
