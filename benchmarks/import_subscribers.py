"""Import N subscribers from a generated CSV and print the rate and peak memory.

    .venv/bin/python benchmarks/import_subscribers.py            # 1,000,000 rows
    .venv/bin/python benchmarks/import_subscribers.py --rows 100000 --keep /tmp/bench

Target (issue 4): 1,000,000 rows in under 60 s and under 200 MB peak RSS.
The file mixes Vietnamese names, a few time zones, internationalised
addresses, in-file duplicates and bad rows, so every path of the import runs.
"""

from __future__ import annotations

import argparse
import csv
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from syndicate.config import Secret, Settings
from syndicate.models import NewsList
from syndicate.store import open_store
from syndicate.subscriber_csv import CsvImport
from syndicate.subscribers import create_list

ZONES = ["Asia/Ho_Chi_Minh", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Minh Chi", "Emma Schmidt", "佐藤 花"]


def generate(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Email Address", "First Name", "Last Name", "TIMEZONE"])
        for i in range(rows):
            if i % 10_000 == 9_999:
                w.writerow([f"broken{i}@", "Bad", "Row", ZONES[0]])  # rejected with its line number
            elif i % 5_000 == 4_999:
                w.writerow([f"user{i - 1}@example.org", "Dup", "", ZONES[0]])  # duplicate in the file
            elif i % 1_000 == 0:
                w.writerow([f"người{i}@ví-dụ.example", NAMES[i % 5], "", ZONES[i % 5]])
            else:
                first, _, last = NAMES[i % 5].partition(" ")
                w.writerow([f"user{i}@example.org", first, last, ZONES[i % 5]])


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", help="work in this directory and keep the files")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="syndicate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path, db_path = work / "subscribers.csv", work / "bench.db"
    db_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    generate(csv_path, args.rows)
    print(f"generated {args.rows:,} rows ({csv_path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    rss_before = peak_rss_mb()
    settings = Settings(db=str(db_path), secret_key=Secret("bench"), source="benchmark")
    store = open_store(db_path)
    create_list(store, NewsList(slug="tin-sang", name="Tin sáng"))
    t0 = time.perf_counter()
    job = CsvImport(store, settings, csv_path, "tin-sang", confirmed=True, errors_path=work / "rejects.csv")
    report = job.run()
    elapsed = time.perf_counter() - t0
    print(report.summary())
    print(f"imported in {elapsed:.1f} s: {report.rows / elapsed:,.0f} rows/s")
    print(f"peak RSS {peak_rss_mb():.0f} MB (before the import: {rss_before:.0f} MB)")
    print(f"active subscriptions: {store.count_subscriptions(1, 'active'):,}")
    store.close()
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
