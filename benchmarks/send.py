"""``syndicate send`` against the raw aiosmtplib ceiling, interleaved, DKIM on.

    .venv/bin/python benchmarks/send.py                         # 4,000 subscriptions, a couple of minutes
    .venv/bin/python benchmarks/send.py --subs 20000 --pairs 5  # the issue's 20,000-message figure
    .venv/bin/python benchmarks/send.py --dkim ed25519 --workers 1 2 --keep /tmp/bench-send
    .venv/bin/python benchmarks/send.py --loop asyncio          # send on asyncio's loop, not uvloop

Builds a store with N active subscriptions over 3 lists and 8 topic sets and
5 reader names, 60 articles and a DKIM key. The message mix is the real one:
``preview`` renders the exact bytes for one subscriber of each (list, topic
set, name) combination, 120 messages in the proportions the store holds.

Then, for each worker count, ``--pairs`` times in turn:

(a) the ceiling: a raw aiosmtplib pool (``pool`` connections per process,
    one process per worker) sending those pre-built bytes, N messages, on
    the event loop send uses (``--loop``, default uvloop): the ratio
    compares like with like. With uvloop, the same ceiling on asyncio's
    loop runs too (a'), for the ratio against plain aiosmtplib;
(b) ``python -m syndicate send --at T --json`` on a fresh copy of the store:
    planning, rendering once per group, personalising, MIME, DKIM, the
    outbox, the journal, the hand-off.

Both go to the same minimal counting sink (``benchmarks/_smtp.py``, plain
asyncio in its own process). CPU is each child's own rusage (user + system,
its workers included), so "CPU ms per message" is the whole process's cost,
start-up and planning included. The sink's CPU is read too: a run in which
the sink used most of a core is sink-bound, and its msg/s ratio is not
printed as a speed-up (only the CPU ratio, which the sink cannot inflate).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402

from benchmarks._smtp import RunResult, Sink, run_ceiling, run_child  # noqa: E402
from syndicate.config import Secret, Settings  # noqa: E402
from syndicate.models import Article, NewsList  # noqa: E402
from syndicate.store import open_store  # noqa: E402
from syndicate.store.subscribers import ImportRow  # noqa: E402
from syndicate.subscribers import address_hash  # noqa: E402

AT = "2026-11-24T08:00:00+07:00"  # 07:00 digests in Ho Chi Minh City are due
T0 = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)
CATEGORIES = ["thoi-su", "kinh-te", "the-thao", "cong-nghe"]
CATEGORY_NAMES = ["Thời sự", "Kinh tế", "Thể thao", "Công nghệ"]
CATEGORY_SETS: list[list[str]] = [
    [], ["thoi-su"], ["kinh-te"], ["the-thao"], ["cong-nghe"],
    ["thoi-su", "kinh-te"], ["the-thao", "cong-nghe"], ["thoi-su", "cong-nghe"],
]
NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Minh Chi", "Emma Schmidt", ""]
SINK_BOUND = 0.85  # a sink using this share of a core or more is the bottleneck


def build(db: Path, subs: int) -> None:
    store = open_store(db)
    lists = [
        store.create_list(NewsList(slug=f"tin-{i}", name=name, language=lang, sender_address="tin@news.example.org",
                                   sender_name="Báo Sài Gòn"))
        for i, (name, lang) in enumerate([("Tin sáng", "vi"), ("Morning brief", "en"), ("Tin thể thao", "vi")])
    ]
    store.upsert_articles([
        Article(guid=f"bench-{i}", title=f"Tin số {i}: khởi nghiệp và đời sống ở Thành phố Hồ Chí Minh",
                slug=f"tin-so-{i}", published=T0 + timedelta(minutes=20 * i), category=CATEGORY_NAMES[i % 4],
                summary="Tóm tắt: " + "những điều đáng chú ý trong ngày, kể lại ngắn gọn cho người đọc bận rộn. " * 3,
                image=f"https://news.example.org/img/{i}.jpg", image_alt=f"Ảnh minh hoạ tin {i}")
        for i in range(60)
    ])
    baseline = store.import_baseline()
    batch: dict[int, list[ImportRow]] = {0: [], 1: [], 2: []}
    for i in range(subs):
        email = f"user{i}@example.org"
        batch[i % 3].append(ImportRow(line=i + 2, email=email, email_hash=address_hash(email), name=NAMES[i % 5],
                                      timezone="Asia/Ho_Chi_Minh", status="active",
                                      categories=CATEGORY_SETS[(i // 3) % 8] or None))
        if len(batch[i % 3]) >= 5000 or i == subs - 1:
            for k, rows in batch.items():
                if rows:
                    store.import_batch(lists[k], rows, source="benchmark", actor="",
                                       resubscribe=False, baseline=baseline, now=T0 - timedelta(days=1))
                    batch[k] = []
    store.close()


def message_mix(db: Path, settings: Settings, subs: int) -> list[bytes]:
    """The exact bytes ``send`` builds for one subscriber of each (list, topic set, name) combination."""
    from syndicate.sender import preview

    store = open_store(db)
    try:
        at = datetime.fromisoformat(AT)
        return [preview(store, settings, f"user{i}@example.org", f"tin-{i % 3}", at).eml for i in range(min(subs, 120))]
    finally:
        store.close()


def rsa_sign_ms() -> tuple[float | None, float]:
    """RSA-2048 sign, ms of CPU each: ``openssl speed`` (None when openssl is absent) and ``cryptography``'s."""
    import re
    import subprocess

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    openssl = None
    if shutil.which("openssl"):
        out = subprocess.run(["openssl", "speed", "-seconds", "2", "rsa2048"], capture_output=True, text=True,
                             timeout=300).stdout
        m = re.search(r"^rsa 2048 bits\s+([0-9.]+)s", out, re.M)
        openssl = float(m.group(1)) * 1000 if m else None
    key = rsa.generate_private_key(65537, 2048)
    data = b"x" * 900
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    t0 = time.process_time()
    for _ in range(300):
        key.sign(data, pkcs1, sha256)
    return openssl, (time.process_time() - t0) / 300 * 1000


