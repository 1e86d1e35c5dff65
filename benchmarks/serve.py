"""Conditional GETs per second against `syndicate serve` (loopback, keep-alive).

    .venv/bin/python benchmarks/serve.py [--seconds 5] [--connections 8] [--path /atom.xml]

Starts the server in a subprocess on 127.0.0.1 with a store of 1,000
articles, fetches the feed once for its ETag, then keeps ``--connections``
keep-alive connections busy with ``If-None-Match`` requests for
``--seconds`` and prints the rate of 304 answers (target: >= 2,000/s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syndicate.models import Article  # noqa: E402
from syndicate.store import open_store  # noqa: E402

SERVER = """
import sys, uvicorn
from syndicate.config import Settings
from syndicate.web import create_app
from syndicate.web.feeds import with_clock
settings = Settings(db=sys.argv[1], base_url="https://news.example.org")
uvicorn.run(with_clock(create_app(settings)), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            date_header=False)
"""


def free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


async def fetch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """One keep-alive request; returns (status, headers+body bytes)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return status, head + body


async def worker(port: int, request: bytes, deadline: float, counts: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            status, _ = await fetch(reader, writer, request)
            counts[status] = counts.get(status, 0) + 1
    finally:
        writer.close()


async def hammer(port: int, path: str, seconds: float, connections: int) -> tuple[dict[int, int], float, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    first = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n".encode()
    status, raw = await fetch(reader, writer, first)
    writer.close()
    assert status == 200, raw[:200]
    etag = next(line.split(b":", 1)[1].strip() for line in raw.split(b"\r\n") if line.lower().startswith(b"etag:"))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\nIf-None-Match: {etag.decode()}\r\n\r\n"
    ).encode()
    counts: dict[int, int] = {}
    start = time.perf_counter()
    await asyncio.gather(*(worker(port, request, start + seconds, counts) for _ in range(connections)))
    return counts, time.perf_counter() - start, etag.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--path", default="/atom.xml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "serve.db")
        store = open_store(db)
        now = datetime.now(UTC).replace(microsecond=0)
        store.upsert_articles(
            Article(guid=f"s:{i}", title=f"Tin số {i}", slug=f"tin-{i}", published=now - timedelta(hours=i),
                    body_html="<p>Nội dung bài viết.</p>" * 20, category=["Kinh tế", "Xã hội"][i % 2])
            for i in range(1000)
        )
        store.close()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
        proc = subprocess.Popen([sys.executable, "-c", SERVER, db, str(port)], env=env)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("server did not start") from None
                    time.sleep(0.05)
            counts, elapsed, etag = asyncio.run(hammer(port, args.path, args.seconds, args.connections))
        finally:
            proc.terminate()
            proc.wait(10)
    total = sum(counts.values())
    print(f"{args.path} ETag {etag}: {total:,} requests in {elapsed:.1f}s over {args.connections} keep-alive connections")
    print(f"status counts: {dict(sorted(counts.items()))}")
    print(f"304 rate: {counts.get(304, 0) / elapsed:,.0f} requests/s (target >= 2,000/s)")


if __name__ == "__main__":
    main()
