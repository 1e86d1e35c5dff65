"""Bulk import speed: 100,000 JSON Lines articles into a fresh store.

Generates Vietnamese-ish articles (~1-2 KB each) into a temporary directory,
imports them with ``syndicate.ingest.import_paths`` and prints the count, the
seconds and the rate. The target is under 60 s on a 2-core machine.

    .venv/bin/python benchmarks/import_articles.py            # 100,000 articles
    .venv/bin/python benchmarks/import_articles.py -n 20000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syndicate.ingest import import_paths
from syndicate.store import open_store

TEXT = (
    "thành phố Hải Phòng công nghệ khởi nghiệp đổi mới sáng tạo doanh nghiệp đầu tư hợp tác quốc tế kinh tế "
    "biển cảng logistics giáo dục học sinh văn hóa lễ hội thể thao bóng đá người dân chính quyền phát triển "
    "bền vững dự án hạ tầng giao thông nông nghiệp sản xuất xuất khẩu thị trường ngân hàng tín dụng y tế bệnh viện "
    "trường học đại học nghiên cứu khoa học chuyển đổi số dữ liệu năng lượng điện gió môi trường du lịch ẩm thực"
)
WORDS = TEXT.split(" ")
CATEGORIES = ["Công nghệ", "Kinh tế", "Văn hóa", "Thể thao", "Giáo dục", "Xã hội", "Du lịch", "Y tế"]


def sentence(rng: random.Random, lo: int = 8, hi: int = 22) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
    return " ".join(words).capitalize() + "."


def generate(path: Path, count: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    start = datetime(2026, 11, 24, tzinfo=UTC)
    size = 0
    with path.open("w", encoding="utf-8") as fh:
        for i in range(count):
            paragraphs = [" ".join(sentence(rng) for _ in range(rng.randint(2, 4))) for _ in range(rng.randint(2, 4))]
            record = {
                "id": f"bench-{i}",
                "title": f"{sentence(rng, 6, 12)[:-1]} {i}",
                "published": (start - timedelta(minutes=7 * i)).isoformat(),
                "category": CATEGORIES[i % len(CATEGORIES)],
                "author": "Phóng viên",
                "tags": rng.sample(WORDS, 3),
                "body_html": "".join(f"<p>{p}</p>" for p in paragraphs),
            }
            line = json.dumps(record, ensure_ascii=False)
            size += len(line.encode("utf-8")) + 1
            fh.write(line + "\n")
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "articles.jsonl"
        t0 = time.perf_counter()
        size = generate(source, args.count)
        print(f"generated {args.count:,} articles ({size / args.count / 1024:.2f} KB each) "
              f"in {time.perf_counter() - t0:.1f} s")
        store = open_store(Path(tmp) / "bench.db")
        profiler = cProfile.Profile() if args.profile else None
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        report = import_paths(store, [source])
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - t0
        count = store.count_articles()
        store.close()
        print(f"imported {count:,} articles in {seconds:.1f} s: {count / seconds:,.0f} articles/s "
              f"({report.summary()})")
        if report.errors:
            print("errors:", report.errors[:5])
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
