"""`syndicate fetch` over many sources: a first round, then a round where everything answers 304.

    .venv/bin/python benchmarks/fetch.py [--feeds 200] [--pages 200] [--rounds 3]

A separate process serves, on 127.0.0.1, ``--feeds`` RSS feeds (20 items,
~60 KB each) and ``--pages`` news pages (the seed page, ~13 KB, each with its
own title), with ETags; a few of each are slow (2 s) or fail (500). Then, in
a fresh store each round, it runs the fetch in this process and prints:

- round 1 (everything new): sources/s, wall time, and CPU ms per source for
  feeds and pages apart (pages include trafilatura's extraction);
- round 2 (everything unchanged): every source answers 304; wall time
  (target: under 5 s for 400 sources) and CPU ms per source;
- beside round 2, the reference: a bare httpx loop (one ``AsyncClient``, the
  same 16 requests in flight) sending the same conditional GETs with the same
  ETags, so the figure says what syndicate adds to the HTTP it cannot avoid.
  The two alternate which goes first, one pair per round.

Figures are the median and min over ``--rounds``, with the load average, so
a busy machine shows itself. The server's own CPU is reported beside them.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syndicate.config import Secret, Settings  # noqa: E402
from syndicate.models import utcnow  # noqa: E402
from syndicate.sources import add_source, run_fetch  # noqa: E402
from syndicate.store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

SERVER = r'''
import asyncio, hashlib, sys, uvicorn
from pathlib import Path
seed = Path(sys.argv[2]).read_text(encoding="utf-8")
SLOW, FAIL = {7, 77, 177}, {13, 113}

def feed(n):
    items = "".join(
        f"<item><guid>f{n}-{i}</guid><title>Tin {n}.{i}: Hải Phòng đẩy mạnh kết nối công nghệ</title>"
        f"<link>https://news.example.org/f{n}/{i}</link><pubDate>Fri, 20 Nov 2026 08:00:00 +0700</pubDate>"
        f"<description><![CDATA[<p>{'Nội dung bài viết dài, có dấu tiếng Việt. ' * 60}</p>]]></description></item>"
        for i in range(20))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Nguồn {n}</title>'
            f"<link>https://news.example.org/</link><description>x</description>{items}</channel></rss>").encode()

def page(n):
    return seed.replace("Tìm kiếm cơ hội", f"Bài {n}: Tìm kiếm cơ hội").encode()

BODIES = {}
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    kind, _, num = path.strip("/").partition("/")
    n = int(num or 0)
    if n in FAIL:
        await send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"boom"})
        return
    if n in SLOW:
        await asyncio.sleep(2)
    body = BODIES.get(path)
    if body is None:
        body = BODIES[path] = feed(n) if kind == "feed" else page(n)
    etag = b'"' + hashlib.sha256(body).hexdigest()[:16].encode() + b'"'
    if dict(scope["headers"]).get(b"if-none-match") == etag:
        await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", etag)]})
        await send({"type": "http.response.body", "body": b""})
        return
    ctype = b"application/rss+xml" if kind == "feed" else b"text/html; charset=utf-8"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", ctype), (b"etag", etag), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", http="h11")
'''


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CONCURRENCY = 16


async def _bare_httpx(requests: list[tuple[str, str]]) -> int:
    """The reference: the same conditional GETs from one plain httpx client; how many answered 304."""
    import asyncio

    import httpx

    sem = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=20.0) as client:
        async def one(url: str, etag: str) -> int:
            async with sem:
                response = await client.get(url, headers={"If-None-Match": etag} if etag else {})
                return response.status_code

        return sum(s == 304 for s in await asyncio.gather(*(one(u, e) for u, e in requests)))


def reference_round(requests: list[tuple[str, str]], server_pid: int) -> tuple[float, float, float, int]:
    import asyncio

    c0, s0, t0 = cpu(), server_cpu(server_pid), time.perf_counter()
    n304 = asyncio.run(_bare_httpx(requests))
    return time.perf_counter() - t0, cpu() - c0, server_cpu(server_pid) - s0, n304


def one_round(base: str, feeds: int, pages: int, tmp: Path, i: int, server_pid: int) -> dict[str, float]:
    db = tmp / f"round{i}.db"
    settings = Settings(db=str(db), secret_key=Secret("b" * 40), fetch_allow_private=True, fetch_timeout=20.0,
                        feeds_out=str(tmp / f"site{i}"))
    store = open_store(db)
    now = utcnow()
    out: dict[str, float] = {}
    try:
        for kind, count in (("feed", feeds), ("page", pages)):
            for n in range(count):
                add_source(store, f"{base}/{kind}/{n}", kind=kind, every="30m", now=now)
        results = {}

        def timed(label: str, at: datetime) -> None:
            c0, s0, t0 = cpu(), server_cpu(server_pid), time.perf_counter()
            run = run_fetch(store, settings, now=at, concurrency=CONCURRENCY, publish=False)
            wall = time.perf_counter() - t0
            results[label] = (wall, cpu() - c0, server_cpu(server_pid) - s0, run)

        timed("first", now)
        due = store.due_sources(now + timedelta(hours=1))  # what the second round will ask, with its ETags
        requests = [(s.url, s.etag) for s in due]
        if i % 2:  # alternate which goes first
            timed("again", now + timedelta(hours=1))
            ref = reference_round(requests, server_pid)
        else:
            ref = reference_round(requests, server_pid)
            timed("again", now + timedelta(hours=1))
        out["ref_wall"], out["ref_cpu_ms"] = ref[0], ref[1] * 1000 / max(1, len(requests))
        out["ref_304"], out["ref_server_cpu_ms"] = ref[3], ref[2] * 1000 / max(1, len(requests))
        out["load"] = os.getloadavg()[0]
        wall, used, srv, run = results["first"]
        out["first_wall"], out["first_cpu_ms"] = wall, used * 1000 / max(1, feeds + pages)
        out["first_rate"] = (feeds + pages) / wall
        out["first_new"] = sum(r.new for r in run.results)
        out["first_failed"] = len(run.failed)
        out["server_cpu_ms"] = srv * 1000 / max(1, feeds + pages)
        wall, used, srv, run = results["again"]
        out["again_wall"], out["again_cpu_ms"] = wall, used * 1000 / max(1, len(run.results))
        out["again_304"] = sum(r.not_modified for r in run.results)
        out["again_server_cpu_ms"] = srv * 1000 / max(1, len(run.results))
        out["again_sources"] = len(run.results)
    finally:
        store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(ROOT / "data/pages/hai-phong-khoi-nghiep.html")])
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/feed/0", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("the benchmark server did not start") from None
                time.sleep(0.05)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.rounds):
                rows.append(one_round(base, args.feeds, args.pages, Path(tmp), i, server.pid))
    finally:
        server.terminate()
        server.wait(60)

    def fig(key: str, fmt: str = "{:.2f}") -> str:
        values = [r[key] for r in rows]
        return f"median {fmt.format(statistics.median(values))}, min {fmt.format(min(values))}"

    def fig_ratio(key: str, ref: str) -> str:
        ratios = [r[key] / r[ref] for r in rows]
        return f"median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x"

    n = args.feeds + args.pages
    print(f"{args.feeds} feed + {args.pages} page sources on 127.0.0.1 (5 slow 2 s, 4 failing), {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"first round: {rows[0]['first_new']:.0f} new articles, {rows[0]['first_failed']:.0f} failed sources")
    print(f"  wall s      {fig('first_wall')}")
    print(f"  sources/s   {fig('first_rate', '{:.0f}')}")
    print(f"  CPU ms/src  {fig('first_cpu_ms', '{:.1f}')}  (server {fig('server_cpu_ms', '{:.1f}')})")
    print(f"second round: {rows[0]['again_304']:.0f} of {rows[0]['again_sources']:.0f} due sources answered 304")
    print(f"  wall s      {fig('again_wall')}  (target < 5 s for {n})")
    print(f"  CPU ms/src  {fig('again_cpu_ms', '{:.2f}')}  (server {fig('again_server_cpu_ms', '{:.2f}')})")
    print(f"reference, bare httpx, same {rows[0]['again_sources']:.0f} conditional GETs "
          f"({rows[0]['ref_304']:.0f} answered 304), {CONCURRENCY} in flight, interleaved:")
    print(f"  wall s      {fig('ref_wall')}")
    print(f"  CPU ms/src  {fig('ref_cpu_ms', '{:.2f}')}  (server {fig('ref_server_cpu_ms', '{:.2f}')})")
    print(f"  ratio       wall {fig_ratio('again_wall', 'ref_wall')}, CPU {fig_ratio('again_cpu_ms', 'ref_cpu_ms')}")
    loads = ", ".join(f"{r['load']:.1f}" for r in rows)
    print(f"load average after each round: {loads}")


if __name__ == "__main__":
    main()
