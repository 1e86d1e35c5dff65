"""The admin API end to end: the whole app on uvicorn at 127.0.0.1, mail through a real aiosmtpd.

A subscriber made through the API gets a confirmation email at the SMTP sink
whose link confirms them; an article pushed as a CMS would reaches the
served feeds (read back with feedparser); and the README's curl lines run,
as they are written, against the live server.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import feedparser
import httpx
import pytest

from syndicate.api.auth import create_token
from syndicate.config import Secret, Settings
from syndicate.models import NewsList
from syndicate.store import Store, open_store
from syndicate.web import create_app

if TYPE_CHECKING:  # fixtures from tests/e2e/conftest.py
    from conftest import LiveServer, SmtpSink

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "e2e-secret-key-0123456789-abcdefghij"


@dataclass
class Site:
    url: str
    settings: Settings
    store: Store
    sink: SmtpSink
    http: httpx.Client
    server: LiveServer


@pytest.fixture
def site(tmp_path: Path, smtp_sink: SmtpSink, live_server: Callable[[], LiveServer]) -> Iterator[Site]:
    srv = live_server()
    settings = Settings(
        db=str(tmp_path / "syndicate.db"), secret_key=Secret(SECRET), base_url=srv.url,
        smtp_host=smtp_sink.host, smtp_port=smtp_sink.port, mail_sender_address="tin@news.example.org",
        mail_maildir=str(tmp_path / "maildir"), feeds_out=str(tmp_path / "site"), title="Tin Đà Nẵng",
        source="e2e",
    )
    store = open_store(settings.db)
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng Đà Nẵng", sender_address="tin@news.example.org"))
    srv.start(create_app(settings))
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        yield Site(srv.url, settings, store, smtp_sink, http, srv)
    # The server goes before the sink: its notice sender keeps an SMTP connection open between batches, and a
    # sink stopped under an open connection leaves its end unclosed (a ResourceWarning, so a failed test).
    srv.stop()
    store.close()


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_an_api_signup_gets_a_confirmation_email_whose_link_confirms(site: Site) -> None:
    _, token = create_token(site.store, "signup-form", "write")
    r = site.http.post("/api/v1/subscribers", headers={"authorization": f"Bearer {token}"},
                       json={"email": "Lan@Example.org", "list": "tin-sang", "name": "Lan Nguyễn"})
    assert r.status_code == 201, r.text
    assert r.json()["subscription"]["status"] == "pending"
    [(_, rcpt, raw)] = site.sink.wait_for(1, timeout=60)
    assert rcpt == ["Lan@example.org"]
    message = parse(raw)
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    [link] = re.findall(r"https?://\S+/confirm/\S+", str(text.get_content()))
    assert link.startswith(site.url)
    page = site.http.get(link.removeprefix(site.url))
    assert page.status_code == 200
    assert site.http.post(link.removeprefix(site.url)).status_code == 200
    got = site.http.get("/api/v1/subscribers/lan@example.org", headers={"authorization": f"Bearer {token}"})
    assert got.json()["subscriptions"][0]["status"] == "active"


def test_a_cms_pushed_article_reaches_the_served_feeds(site: Site) -> None:
    _, token = create_token(site.store, "cms", "write")
    auth = {"authorization": f"Bearer {token}"}
    before = feedparser.parse(site.http.get("/atom.xml").content)
    assert before.entries == []
    record = {"title": "Đà Nẵng mở tuyến xe buýt điện", "published": "2026-11-20T08:00:00+07:00",
              "category": "Đô thị", "body_html": "<p>Tuyến đầu tiên chạy từ <b>sáng nay</b>.</p>"}
    r = site.http.put("/api/v1/articles/cms:bus-1", headers=auth, json=record)
    assert r.status_code == 201, r.text
    for path in ("/atom.xml", "/rss.xml", "/category/do-thi/atom.xml"):
        feed = feedparser.parse(site.http.get(path).content)
        assert not feed.bozo, (path, feed.bozo_exception)
        assert [e.title for e in feed.entries] == ["Đà Nẵng mở tuyến xe buýt điện"], path
    r = site.http.put("/api/v1/articles/cms:bus-1", headers=auth, json={**record, "title": "Xe buýt điện: tuyến 2"})
    assert r.json()["status"] == "updated"
    assert [e.title for e in feedparser.parse(site.http.get("/atom.xml").content).entries] == ["Xe buýt điện: tuyến 2"]


def _readme_curl_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Admin API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    [block] = [b for b in blocks if "curl " in b]
    return block


def test_the_readme_curl_examples_run_against_a_live_server(site: Site, tmp_path: Path) -> None:
    block = _readme_curl_block()
    assert block.count("curl ") == 4 and "syndicate token create" in block
    script = block.replace("http://127.0.0.1:8080", site.url)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SYNDICATE_")}
    env.update(SYNDICATE_DB=site.settings.db, SYNDICATE_SECRET_KEY=SECRET, SYNDICATE_BASE_URL=site.url,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(answers) == 4 and not any("error" in a for a in answers)
    subscribed, pushed, report, page = answers
    assert subscribed["subscriber"]["email"] == "lan@example.org"
    assert subscribed["subscription"]["status"] == "pending"
    assert pushed["status"] == "new" and pushed["article"]["guid"] == "cms-2026-11-20-khoi-nghiep"
    assert [r["list_slug"] for r in report["reports"]] == ["tin-sang"]
    assert [s["subscriber"]["email"] for s in page["subscriptions"]] == ["lan@example.org"]
    [(_, rcpt, _raw)] = site.sink.wait_for(1, timeout=60)
    assert rcpt == ["lan@example.org"]
    feed = feedparser.parse(site.http.get("/atom.xml").content)
    assert [e.title for e in feed.entries] == ["Hải Phòng: người trẻ khởi nghiệp"]


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(entry))
    return kids


def test_serve_stopped_like_systemd_stops_its_notice_sender_after_the_emails(tmp_path: Path) -> None:
    # Stopped as systemd stops the unit (KillMode=mixed: SIGTERM to serve's process group) or as Ctrl-C does:
    # the notice sender, in a group of its own, finishes what serve handed it when serve closes the pipe, and
    # exits with it; nothing is left running and no email is lost.
    import signal
    import time

    from loopback import free_port, process_gone

    db = tmp_path / "syndicate.db"
    store = open_store(db)
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng Đà Nẵng", sender_address="tin@news.example.org"))
    _, token = create_token(store, "cms", "write")
    store.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(SYNDICATE_DB=str(db), SYNDICATE_SECRET_KEY=SECRET, SYNDICATE_MAIL_MAILDIR=str(tmp_path / "maildir"),
               SYNDICATE_BASE_URL=f"http://127.0.0.1:{port}")
    serve = subprocess.Popen([sys.executable, "-m", "syndicate", "serve", "--port", str(port)], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            while True:
                try:
                    http.get("/atom.xml")
                    break
                except httpx.TransportError:
                    assert serve.poll() is None and time.monotonic() < deadline, "syndicate serve did not start"
                    time.sleep(0.05)
            for n in range(3):
                r = http.post("/api/v1/subscribers", headers={"authorization": f"Bearer {token}"},
                              json={"email": f"lan{n}@example.org", "list": "tin-sang"})
                assert r.status_code == 201, r.text
        [sender] = _children(serve.pid)
        os.killpg(serve.pid, signal.SIGTERM)  # the whole group, as systemd does
        serve.wait(120)
        deadline = time.monotonic() + 120
        while not process_gone(sender):
            assert time.monotonic() < deadline, "the notice sender outlived serve"
            time.sleep(0.05)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(120)
        assert serve.stderr is not None
        errors = serve.stderr.read().decode()
        serve.stderr.close()
    assert "Traceback" not in errors, errors
    assert len(list((tmp_path / "maildir" / "new").iterdir())) == 3  # every confirmation went out before the end
    store = open_store(db)
    assert store.scalar("SELECT count(*) FROM deliveries WHERE status = 'sent'") == 3
    store.close()
