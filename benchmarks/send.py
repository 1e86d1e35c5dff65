"""How close a full ``syndicate send`` comes to the SMTP hand-off ceiling.

    .venv/bin/python benchmarks/send.py                      # 100,000 subscriptions
    .venv/bin/python benchmarks/send.py --subs 20000 --pool 4 --keep /tmp/bench-send

Builds a store with N active subscriptions over 3 lists and 8 category sets
(bulk-inserted through the store's import batches), 60 articles, and a DKIM
key; starts an aiosmtpd sink in another process; then measures

(a) the raw ceiling: the SmtpTransport pool pushing pre-built bytes of the
    same size as a real digest to the sink (``benchmarks/_smtp.py``);
(b) a full ``python -m syndicate send --at T --json`` of one daily period,
    DKIM on: planning, rendering once per group, personalising, MIME, DKIM,
    batched outbox writes.

It prints both rates, their ratio (target: at least 85%), planning time and
the send process's peak RSS (target: under 300 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402

from benchmarks._smtp import SinkProcess, ceiling  # noqa: E402
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
                                      timezone="Asia/Ho_Chi_Minh", status="active", categories=CATEGORY_SETS[(i // 3) % 8] or None))
        if len(batch[i % 3]) >= 5000 or i == subs - 1:
            for k, rows in batch.items():
                if rows:
                    store.import_batch(lists[k], rows, source="benchmark", actor="",
                                       resubscribe=False, baseline=baseline, now=T0 - timedelta(days=1))
                    batch[k] = []
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subs", type=int, default=100_000)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--dkim", choices=["rsa", "ed25519"], default="rsa")
    ap.add_argument("--keep", help="work in this directory (kept afterwards)")
    ap.add_argument("--no-fsync", action="store_true",
                    help="[send] fsync = false: no journal fdatasync (to measure what the durability contract costs)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="syndicate-send-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.db"
    for suffix in ("", "-wal", "-shm", ".send.lock"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    t0 = time.perf_counter()
    build(db, args.subs)
    print(f"built {args.subs:,} subscriptions over 3 lists and 8 category sets in {time.perf_counter() - t0:.1f} s")

    if args.dkim == "rsa":
        key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = rsa.generate_private_key(65537, 2048)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    (work / "dkim.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(SYNDICATE_DB=str(db), SYNDICATE_SECRET_KEY="bench-secret-0123456789-abcdefghijklmn", SYNDICATE_BASE_URL="https://news.example.org",
               SYNDICATE_MAIL_SENDER_ADDRESS="tin@news.example.org", SYNDICATE_SMTP_HOST="127.0.0.1",
               SYNDICATE_SMTP_POOL_SIZE=str(args.pool), SYNDICATE_DKIM_DOMAIN="news.example.org",
               SYNDICATE_DKIM_SELECTOR="bench", SYNDICATE_DKIM_KEY_FILE=str(work / "dkim.pem"),
               PYTHONPATH=str(ROOT))
    if args.no_fsync:
        env["SYNDICATE_SEND_FSYNC"] = "false"

    # a real digest, so the ceiling pushes messages of the same size
    from syndicate.sender import preview

    settings = Settings(db=str(db), secret_key=Secret("bench-secret-0123456789-abcdefghijklmn"), base_url="https://news.example.org",
                        mail_sender_address="tin@news.example.org", dkim_domain="news.example.org",
                        dkim_selector="bench", dkim_key_file=str(work / "dkim.pem"), source="benchmark")
    store = open_store(db)
    sample = preview(store, settings, "user0@example.org", "tin-0",
                     datetime.fromisoformat(AT)).eml
    store.close()
    print(f"digest size: {len(sample):,} bytes; {os.cpu_count()} CPUs; pool {args.pool}; DKIM {args.dkim}")

    with SinkProcess() as port:
        ceiling(500, args.pool, port=port, message=sample)  # warm up
        n_ceiling = min(args.subs, 20_000)
        raw_rate = ceiling(n_ceiling, args.pool, port=port, message=sample)
        print(f"(a) ceiling: {raw_rate:,.0f} messages/s ({n_ceiling:,} pre-built messages)")

        env["SYNDICATE_SMTP_PORT"] = str(port)
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "syndicate", "send", "--at", AT, "--json"], env=env,
                                cwd=str(work), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate()
        wall = time.perf_counter() - start
        # the only child that has ended so far is the send process (the sink still runs)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        print(err, file=sys.stderr)
        raise SystemExit(f"send exited {proc.returncode}")
    report = json.loads(out)
    send_rate = report["sent"] / report["sending_seconds"]
    print(f"(b) full send: {report['sent']:,} sent, {report['failed']} failed, {report['skipped']} skipped")
    print(f"    planning {report['planning_seconds']:.1f} s; sending {report['sending_seconds']:.1f} s "
          f"= {send_rate:,.0f} messages/s; whole run {wall:.1f} s = {report['sent'] / wall:,.0f} messages/s")
    print(f"ratio (b)/(a): {send_rate / raw_rate:.0%} (target >= 85%)")
    print(f"peak RSS of the send process: {peak_mb:.0f} MB (target < 300 MB)")


if __name__ == "__main__":
    main()
