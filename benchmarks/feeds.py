"""Feed rebuild cost after one new article: 1,000 vs 1,000,000 articles in the store.

    .venv/bin/python benchmarks/feeds.py                 # both sizes
    .venv/bin/python benchmarks/feeds.py --sizes 1000    # quick run

For each size it fills a fresh store (articles every ``--interval`` minutes
going back from now, ten categories), publishes once, adds one article and
times (a) rebuilding the site feed and that article's category feed (newest
N, written atomically) and (b) the whole incremental publish
(``publish_changed``: both feeds, index pages and the touched archive
months). (a) must not grow with the store; (b) grows with the size of the
current month, which depends on the publishing rate, not the store size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syndicate.config import Settings  # noqa: E402
from syndicate.feeds import SITE, Scope  # noqa: E402
from syndicate.models import Article  # noqa: E402
from syndicate.publish import build_current, publish_changed, write_if_changed  # noqa: E402
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


def rebuild_feeds(store: Store, settings: Settings, out: Path, slug: str, now: datetime) -> None:
    """(a): the site feed and one category feed, all formats, written if changed."""
    for scope in (SITE, Scope.category(slug, slug)):
        docs, _items = build_current(store, settings, scope, now)
        for doc in docs:
            write_if_changed(out, doc.path, doc.body)


def run(n: int, interval: timedelta, repeats: int, workdir: Path) -> dict[str, float]:
    settings = Settings(db=str(workdir / f"bench-{n}.db"), base_url="https://news.example.org", feeds_out=str(workdir / f"site-{n}"))
    store = open_store(settings.db)
    now = datetime.now(UTC).replace(microsecond=0)
    print(f"{n:,} articles: filling the store ...", file=sys.stderr)
    filled = fill(store, n, interval, now)
    out = Path(settings.feeds_out)
    month_size = store.count_articles_since(now.replace(day=1, hour=0, minute=0, second=0) - timedelta(seconds=1))
    feeds_times, publish_times = [], []
    for r in range(repeats + 1):  # the first round warms the page cache and writes the archive files
        moment = now + timedelta(seconds=r + 1)  # the clock the feeds are built at: the new article is public
        new = article(n + r, moment)
        result = store.upsert_articles([new], now=moment)
        slug = new.category_slug
        t = time.perf_counter()
        rebuild_feeds(store, settings, out, slug, moment)
        feeds_time = time.perf_counter() - t
        t = time.perf_counter()
        publish_changed(store, settings, out, result.changed_categories, guids=result.inserted, ping=False,
                        now=moment)
        publish_time = time.perf_counter() - t
        if r:
            feeds_times.append(feeds_time)
            publish_times.append(publish_time)
    store.close()
    return {
        "fill_s": filled,
        "feeds_ms": statistics.median(feeds_times) * 1000,
        "publish_ms": statistics.median(publish_times) * 1000,
        "month_articles": float(month_size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--interval", type=float, default=5.0, help="minutes between articles [5]")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dir", help="keep the stores here instead of a temp dir")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.dir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = [(n, run(n, timedelta(minutes=args.interval), args.repeats, workdir)) for n in sizes]
    print(f"{'articles':>10}  {'fill':>8}  {'site+category feeds':>20}  {'publish_changed':>16}  {'this month':>10}")
    for n, r in rows:
        print(f"{n:>10,}  {r['fill_s']:>7.1f}s  {r['feeds_ms']:>18.1f}ms  {r['publish_ms']:>14.1f}ms  {int(r['month_articles']):>10,}")


if __name__ == "__main__":
    main()
