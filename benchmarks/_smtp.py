"""A minimal counting SMTP sink and the raw aiosmtplib ceiling, each in its own process.

The sink is plain asyncio (no aiosmtpd, which tops out near 500 messages/s on
one core and hides the sender's cost): it answers EHLO/HELO, MAIL, RCPT,
DATA, RSET, NOOP and QUIT, counts each message that ends with ``CRLF . CRLF``
and discards it. It advertises PIPELINING and handles pipelined commands.
It reports its own message count and CPU seconds on request, so a benchmark
can tell when the sink, not the sender, is the bottleneck.

The ceiling is a raw aiosmtplib pool: ``pool`` connections, each a loop of
``sendmail`` over pre-built bytes (what a sender with zero build cost would
do through aiosmtplib), on asyncio's event loop or on uvloop. Reused by ``benchmarks/send.py``::

    with Sink() as sink:
        result = run_ceiling(sink.port, pool=4, messages=[...], n=5000)

Run directly for the ceiling alone:

    .venv/bin/python benchmarks/_smtp.py -n 5000 --pool 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent


# -- the sink (runs in its own process: `_smtp.py sink PORT`) --------------------------


class _SinkProtocol(asyncio.Protocol):
    count = 0
    bytes_in = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = bytearray()
        self.in_data = False
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        start = max(0, len(buf) - 4)
        buf += data
        out: list[bytes] = []
        while buf:
            if self.in_data:
                end = buf.find(b"\r\n.\r\n", start)
                if end < 0:
                    break
                _SinkProtocol.count += 1
                _SinkProtocol.bytes_in += end + 2
                del buf[: end + 5]
                self.in_data = False
                start = 0
                out.append(b"250 2.0.0 OK queued\r\n")
                continue
            nl = buf.find(b"\n")
            if nl < 0:
                break
            verb = bytes(buf[:4]).upper()
            del buf[: nl + 1]
            if verb in (b"EHLO", b"HELO"):
                out.append(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n" if verb == b"EHLO" else b"250 sink\r\n")
            elif verb == b"DATA":
                out.append(b"354 end with <CRLF>.<CRLF>\r\n")
                self.in_data = True
                # an empty message is just ".\r\n": look for the end as if a CRLF came first
                buf[0:0] = b"\r\n"
                start = 0
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            else:  # MAIL, RCPT, RSET, NOOP
                out.append(b"250 OK\r\n")
        if out:
            self.transport.write(b"".join(out))


def _serve_sink(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_SinkProtocol, "127.0.0.1", port, backlog=128)
        done = loop.create_future()

        def control() -> None:  # one line per request on stdin; EOF stops the sink
            for line in sys.stdin:
                if line.strip() == "stats":
                    t = os.times()
                    print(json.dumps({"count": _SinkProtocol.count, "bytes": _SinkProtocol.bytes_in,
                                      "cpu": t.user + t.system}), flush=True)
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        threading.Thread(target=control, daemon=True).start()
        print("ready", flush=True)
        await done
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SinkStats:
    count: int
    bytes: int
    cpu: float  # CPU seconds the sink process has used so far


class Sink:
    """The counting sink in a child process: ``with Sink() as sink: sink.port, sink.stats()``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Sink:
        self.proc = subprocess.Popen([sys.executable, __file__, "sink", str(self.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.__exit__(None, None, None)
            raise RuntimeError(f"SMTP sink did not start on port {self.port}")
        return self

    def stats(self) -> SinkStats:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        d = json.loads(self.proc.stdout.readline())
        return SinkStats(int(d["count"]), int(d["bytes"]), float(d["cpu"]))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout:
                self.proc.stdout.close()
            self.proc = None


# -- the ceiling (runs in its own process: `_smtp.py ceiling ...`) ---------------------


async def _push(port: int, pool: int, messages: list[bytes], n: int) -> float:
    import aiosmtplib

    conns = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="news.example.org") for _ in range(pool)]
    for c in conns:
        await c.connect()
    counter = iter(range(n))

    async def worker(conn: aiosmtplib.SMTP) -> None:
        for i in counter:
            await conn.sendmail("bounce@news.example.org", ["reader@example.org"], messages[i % len(messages)])

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        await c.quit()
    return elapsed


@dataclass
class RunResult:
    messages: int
    wall: float  # seconds, the whole child process
    cpu: float  # CPU seconds of the child process (and any children it waited for)
    maxrss_mb: float = 0.0
    sink_cpu: float = 0.0  # CPU seconds the sink used meanwhile
    inner: float = 0.0  # seconds of sending only, as the child measured it

    @property
    def rate(self) -> float:
        return self.messages / self.inner if self.inner else self.messages / self.wall

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.messages * 1000 if self.messages else 0.0


def run_child(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> tuple[str, float, float, float]:
    """Run a child to the end: (stdout, wall seconds, CPU seconds, peak RSS MB), from the child's own rusage.

    The CPU figure counts the child and every process it waited for (its workers).
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            err.seek(0)
            sys.stderr.write(err.read().decode("utf-8", "replace"))
            raise SystemExit(f"{' '.join(argv[1:4])} exited {proc.returncode}")
    return out.decode(), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def run_ceiling(sink: Sink, pool: int, messages: list[bytes], n: int, procs: int = 1,
                loop: str = "asyncio") -> RunResult:
    """``procs`` processes, each a raw aiosmtplib pool of ``pool`` connections, sending ``n`` in all.

    ``loop``: the event loop of each process, ``asyncio`` or ``uvloop``.
    """
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as f:
        pickle.dump([bytes(m) for m in messages], f)
    try:
        before = sink.stats()
        start = time.perf_counter()
        share = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        children = [subprocess.Popen([sys.executable, __file__, "ceiling", str(sink.port), str(pool), f.name, str(k),
                                      loop], stdout=subprocess.PIPE) for k in share]
        cpu, inner, rss = 0.0, 0.0, 0.0
        for child in children:
            assert child.stdout is not None
            out = child.stdout.read()
            child.stdout.close()
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode != 0:
                raise SystemExit(f"ceiling process exited {child.returncode}")
            cpu += usage.ru_utime + usage.ru_stime
            rss = max(rss, usage.ru_maxrss / 1024)
            inner = max(inner, float(out))
        wall = time.perf_counter() - start
        after = sink.stats()
    finally:
        os.unlink(f.name)
    if after.count - before.count != n:
        raise SystemExit(f"the sink counted {after.count - before.count} messages, expected {n}")
    return RunResult(n, wall, cpu, rss, after.cpu - before.cpu, inner)


def sample_message(size: int = 50_000) -> bytes:
    """A rendered digest-like message of about ``size`` bytes (for running this file alone)."""
    sys.path.insert(0, str(ROOT))
    from syndicate.mailer import Mail, list_headers, render_mail

    para = "Tin nổi bật hôm nay: khởi nghiệp, công nghệ và đời sống ở Thành phố Hồ Chí Minh. "
    html_len, text_len = size * 7 // 10 * 3 // 4, size * 5 // 10 * 3 // 4 // 2
    html = ("<p>" + para + "</p>\n") * (html_len // len(("<p>" + para + "</p>\n").encode()) + 1)
    text = (para + "\n") * (text_len // len((para + "\n").encode()) + 1)
    mail = Mail("Bản tin Sài Gòn", "tin@news.example.org", "Nguyễn Văn An", "an@example.org",
                "Bản tin sáng thứ Ba", text, html, "bench.1@news.example.org", datetime(2026, 11, 24, tzinfo=UTC),
                list_headers("Tin sáng", "sang.news.example.org", "https://news.example.org/unsubscribe/x"))
    return render_mail(mail)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "sink":
        _serve_sink(int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "ceiling":
        port, pool, path, n = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        loop = sys.argv[6] if len(sys.argv) > 6 else "asyncio"
        with open(path, "rb") as f:
            messages = pickle.load(f)
        factory = None
        if loop == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            print(runner.run(_push(port, pool, messages, n)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5000, help="messages to send")
    ap.add_argument("--pool", type=int, default=4, help="connections")
    ap.add_argument("--size", type=int, default=50_000, help="message size in bytes")
    args = ap.parse_args()
    message = sample_message(args.size)
    print(f"message: {len(message):,} bytes; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    with Sink() as sink:
        run_ceiling(sink, args.pool, [message], min(500, args.n))  # warm up
        r = run_ceiling(sink, args.pool, [message], args.n)
        print(f"raw aiosmtplib pool of {args.pool}: {r.rate:,.0f} messages/s, {r.cpu_ms:.3f} ms CPU per message; "
              f"sink {r.sink_cpu / r.wall:.0%} of a core")


if __name__ == "__main__":
    main()
