"""The SMTP hand-off ceiling: the SmtpTransport pool pushing pre-built bytes into a sink.

The sink is aiosmtpd in a separate process (so it does not share the GIL with
the client) on 127.0.0.1; it accepts and discards every message. Reused by
``benchmarks/send.py``::

    from benchmarks._smtp import SinkProcess, ceiling
    with SinkProcess() as port:
        rate = ceiling(5000, pool_size=8, port=port)

Run directly to print the ceiling:

    .venv/bin/python benchmarks/_smtp.py -n 5000 --pool 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syndicate.config import Secret, Settings  # noqa: E402
from syndicate.mailer import Mail, SmtpTransport, list_headers, render_mail  # noqa: E402

_SINK_CODE = """
import sys, threading
from aiosmtpd.controller import Controller

class Sink:
    count = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        return "250 OK"

c = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]), data_size_limit=0)
c.start()
print("ready", flush=True)
sys.stdin.read()  # until the parent closes our stdin
c.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SinkProcess:
    """An aiosmtpd sink in a child process; ``with SinkProcess() as port: ...``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> int:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SINK_CODE, str(self.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"SMTP sink did not start on port {self.port}")
        return self.port

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout:
                self.proc.stdout.close()
            self.proc = None

    def __enter__(self) -> int:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def sample_message(size: int = 25_000) -> bytes:
    """A rendered digest-like message of about ``size`` bytes."""
    para = "Tin nổi bật hôm nay: khởi nghiệp, công nghệ và đời sống ở Thành phố Hồ Chí Minh. "
    html_len, text_len = size * 7 // 10 * 3 // 4, size * 5 // 10 * 3 // 4 // 2
    html = ("<p>" + para + "</p>\n") * (html_len // len(("<p>" + para + "</p>\n").encode()) + 1)
    text = (para + "\n") * (text_len // len((para + "\n").encode()) + 1)
    mail = Mail("Bản tin Sài Gòn", "tin@news.example.org", "Nguyễn Văn An", "an@example.org",
                "Bản tin sáng thứ Ba", text, html, "bench.1@news.example.org", datetime(2026, 11, 24, tzinfo=UTC),
                list_headers("Tin sáng", "sang.news.example.org", "https://news.example.org/unsubscribe/x"))
    return render_mail(mail)


def smtp_settings(port: int, pool_size: int) -> Settings:
    return Settings(secret_key=Secret("bench"), mail_sender_address="tin@news.example.org",
                    smtp_host="127.0.0.1", smtp_port=port, smtp_pool_size=pool_size, source="benchmark")


async def push(settings: Settings, messages: list[bytes]) -> float:
    """Send every message through one SmtpTransport; returns elapsed seconds."""
    transport = SmtpTransport(settings)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for m in messages:
        queue.put_nowait(m)

    async def worker() -> None:
        while not queue.empty():
            await transport.send("bounce@news.example.org", ["an@example.org"], queue.get_nowait())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(settings.smtp_pool_size)))
    elapsed = time.perf_counter() - start
    await transport.close()
    return elapsed


def ceiling(n_messages: int, pool_size: int, *, port: int | None = None, message: bytes | None = None) -> float:
    """Messages per second the pool hands to a sink (started here unless ``port`` is given)."""
    message = message or sample_message()
    if port is None:
        with SinkProcess() as p:
            return ceiling(n_messages, pool_size, port=p, message=message)
    elapsed = asyncio.run(push(smtp_settings(port, pool_size), [message] * n_messages))
    return n_messages / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5000, help="messages to send")
    ap.add_argument("--pool", type=int, nargs="+", default=[4, 8], help="pool sizes to try")
    ap.add_argument("--size", type=int, default=25_000, help="message size in bytes")
    args = ap.parse_args()
    message = sample_message(args.size)
    print(f"message: {len(message):,} bytes; {os.cpu_count()} CPUs")
    with SinkProcess() as port:
        ceiling(min(500, args.n), args.pool[0], port=port, message=message)  # warm up
        for pool in args.pool:
            rate = ceiling(args.n, pool, port=port, message=message)
            print(f"pool {pool:>2}: {rate:,.0f} messages/s")


if __name__ == "__main__":
    main()
