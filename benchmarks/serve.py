"""`syndicate serve` against nginx serving the same built site/, in the same run (wrk, keep-alive).

    .venv/bin/python benchmarks/serve.py [--seconds 5] [--pairs 3] [--connections 8] [--articles 1000]

Builds a store of ``--articles`` articles and the site/ that ``syndicate feed
build`` writes from it, then starts ``syndicate serve`` (as the CLI runs it:
httptools, uvloop, Common Log Format access log to a file) and nginx
(deploy/nginx.conf's feed locations on a loopback port, one worker, access
log to a file). wrk (``apt-get install wrk``) drives ``--connections``
keep-alive connections over /rss.xml, /atom.xml and /feed.json in turn, for
304s (If-None-Match with each server's own ETag) and for 200s (gzip), each
server ``--pairs`` times, interleaved. For each: requests/s, p50/p99
latency, CPU time per request of the server's processes; and serve's ratio
to nginx, the median and the worst (min) pair. Target: >= 0.25x nginx on 304s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syndicate.config import Settings  # noqa: E402
from syndicate.models import Article  # noqa: E402
from syndicate.publish import publish_all  # noqa: E402
from syndicate.store import open_store  # noqa: E402

PATHS = ("/rss.xml", "/atom.xml", "/feed.json")
SECRET = "benchmark-secret-key-0123456789-abcdefghij"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_config(tmp: Path, site: Path, port: int, app_port: int) -> Path:
    """deploy/nginx.conf on a loopback port: no TLS, one worker, temp paths and logs under ``tmp``."""
    server = (ROOT / "deploy" / "nginx.conf").read_text()
    server = re.sub(r"server \{\n    listen 80;.*?\n\}\n", "", server, count=1, flags=re.S)
    server = re.sub(r"^\s*(ssl_\w+|http2).*\n", "", server, flags=re.M)
    server = server.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};").replace("listen [::]:443 ssl;\n", "")
    server = server.replace("127.0.0.1:8080", f"127.0.0.1:{app_port}").replace("/var/lib/syndicate/site", str(site))
    conf = tmp / "nginx.conf"
    conf.write_text(
        "user root;\ndaemon off;\nworker_processes 1;\n"
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/nginx-error.log;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n access_log {tmp}/nginx-access.log;\n client_body_temp_path {tmp}/body;\n"
        f" proxy_temp_path {tmp}/proxy;\n fastcgi_temp_path {tmp}/fcgi;\n uwsgi_temp_path {tmp}/uwsgi;\n"
        f" scgi_temp_path {tmp}/scgi;\n sendfile on;\n tcp_nopush on;\n default_type application/octet-stream;\n"
        f"{server}\n}}\n"
    )
    return conf


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (nginx's worker), from /proc."""
    total = 0.0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.05)


