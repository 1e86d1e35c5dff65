"""Subscriber creates per second through the admin API against `syndicate serve` (loopback, keep-alive).

    .venv/bin/python benchmarks/api.py [--pairs 3] [--requests 2000] [--connections 8]

Starts two servers on 127.0.0.1 in subprocesses, on the same stack (uvicorn
with the flags `syndicate serve` uses, Starlette): the syndicate app with a
write token and a list, and a reference app whose one endpoint reads a JSON
body and answers 201 with a small JSON object (what any JSON API costs before
it does any work). Then, ``--pairs`` times, interleaved: ``--requests``
``POST /api/v1/subscribers`` with a new address each (each a pending
subscription, its consent record and a queued confirmation email, sent to
a Maildir by the API's notice sender, a child process of the server), and as many
POSTs to the reference. Prints the median and min rate of each, and the
servers' CPU time per request (user + system, from /proc, child processes included). The API's
sender may still be sending when the last answer goes out: before the next
run, each pair waits until all its emails are in the Maildir and prints the
CPU per create with its email counted, how long after the last answer the
last email landed, and the emails per second from the first create to the
last email. Target: >= 500 creates/s.

The API's rate limit is off for the run (``[api] rate = 0``); everything
else is the default configuration. ``--queue-only`` sets ``[api]
send_at_once = false``: the emails wait in the outbox for ``syndicate send``
(the create itself is the same write), which shows what the signups cost
without the email rendering and Maildir fsyncs sharing the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syndicate import subscribers  # noqa: E402
from syndicate.api.auth import create_token  # noqa: E402
from syndicate.models import NewsList  # noqa: E402
from syndicate.store import open_store  # noqa: E402

SYNDICATE = """
import sys, uvicorn
from syndicate.config import Secret, Settings
from syndicate.web import create_app
from syndicate.web.feeds import with_clock
settings = Settings(db=sys.argv[1], base_url="https://news.example.org", mail_maildir=sys.argv[3],
                    secret_key=Secret("benchmark-secret-key-0123456789-abcdef"), api_rate=0.0,
                    api_send_at_once=sys.argv[4] == "1")
uvicorn.run(with_clock(create_app(settings)), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            proxy_headers=False, date_header=False)
"""

REFERENCE = """
import json, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def create(request):
    body = json.loads(await request.body())
    out = json.dumps({"email": body["email"], "status": "pending"}).encode() + b"\\n"
    return Response(out, status_code=201, media_type="application/json")