@dataclass
class Pair:
    ceiling: RunResult
    send: RunResult
    planning: float
    asyncio_ceiling: RunResult | None = None


def send_once(pristine: Path, work: Path, env: dict[str, str], workers: int, sink: Sink,
              expected: int, has_workers: bool = True) -> tuple[RunResult, float]:
    db = work / "run.db"
    for suffix in ("", "-wal", "-shm", ".send.lock"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(f"{db}.journal", ignore_errors=True)
    shutil.copyfile(pristine, db)
    argv = [sys.executable, "-m", "syndicate", "send", "--at", AT, "--json"]
    if has_workers:  # always say it: the default is the number of cores
        argv += ["--workers", str(workers)]
    before = sink.stats()
    out, wall, cpu, rss = run_child(argv, env={**env, "SYNDICATE_DB": str(db), "SYNDICATE_SMTP_PORT": str(sink.port)},
                                    cwd=str(work))
    after = sink.stats()
    report = json.loads(out)
    if report["sent"] != expected:
        raise SystemExit(f"send sent {report['sent']} of {expected} (failed {report['failed']}, retry later "
                         f"{report['retry_later']}, unknown {report.get('unknown')}): {report['errors'][:3]}")
    if after.count - before.count != report["sent"]:
        raise SystemExit(f"the sink counted {after.count - before.count}, send reported {report['sent']}")
    result = RunResult(report["sent"], wall, cpu, rss, after.cpu - before.cpu, report["sending_seconds"])
    return result, float(report["planning_seconds"])


def send_supports_workers(env: dict[str, str]) -> bool:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "syndicate", "send", "--help"], env=env, capture_output=True,
                         text=True, timeout=120).stdout
    return "--workers" in out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subs", type=int, default=4000, help="subscriptions = messages per run (default 4,000)")
    ap.add_argument("--pool", type=int, default=4, help="SMTP connections per process (default 4)")
    ap.add_argument("--pairs", type=int, default=3, help="ceiling/send pairs per worker count (default 3)")
    ap.add_argument("--workers", type=int, nargs="+", default=None,
                    help=f"worker counts to measure (default 1 and {os.cpu_count()})")
    ap.add_argument("--dkim", choices=["rsa", "ed25519", "none"], default="rsa")
    ap.add_argument("--keep", help="work in this directory (kept afterwards)")
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                    help="event loop of send ([send] loop) and of its ceiling (default uvloop)")
    ap.add_argument("--no-fsync", action="store_true", help="turn the journal's fsync off ([send] fsync = false), to see its cost")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="syndicate-send-"))
    work.mkdir(parents=True, exist_ok=True)
    pristine = work / "pristine.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{pristine}{suffix}").unlink(missing_ok=True)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    build(pristine, args.subs)
    print(f"built {args.subs:,} subscriptions over 3 lists, 8 topic sets, 5 names in {time.perf_counter() - t0:.1f} s")

    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(SYNDICATE_SECRET_KEY="bench-secret-0123456789-abcdefghijklmn", SYNDICATE_BASE_URL="https://news.example.org",
               SYNDICATE_MAIL_SENDER_ADDRESS="tin@news.example.org", SYNDICATE_SMTP_HOST="127.0.0.1",
               SYNDICATE_SMTP_POOL_SIZE=str(args.pool), PYTHONPATH=str(ROOT))
    if args.no_fsync:
        env["SYNDICATE_SEND_FSYNC"] = "false"
    env["SYNDICATE_SEND_LOOP"] = args.loop
    dkim_settings: dict[str, str] = {}
    if args.dkim != "none":
        key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = (
            rsa.generate_private_key(65537, 2048) if args.dkim == "rsa" else ed25519.Ed25519PrivateKey.generate())
        (work / "dkim.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        env.update(SYNDICATE_DKIM_DOMAIN="news.example.org", SYNDICATE_DKIM_SELECTOR="bench",
                   SYNDICATE_DKIM_KEY_FILE=str(work / "dkim.pem"))
        dkim_settings = dict(dkim_domain="news.example.org", dkim_selector="bench",
                             dkim_key_file=str(work / "dkim.pem"))
    settings = Settings(db=str(pristine), secret_key=Secret("bench-secret-0123456789-abcdefghijklmn"), base_url="https://news.example.org",
                        mail_sender_address="tin@news.example.org", source="benchmark", **dkim_settings)
    mix = message_mix(pristine, settings, args.subs)
    sizes = sorted(len(m) for m in mix)
    workers = args.workers or sorted({1, os.cpu_count() or 1})
    has_workers = send_supports_workers(env)
    if any(w != 1 for w in workers) and not has_workers:
        print("note: this `syndicate send` has no --workers; measuring 1 worker only")
        workers = [1]
    print(f"message mix: {len(mix)} distinct messages, {min(sizes):,} to {max(sizes):,} bytes "
          f"(median {statistics.median(sizes):,.0f}); DKIM {args.dkim}; {os.cpu_count()} CPUs; "
          f"pool {args.pool} per process; event loop {args.loop}; load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")

    rows: list[tuple[int, list[Pair]]] = []
    with Sink() as sink:
        run_ceiling(sink, args.pool, mix, 300)  # warm up the sink and the page cache
        for w in workers:
            pairs: list[Pair] = []
            for i in range(args.pairs):
                a = run_ceiling(sink, args.pool, mix, args.subs, procs=w) if args.loop != "asyncio" else None
                c = run_ceiling(sink, args.pool, mix, args.subs, procs=w, loop=args.loop)
                s, planning = send_once(pristine, work, env, w, sink, args.subs, has_workers)
                pairs.append(Pair(c, s, planning, a))
                also = f"asyncio ceiling {a.cpu_ms:.3f} ms CPU/msg | " if a else ""
                print(f"  workers {w} pair {i + 1}: {also}ceiling {c.rate:,.0f} msg/s {c.cpu_ms:.3f} ms CPU/msg "
                      f"(sink {c.sink_cpu / c.wall:.0%} of a core) | send {s.rate:,.0f} msg/s {s.cpu_ms:.3f} ms CPU/msg "
                      f"(sink {s.sink_cpu / s.wall:.0%}), planning {planning:.2f} s, peak RSS {s.maxrss_mb:.0f} MB")
            rows.append((w, pairs))
    load1 = os.getloadavg()
    openssl_ms, py_ms = rsa_sign_ms() if args.dkim == "rsa" else (None, 0.0)

    print()
    print(f"{args.subs:,} messages per run, DKIM {args.dkim}, pool {args.pool} per process, loop {args.loop}, "
          f"load average {load0[0]:.2f} before, {load1[0]:.2f} after")
    for w, pairs in rows:
        rate_ratio = [p.send.rate / p.ceiling.rate for p in pairs]
        cpu_ratio = [p.send.cpu_ms / p.ceiling.cpu_ms for p in pairs]
        sink_bound = any(max(p.ceiling.sink_cpu / p.ceiling.wall, p.send.sink_cpu / p.send.wall) >= SINK_BOUND
                         for p in pairs)
        print(f"workers {w}:")
        print(f"  ceiling (raw aiosmtplib, {args.loop}): {statistics.median(p.ceiling.rate for p in pairs):,.0f} msg/s, "
              f"{statistics.median(p.ceiling.cpu_ms for p in pairs):.3f} ms CPU/msg (median of {len(pairs)})")
        print(f"  syndicate send:           {statistics.median(p.send.rate for p in pairs):,.0f} msg/s, "
              f"{statistics.median(p.send.cpu_ms for p in pairs):.3f} ms CPU/msg, "
              f"planning {statistics.median(p.planning for p in pairs):.2f} s, "
              f"peak RSS {max(p.send.maxrss_mb for p in pairs):.0f} MB")
        print(f"  CPU per message, send / ceiling: median {statistics.median(cpu_ratio):.2f}x, "
              f"best {min(cpu_ratio):.2f}x, worst {max(cpu_ratio):.2f}x (target at most 1.3x)")
        plain = [p for p in pairs if p.asyncio_ceiling is not None]
        if plain:
            vs_asyncio = [p.send.cpu_ms / p.asyncio_ceiling.cpu_ms for p in plain if p.asyncio_ceiling]
            print(f"  ceiling on asyncio's loop: {statistics.median(p.asyncio_ceiling.cpu_ms for p in plain if p.asyncio_ceiling):.3f}"
                  f" ms CPU/msg; send / that ceiling: median {statistics.median(vs_asyncio):.2f}x, "
                  f"best {min(vs_asyncio):.2f}x, worst {max(vs_asyncio):.2f}x")
        if sink_bound:
            print(f"  msg/s ratio not reported: the sink used {SINK_BOUND:.0%}+ of a core in some run (sink-bound)")
        else:
            print(f"  msg/s, send / ceiling: median {statistics.median(rate_ratio):.0%}, min {min(rate_ratio):.0%}")
        if args.dkim == "rsa":
            ceiling_ms = statistics.median(p.ceiling.cpu_ms for p in pairs)
            sign = openssl_ms or py_ms
            print(f"  RSA-2048 sign, measured now: openssl speed {openssl_ms or float('nan'):.3f} ms, cryptography "
                  f"{py_ms:.3f} ms CPU each; a sender that did nothing but the ceiling's work and one signature "
                  f"would be at ({ceiling_ms:.3f} + {sign:.3f}) / {ceiling_ms:.3f} = {(ceiling_ms + sign) / ceiling_ms:.2f}x")


if __name__ == "__main__":
    main()
