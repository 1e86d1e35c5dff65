"""What the durability contract costs the sender: the same run with and without the journal's fdatasync.

    .venv/bin/python benchmarks/journal_fsync.py              # 5,000 subscriptions, 3 pairs
    .venv/bin/python benchmarks/journal_fsync.py --subs 20000 --pairs 5

Each trial plans one daily period for N subscriptions in a fresh store (on the
file system of --dir, default the system temp dir) and drains it through the
memory transport, so no sink bounds the rate: what is measured is the sender
itself (render once, personalise, MIME, journal, outbox writes). Trials with
``[send] fsync`` on and off are interleaved; it prints messages per second and
the fdatasync calls per message for each, and the median slowdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syndicate.config import Secret, Settings  # noqa: E402
from syndicate.mailer import MemoryTransport  # noqa: E402
from syndicate.models import Article, NewsList  # noqa: E402
from syndicate.sender import run_send  # noqa: E402
from syndicate.store import open_store  # noqa: E402
from syndicate.subscribers import subscribe  # noqa: E402

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
AT = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def trial(base: Path, subs: int, fsync: bool) -> tuple[float, float]:
    work = Path(tempfile.mkdtemp(dir=base))
    settings = Settings(db=str(work / "s.db"), secret_key=Secret("bench-secret-0123456789"),
                        base_url="https://news.example.org", mail_sender_address="tin@news.example.org",
                        smtp_pool_size=4, send_fsync=fsync, mail_pending_max_age_days=0, source="bench")
    store = open_store(settings.db)
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng"))
    for i in range(subs):
        subscribe(store, settings, f"r{i}@example.org", "tin-sang", confirmed=True, now=T0)
    store.upsert_articles([Article(guid=f"g{i}", title=f"Tin {i}", slug=f"tin-{i}", summary="Tóm tắt. " * 20,
                                   published=T0 + timedelta(minutes=i), category="Xã hội") for i in range(1, 30)])
    calls = [0]
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls[0] += 1
        real(fd)

    os.fdatasync = counting
    try:
        report = run_send(store, settings, MemoryTransport(), now=AT)
    finally:
        os.fdatasync = real
        store.close()
        shutil.rmtree(work)
    assert report.sent == subs, report
    return report.sent / report.sending_seconds, calls[0] / report.sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subs", type=int, default=5000)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the stores and journals live")
    args = ap.parse_args()
    base = Path(args.dir)
    on: list[float] = []
    off: list[float] = []
    for _ in range(args.pairs):
        rate, per = trial(base, args.subs, True)
        on.append(rate)
        print(f"fsync on : {rate:8,.0f} msg/s, {per:.2f} fdatasync per message")
        rate, per = trial(base, args.subs, False)
        off.append(rate)
        print(f"fsync off: {rate:8,.0f} msg/s, {per:.2f} fdatasync per message")
    ratio = statistics.median(a / b for a, b in zip(on, off, strict=True))
    print(f"median on/off: {ratio:.0%} ({args.subs:,} messages per trial, {args.pairs} pairs, "
          f"load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