def wrk_script(tmp: Path, name: str, base: str, conditional: bool) -> Path:
    """A wrk Lua script cycling over PATHS, each with that server's own ETag when ``conditional``."""
    lines = ["local reqs = {}"]
    with httpx.Client(base_url=base, timeout=30) as client:
        for i, path in enumerate(PATHS, 1):
            first = client.get(path, headers={"accept-encoding": "gzip"})
            assert first.status_code == 200, (name, path, first.status_code)
            host = base.split("//", 1)[1]
            headers = f'["Host"] = "{host}", ["Accept-Encoding"] = "gzip"'  # wrk.format sends no Host of its own
            if conditional:
                etag = first.headers["etag"]
                again = client.get(path, headers={"accept-encoding": "gzip", "if-none-match": etag})
                assert again.status_code == 304, (name, path, again.status_code)
                headers += ', ["If-None-Match"] = ' + '"' + etag.replace('"', '\\"') + '"'
            lines.append(f'reqs[{i}] = wrk.format("GET", "{path}", {{{headers}}})')
    lines += ["local i = 0", "request = function()", "  i = i % #reqs + 1", "  return reqs[i]", "end"]
    script = tmp / f"{name}-{'304' if conditional else '200'}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU per request
    errors: int


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert match, text
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(base: str, script: Path, seconds: int, connections: int, pid: int) -> Run:
    before = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base + "/"],
        capture_output=True, text=True, timeout=seconds + 120, check=True,
    ).stdout
    cpu = cpu_seconds(pid) - before
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    sock = re.search(r"Socket errors: .*", out)
    if sock:
        print(f"  wrk: {sock.group(0)}", file=sys.stderr)
    return Run(rps, p50, p99, cpu / max(total, 1) * 1e6, errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--articles", type=int, default=1000)
    args = parser.parse_args()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None or shutil.which("wrk") is None:
        raise SystemExit("needs nginx and wrk: apt-get install -y nginx wrk")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        db, site = tmp / "serve.db", tmp / "site"
        settings = Settings(db=str(db), base_url="https://news.example.org", feeds_out=str(site))
        store = open_store(str(db))
        now = datetime.now(UTC).replace(microsecond=0)
        store.upsert_articles(
            Article(guid=f"s:{i}", title=f"Tin số {i}", slug=f"tin-{i}", published=now - timedelta(hours=i),
                    body_html="<p>Nội dung bài viết.</p>" * 20, category=["Kinh tế", "Xã hội"][i % 2])
            for i in range(args.articles)
        )
        publish_all(store, settings, site, ping=False)
        store.close()
        serve_port, nginx_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
        env.update(SYNDICATE_DB=str(db), SYNDICATE_SECRET_KEY=SECRET, SYNDICATE_BASE_URL=settings.base_url)
        serve = subprocess.Popen(
            [sys.executable, "-c", "from syndicate.cli import main; main()", "serve", "--port", str(serve_port),
             "--access-log-file", str(tmp / "serve-access.log")],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        conf = nginx_config(tmp, site, nginx_port, serve_port)
        front = subprocess.Popen([nginx, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(serve_port, serve, "syndicate serve")
            wait_listening(nginx_port, front, "nginx")
            servers = {"serve": (f"http://127.0.0.1:{serve_port}", serve.pid),
                       "nginx": (f"http://127.0.0.1:{nginx_port}", front.pid)}
            results: dict[tuple[str, str], list[Run]] = {}
            for mode in ("304", "200"):
                scripts = {n: wrk_script(tmp, n, base, mode == "304") for n, (base, _) in servers.items()}
                for pair in range(args.pairs):
                    order = ["nginx", "serve"] if pair % 2 == 0 else ["serve", "nginx"]
                    for n in order:
                        base, pid = servers[n]
                        run = run_wrk(base, scripts[n], args.seconds, args.connections, pid)
                        results.setdefault((mode, n), []).append(run)
                        print(f"  {mode} {n:5} pair {pair + 1}: {run.rps:9,.0f} req/s  p50 {run.p50_ms:.2f} ms  "
                              f"p99 {run.p99_ms:.2f} ms  {run.cpu_us:.0f} µs CPU/req", file=sys.stderr)
        finally:
            for proc in (serve, front):
                proc.terminate()
                proc.communicate(timeout=60)
    print(f"wrk -t2 -c{args.connections}, {args.seconds:g} s per run, {args.pairs} interleaved pairs, "
          f"{', '.join(PATHS)} in turn, {args.articles:,} articles, {os.cpu_count()} CPUs; "
          "both servers write an access log; nginx: 1 worker")
    print(f"{'':4} {'server':6} {'req/s (median)':>15} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/req':>11} {'non-2xx/3xx':>12}")
    for mode in ("304", "200"):
        for n in ("nginx", "serve"):
            runs = results[(mode, n)]
            print(f"{mode:4} {n:6} {statistics.median(r.rps for r in runs):15,.0f} "
                  f"{statistics.median(r.p50_ms for r in runs):7.2f} {statistics.median(r.p99_ms for r in runs):7.2f} "
                  f"{statistics.median(r.cpu_us for r in runs):11.0f} {sum(r.errors for r in runs):12}")
        ratios = [s.rps / g.rps for s, g in zip(results[(mode, "serve")], results[(mode, "nginx")], strict=True)]
        target = " (target >= 0.25x)" if mode == "304" else ""
        print(f"{mode:4} serve/nginx: median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x{target}")


if __name__ == "__main__":
    main()
