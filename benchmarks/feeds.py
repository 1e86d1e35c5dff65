"""Feed build cost: the full `feed build`, and the incremental publish after one new article.

    .venv/bin/python benchmarks/feeds.py                      # 1,000 and 100,000 articles
    .venv/bin/python benchmarks/feeds.py --sizes 1000,20000   # quicker

For each size it fills a fresh store (articles every ``--interval`` minutes
going back from now, ten categories), then:

* full build: ``publish_all`` into an empty directory, in a child process so
  its peak RSS is its own (every feed, every finished month's archive in
  three formats for the site and each category, one page per article), with
  ``--jobs`` processes (default: every core; ``--jobs 1`` is one process).
  Printed: wall time, CPU time of the build process and of its workers
  (``RUSAGE_CHILDREN``) and their sum, CPU per article, and the peak RSS of
  the build process and of its largest worker;
* incremental: adds one article and times ``publish_changed`` (the site and
  the category feeds, index pages, the article's page). The sizes take turns
  round by round (interleaved), so a busy machine slows both alike; the
  median and the minimum of wall and CPU time are printed.

The incremental publish must not grow with the store (target: within 1.5x
between 1,000 and 100,000); the full build of 100,000 articles must stay
under 30 s and 150 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syndicate.config import Settings  # noqa: E402
from syndicate.models import Article  # noqa: E402
from syndicate.publish import publish_all, publish_changed  # noqa: E402
from syndicate.site_build import cores  # noqa: E402
from syndicate.store import Store, open_store  # noqa: E402

CATEGORIES = ["Kinh tế", "Xã hội", "Thể thao", "Giáo dục", "Y tế", "Công nghệ", "Văn hóa", "Du lịch", "Pháp luật", "Môi trường"]
BODY = "<p>Thành phố tiếp tục hỗ trợ doanh nghiệp khởi nghiệp đổi mới sáng tạo, mở rộng thị trường.</p>" * 4


def article(i: int, when: datetime) -> Article:
    return Article(
        guid=f"bench:{i}",
        title=f"Tin số {i}: khởi nghiệp đổi mới sáng tạo",
        slug=f"tin-{i}",
        published=when,
        body_html=BODY,
        body_text="Thành phố tiếp tục hỗ trợ doanh nghiệp.",
        summary="Tóm tắt bài viết.",
        author="Phóng viên",
        category=CATEGORIES[i % len(CATEGORIES)],
    )


def fill(store: Store, n: int, interval: timedelta, now: datetime, batch: int = 25_000) -> float:
    start = time.perf_counter()
    for first in range(0, n, batch):
        store.upsert_articles(article(i, now - interval * (n - i)) for i in range(first, min(n, first + batch)))
        if n >= 100_000:
            print(f"  {min(n, first + batch):,}/{n:,} articles", file=sys.stderr, end="\r")
    if n >= 100_000:
        print(file=sys.stderr)
    return time.perf_counter() - start


def settings_for(db: str, out: str) -> Settings:
    return Settings(db=db, base_url="https://news.example.org", feeds_out=out)


def child_build(db: str, out: str, now: str, jobs: str) -> None:
    """Run in a child process: one full build, its figures as JSON on stdout."""
    settings = settings_for(db, out)
    store = open_store(db)
    wall, cpu = time.perf_counter(), time.process_time()
    report = publish_all(store, settings, out, now=datetime.fromisoformat(now), ping=False, jobs=int(jobs))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    store.close()
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # every worker, waited for (max RSS: the largest)
    print(json.dumps({
        "wall": wall, "cpu": cpu, "cpu_workers": workers.ru_utime + workers.ru_stime,
        "rss_mb": own.ru_maxrss / 1024, "rss_worker_mb": workers.ru_maxrss / 1024,  # KiB on Linux
        "files": len(report.written),
    }))


def full_build(db: str, out: str, now: datetime, jobs: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child-build", db, out, now.isoformat(), str(jobs)],
        check=True, capture_output=True, text=True, timeout=3600,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


class Bench:
    def __init__(self, n: int, interval: timedelta, workdir: Path) -> None:
        self.n = n
        self.settings = settings_for(str(workdir / f"bench-{n}.db"), str(workdir / f"site-{n}"))
        self.store = open_store(self.settings.db)
        self.now = datetime.now(UTC).replace(microsecond=0)
        print(f"{n:,} articles: filling the store ...", file=sys.stderr)
        self.fill_s = fill(self.store, n, interval, self.now)
        self.added = 0
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def round(self, keep: bool) -> None:
        """Add one article and publish what it changed."""
        self.added += 1
        moment = self.now + timedelta(seconds=self.added)  # the clock the feeds are built at: the new article is public
        new = article(self.n + self.added, moment)
        result = self.store.upsert_articles([new], now=moment)
        wall, cpu = time.perf_counter(), time.process_time()
        publish_changed(self.store, self.settings, self.settings.feeds_out, result.changed_categories,
                        guids=result.inserted, ping=False, now=moment)
        if keep:
            self.wall.append(time.perf_counter() - wall)
            self.cpu.append(time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--interval", type=float, default=5.0, help="minutes between articles [5]")
    parser.add_argument("--repeats", type=int, default=15, help="incremental rounds per size [15]")
    parser.add_argument("--jobs", type=int, default=cores(), help=f"processes for the full build [{cores()}]")
    parser.add_argument("--dir", help="keep the stores here instead of a temp dir")
    parser.add_argument("--child-build", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_build:
        child_build(*args.child_build)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.dir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        benches = [Bench(n, timedelta(minutes=args.interval), workdir) for n in sizes]
        builds = {}
        for bench in benches:
            print(f"{bench.n:,} articles: full build ...", file=sys.stderr)
            builds[bench.n] = full_build(bench.settings.db, bench.settings.feeds_out,
                                         bench.now + timedelta(seconds=0.5), args.jobs)
        for r in range(args.repeats + 1):  # round 0 warms the page cache; the sizes take turns
            for bench in benches:
                bench.round(keep=r > 0)
        for bench in benches:
            bench.store.close()
    print(f"full build (feed build into an empty directory, own process, --jobs {args.jobs})")
    print(f"{'articles':>10}  {'fill':>7}  {'wall':>7}  {'cpu':>7}  {'+workers':>8}  {'=total':>7}  {'cpu/article':>11}  "
          f"{'peak RSS':>9}  {'worker':>7}  {'files':>7}")
    for bench in benches:
        b = builds[bench.n]
        total = b["cpu"] + b["cpu_workers"]
        print(f"{bench.n:>10,}  {bench.fill_s:>6.1f}s  {b['wall']:>6.1f}s  {b['cpu']:>6.1f}s  {b['cpu_workers']:>7.1f}s  "
              f"{total:>6.1f}s  {total / bench.n * 1e6:>9.0f}µs  {b['rss_mb']:>6.0f} MB  {b['rss_worker_mb']:>4.0f} MB  "
              f"{int(b['files']):>7,}")
    print(f"incremental publish after one new article ({args.repeats} rounds, sizes interleaved)")
    print(f"{'articles':>10}  {'wall median':>11}  {'wall min':>9}  {'cpu median':>10}  {'cpu min':>8}")
    for bench in benches:
        print(f"{bench.n:>10,}  {statistics.median(bench.wall) * 1000:>9.1f}ms  {min(bench.wall) * 1000:>7.1f}ms  "
              f"{statistics.median(bench.cpu) * 1000:>8.1f}ms  {min(bench.cpu) * 1000:>6.1f}ms")
    if len(benches) > 1:
        small, big = benches[0], benches[-1]
        ratio = statistics.median(big.cpu) / statistics.median(small.cpu)
        print(f"incremental cpu median, {big.n:,} vs {small.n:,}: {ratio:.2f}x (target: within 1.5x)")


if __name__ == "__main__":
    main()
