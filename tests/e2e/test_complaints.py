"""A complaint end to end: a real digest over aiosmtpd, the provider's ARF report back, `syndicate bounces process`.

The digest is sent by `syndicate send` in a process of its own to an aiosmtpd
server on 127.0.0.1; the abuse report wraps exactly the bytes that server
received (with the Return-Path the receiving side adds), as a feedback loop
would. After processing, the address is complained and suppressed on every
list, and the next send queues nothing for it while the others get theirs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syndicate.config import Secret, Settings
from syndicate.models import Article, NewsList
from syndicate.store import open_store
from syndicate.subscribers import address_hash, subscribe

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syndicate", *args], env=env, cwd=str(Path(env["SYNDICATE_DB"]).parent),
                          capture_output=True, text=True, timeout=120)


def arf(original: bytes) -> bytes:
    return (
        b"From: Feedback Loop <fbl@mail.example.net>\r\nTo: fbl@news.example.org\r\n"
        b"Subject: complaint about message\r\nMessage-ID: <fbl.9@mail.example.net>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\r\n"
        b"--b1\r\nContent-Type: message/feedback-report\r\n\r\n"
        b"Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/2.0\r\nVersion: 1\r\n\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"\r\n--b1--\r\n"
    )


def test_a_complaint_about_a_real_digest_stops_the_address_everywhere(tmp_path: Path, smtp_sink: object) -> None:
    sink = smtp_sink
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(
        SYNDICATE_DB=str(tmp_path / "s.db"), SYNDICATE_SECRET_KEY="e2e-secret-key-0123456789-abcdefghijklmnop",
        SYNDICATE_SMTP_HOST="127.0.0.1", SYNDICATE_SMTP_PORT=str(sink.port),  # type: ignore[attr-defined]
        SYNDICATE_MAIL_SENDER_ADDRESS="tin@news.example.org", SYNDICATE_BASE_URL="https://news.example.org",
        PYTHONPATH=str(ROOT),
    )
    settings = Settings(db=env["SYNDICATE_DB"], secret_key=Secret(env["SYNDICATE_SECRET_KEY"]),
                        base_url="https://news.example.org", source="e2e")
    store = open_store(settings.db)
    try:
        store.create_list(NewsList(slug="tin-sang", name="Tin sáng"))
        store.create_list(NewsList(slug="tuan", name="Tin tuần", cadence="weekly", weekday=1))
        for who in ("lan@example.org", "kim@example.org"):
            for slug in ("tin-sang", "tuan"):
                subscribe(store, settings, who, slug, confirmed=True, now=T0)
        store.upsert_articles([Article(guid="g1", title="Tin 1", slug="tin-1", published=T0 + timedelta(hours=12),
                                       category="Xã hội")])
    finally:
        store.close()

    sent = run(env, "send", "--at", "2026-11-24T08:00:00+07:00")  # a Tuesday: both lists are due
    assert sent.returncode == 0, sent.stderr
    messages = sink.wait_for(4)  # type: ignore[attr-defined]
    mail_from, _rcpts, raw = next(m for m in messages if m[1] == ["lan@example.org"])
    assert mail_from.startswith("bounce+")
    box = tmp_path / "fbl"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.report").write_bytes(arf(f"Return-Path: <{mail_from}>\r\n".encode() + raw))

    processed = run(env, "bounces", "process", str(box), "--json")
    assert processed.returncode == 0, processed.stderr
    report = json.loads(processed.stdout)
    assert (report["complaints"], report["newly_complained"], report["errors"]) == (1, 1, [])
    assert report["complaint_reports"][0]["reporter"] == "ExampleFBL/2.0"

    store = open_store(settings.db)
    try:
        lan = store.get_subscriber("lan@example.org")
        assert {s.status for s in store.subscriptions_of(lan.id or 0)} == {"complained"}  # both lists
        assert store.suppression(address_hash("lan@example.org")) == "complained"
        assert [e.kind for e in store.events_for(lan.id or 0)][-2:] == ["complaint", "complaint"]
        lan_rows = store.scalar("SELECT count(*) FROM deliveries WHERE subscriber_id = ?", [lan.id])
        store.upsert_articles([Article(guid="g2", title="Tin 2", slug="tin-2", published=T0 + timedelta(days=7, hours=12),
                                       category="Xã hội")])
    finally:
        store.close()
    before = len(sink.messages)  # type: ignore[attr-defined]
    later = run(env, "send", "--at", "2026-12-01T08:00:00+07:00")  # the next Tuesday: both lists due again
    assert later.returncode == 0, later.stderr
    new = sink.wait_for(before + 2)[before:]  # type: ignore[attr-defined]
    assert sorted(r for _f, rcpts, _raw in new for r in rcpts) == ["kim@example.org", "kim@example.org"]
    store = open_store(settings.db)
    try:
        # not even an outbox row for the address, on either list
        assert store.scalar("SELECT count(*) FROM deliveries WHERE subscriber_id = ?", [lan.id]) == lan_rows
    finally:
        store.close()