app = Starlette(routes=[Route("/api/v1/subscribers", create, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", proxy_headers=False,
            date_header=False)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def maildir_count(maildir: str) -> int:
    new = Path(maildir) / "new"
    return len(os.listdir(new)) if new.is_dir() else 0


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process, its threads and its children, live (the API's notice
    sender process) or ended."""
    fields = _stat(pid)
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                child = _stat(int(entry))
            except OSError:
                continue  # ended meanwhile
            if int(child[1]) == pid:
                ticks += round(cpu_seconds(int(entry)) * os.sysconf("SC_CLK_TCK"))
    return ticks / os.sysconf("SC_CLK_TCK")


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


def request_bytes(token: str, n: int, run: str) -> bytes:
    body = json.dumps({"email": f"bench-{run}-{n}@example.org", "list": "tin-sang", "name": f"Người {n}"},
                      ensure_ascii=False).encode()
    return (f"POST /api/v1/subscribers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def hammer(port: int, token: str, total: int, connections: int, run: str) -> tuple[float, dict[int, int]]:
    counts: dict[int, int] = {}
    todo = iter(range(total))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for n in todo:
                status = await post(reader, writer, request_bytes(token, n, run))
                counts[status] = counts.get(status, 0) + 1
        finally:
            writer.close()
            await writer.wait_closed()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - start, counts


def wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("server did not start") from None
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--queue-only", action="store_true",
                        help="[api] send_at_once = false: emails wait in the outbox for `syndicate send`.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db, maildir = str(Path(tmp) / "api.db"), str(Path(tmp) / "maildir")
        store = open_store(db)
        subscribers.create_list(store, NewsList(slug="tin-sang", name="Tin sáng"))
        _, token = create_token(store, "bench", "write")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
        api_port, ref_port = free_port(), free_port()
        at_once = "0" if args.queue_only else "1"
        api = subprocess.Popen([sys.executable, "-c", SYNDICATE, db, str(api_port), maildir, at_once], env=env)
        ref = subprocess.Popen([sys.executable, "-c", REFERENCE, str(ref_port)], env=env)
        rows: dict[str, list[tuple[float, float]]] = {"api": [], "reference": []}
        mail_rows: list[tuple[float, float, float]] = []  # (CPU per create with its email, lag s, emails/s)
        loads = [os.getloadavg()[0]]
        sent = 0
        try:
            wait_listening(api, api_port)
            wait_listening(ref, ref_port)
            for pair in range(args.pairs):
                for name, proc, port in (("api", api, api_port), ("reference", ref, ref_port)):
                    cpu = cpu_seconds(proc.pid)
                    started = time.monotonic()
                    elapsed, counts = asyncio.run(hammer(port, token, args.requests, args.connections, f"{pair}"))
                    used = cpu_seconds(proc.pid) - cpu
                    if counts != {201: args.requests}:
                        raise SystemExit(f"{name} pair {pair + 1}: unexpected answers {counts}")
                    rows[name].append((args.requests / elapsed, used / args.requests))
                    line = (f"pair {pair + 1} {name:<9} {args.requests / elapsed:8,.0f} req/s  "
                            f"{used / args.requests * 1e3:6.2f} ms CPU/request")
                    if name == "api" and not args.queue_only:
                        # every email of this pair in the Maildir before the next run starts, its CPU counted
                        expected = (pair + 1) * args.requests
                        while (sent := maildir_count(maildir)) < expected:
                            if time.monotonic() > started + 600:
                                raise SystemExit(f"pair {pair + 1}: only {sent:,} of {expected:,} emails after 600 s")
                            time.sleep(0.02)
                        done = time.monotonic()
                        total = cpu_seconds(proc.pid) - cpu
                        lag = done - started - elapsed
                        mail_rows.append((total / args.requests, lag, args.requests / (done - started)))
                        line += (f"  {total / args.requests * 1e3:6.2f} ms CPU/create with its email, the last email "
                                 f"{lag:4.1f} s after the last answer ({args.requests / (done - started):,.0f} emails/s)")
                    print(line, flush=True)
                    loads.append(os.getloadavg()[0])
        finally:
            for proc in (api, ref):
                proc.terminate()
                proc.wait(30)
        pending = store.scalar("SELECT count(*) FROM subscriptions WHERE status = 'pending'")
        store.close()
    for name, values in rows.items():
        rates = [r for r, _ in values]
        cpus = [c for _, c in values]
        print(f"{name:<9} median {statistics.median(rates):7,.0f}/s  min {min(rates):7,.0f}/s  "
              f"CPU {statistics.median(cpus) * 1e3:.2f} ms/request (median)")
    if mail_rows:
        print(f"with the emails: CPU {statistics.median(c for c, _, _ in mail_rows) * 1e3:.2f} ms/create (median), "
              f"the last email {statistics.median(lag for _, lag, _ in mail_rows):.1f} s after the last answer "
              f"(median), {statistics.median(r for _, _, r in mail_rows):,.0f} emails/s from first create to last email")
    expected = args.pairs * args.requests
    print(f"{pending:,} pending subscriptions; {sent:,} of {expected:,} confirmation emails in the Maildir"
          + (" (queued for `syndicate send`)" if args.queue_only else ""))
    print(f"load average (1 min) {min(loads):.2f} to {max(loads):.2f} during the run (2 cores shared)")
    print("target: >= 500 creates/s")


if __name__ == "__main__":
    main()
