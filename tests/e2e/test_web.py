"""The public web door end to end: the whole app (create_app) on uvicorn, mail through a real aiosmtpd.

Subscribe on the form, read the confirmation from the SMTP sink, follow its
link, let ``syndicate send --at`` deliver a digest, unsubscribe with its
List-Unsubscribe URL exactly as a mail provider does (RFC 8058), and see the
next day's run send nothing.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from click.testing import CliRunner

from syndicate import subscribers
from syndicate.cli import main
from syndicate.config import Secret, Settings
from syndicate.models import Article, NewsList
from syndicate.store import Store, open_store
from syndicate.web import create_app

if TYPE_CHECKING:  # fixtures from tests/e2e/conftest.py
    from conftest import LiveServer, SmtpSink

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
SECURITY = ("content-security-policy", "x-content-type-options", "referrer-policy", "x-frame-options")


@dataclass
class Site:
    url: str
    settings: Settings
    store: Store
    sink: SmtpSink
    http: httpx.Client


@pytest.fixture
def site(tmp_path: Path, smtp_sink: SmtpSink, live_server: Callable[[], LiveServer]) -> Iterator[Site]:
    # the sink first: it is torn down last, after the app (and any email it still sends) has stopped
    srv = live_server()
    settings = Settings(
        db=str(tmp_path / "syndicate.db"), secret_key=Secret("e2e-secret-key-0123456789-abcdefghij"), base_url=srv.url,
        smtp_host=smtp_sink.host, smtp_port=smtp_sink.port, mail_sender_address="tin@news.example.org",
        mail_maildir=str(tmp_path / "maildir"), feeds_out=str(tmp_path / "site"), title="Tin Đà Nẵng",
        source="e2e",
    )
    store = open_store(settings.db)
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng Đà Nẵng", description="Bản tin mỗi sáng",
                               sender_address="tin@news.example.org", language="vi", send_hour=7))
    srv.start(create_app(settings))
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        yield Site(srv.url, settings, store, smtp_sink, http)
    store.close()


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None
    return str(part.get_content())


def article(n: int, published: datetime, title: str) -> Article:
    return Article(guid=f"tag:news.example.org,2026:{n}", slug=f"bai-{n}", title=title, published=published,
                   category="Công nghệ", summary=f"Tóm tắt {n}", body_html=f"<p>Nội dung bài {n}.</p>")


def send_at(settings: Settings, at: datetime) -> str:
    env = {"SYNDICATE_DB": settings.db, "SYNDICATE_SECRET_KEY": settings.require_secret(),
           "SYNDICATE_BASE_URL": settings.base_url, "SYNDICATE_SMTP_HOST": settings.smtp_host,
           "SYNDICATE_SMTP_PORT": str(settings.smtp_port), "SYNDICATE_CONFIG": "",
           "SYNDICATE_MAIL_SENDER_ADDRESS": settings.mail_sender_address}
    result = CliRunner().invoke(main, ["send", "--at", at.isoformat()], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_subscribe_confirm_digest_one_click_unsubscribe_then_silence(site: Site) -> None:
    # Tomorrow 07:30 in Ho Chi Minh City, after any real "now" the store may have recorded.
    day1 = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=30, second=0, microsecond=0)
    site.store.upsert_articles([article(1, day1 - timedelta(hours=3), "Khởi nghiệp sáng tạo ở Đà Nẵng")])

    home = site.http.get("/")
    assert home.status_code == 200 and 'action="/subscribe"' in home.text
    assert all(h in home.headers for h in SECURITY)
    r = site.http.post("/subscribe", data={"email": "lan@example.org", "name": f"Lan {XSS}", "list": "tin-sang",
                                           "website": ""})
    assert r.status_code == 200 and "Hãy kiểm tra hộp thư của bạn" in r.text

    [(_, rcpts, raw)] = site.sink.wait_for(1)
    assert rcpts == ["lan@example.org"]
    confirmation = parse(raw)
    assert "<script" not in body(confirmation, "html")  # the hostile name is escaped in the mail too
    link = re.search(re.escape(site.url) + r"/confirm/[A-Za-z0-9_.\-]+", body(confirmation, "plain"))
    assert link, body(confirmation, "plain")
    # A corporate mail scanner follows the link first, with no cookies, maybe twice: nothing happens.
    with httpx.Client(timeout=10) as scanner:
        for method in ("HEAD", "GET", "GET"):
            seen = scanner.request(method, link.group(0))
            assert seen.status_code == 200
    assert subscription_status(site) == "pending"
    assert 'method="post"' in seen.text and "<script" not in seen.text
    # The person presses the one button.
    confirmed = site.http.post(link.group(0).removeprefix(site.url))
    assert confirmed.status_code == 200 and "Đã xác nhận đăng ký" in confirmed.text
    assert "<script" not in confirmed.text
    assert subscription_status(site) == "active"

    [_, (_, _, raw)] = site.sink.wait_for(2)
    assert parse(raw)["Subject"] == "Chào mừng bạn đến với Tin sáng Đà Nẵng"  # the welcome, sent at once
    send_at(site.settings, day1)
    [_, _, (_, rcpts, raw)] = site.sink.wait_for(3)
    digest = parse(raw)
    assert rcpts == ["lan@example.org"] and "Khởi nghiệp sáng tạo ở Đà Nẵng" in body(digest, "plain")
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https = re.search(r"<(https?://[^>]+)>", digest["List-Unsubscribe"])
    assert https and https.group(1).startswith(site.url + "/unsubscribe/")
    view = re.search(re.escape(site.url) + r"/archive/tin-sang/[0-9A-Za-z-]+", body(digest, "plain"))
    assert view and site.http.get(view.group(0).removeprefix(site.url)).status_code == 200

    # A mail scanner fetching the link changes nothing.
    assert site.http.get(https.group(1)).status_code == 200
    assert subscription_status(site) == "active"
    # What Gmail and friends do (RFC 8058 section 3.2): a POST, no cookies, this exact body.
    with httpx.Client(timeout=10) as provider:
        r = provider.post(https.group(1), content=b"List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and "set-cookie" not in r.headers
    assert subscription_status(site) == "unsubscribed"

    day2 = day1 + timedelta(days=1)
    site.store.upsert_articles([article(2, day2 - timedelta(hours=3), "Tin ngày hôm sau")])
    send_at(site.settings, day2)
    assert len(site.sink.messages) == 3  # no further digest


def subscription_status(site: Site, address: str = "lan@example.org") -> str:
    subscriber = site.store.get_subscriber(address)
    newslist = site.store.get_list("tin-sang")
    assert subscriber.id is not None and newslist.id is not None
    return site.store.get_subscription(subscriber.id, newslist.id).status


def test_answers_do_not_tell_who_is_subscribed(site: Site) -> None:
    subscribers.subscribe(site.store, site.settings, "pending@example.org", "tin-sang")
    subscribers.subscribe(site.store, site.settings, "active@example.org", "tin-sang", confirmed=True)
    site.store.add_suppression(subscribers.address_hash("gone@example.org"), "complaint")
    seen = set()
    for who in ("new", "pending", "active", "gone"):
        r = site.http.post("/subscribe", data={"email": f"{who}@example.org", "list": "tin-sang"})
        headers = tuple(sorted((k, v) for k, v in r.headers.items() if k not in ("date", "content-length")))
        seen.add((r.status_code, headers, r.text.replace(f"{who}@example.org", "@")))
    assert len(seen) == 1


def test_tokens_forged_or_for_another_list_get_400(site: Site) -> None:
    result = subscribers.subscribe(site.store, site.settings, "lan@example.org", "tin-sang", confirmed=True)
    other = site.store.create_list(NewsList(slug="weekly", name="Weekly", language="en"))
    assert result.subscriber.id is not None and other.id is not None
    stray = subscribers.make_token(site.settings, "unsubscribe", result.subscriber.id, other.id)
    forged = subscribers.unsubscribe_url(site.settings, result.subscriber.id, 999).removeprefix(site.url)
    for path in (f"/unsubscribe/{stray}", forged, "/unsubscribe/not-a-token", "/confirm/not-a-token",
                 "/preferences/not-a-token"):
        for method in ("GET", "POST"):
            r = site.http.request(method, path, data={"List-Unsubscribe": "One-Click"} if method == "POST" else None)
            assert r.status_code == 400, (method, path, r.status_code)
            assert "Đường dẫn không hợp lệ" in r.text and "Traceback" not in r.text
            assert all(h in r.headers for h in SECURITY)
    assert subscription_status(site) == "active"


def test_oversize_bodies_are_refused_with_413(site: Site) -> None:
    big = b"email=x%40example.org&list=tin-sang&name=" + b"a" * 70_000
    r = site.http.post("/subscribe", content=big, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and all(h in r.headers for h in SECURITY)

    def chunks() -> Iterator[bytes]:
        yield b"email=x%40example.org&name="
        for _ in range(40):
            yield b"a" * 4096

    r = site.http.post("/subscribe", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert site.store.find_subscriber("x@example.org") is None


def test_pages_escape_hostile_articles_and_carry_headers(site: Site) -> None:
    site.store.upsert_articles([Article(
        guid="tag:x,2026:evil", slug="evil", title=f"Tiêu đề {XSS}", summary=XSS, category=f"Mục {XSS}",
        published=datetime(2026, 11, 20, tzinfo=UTC), body_html=f"<p>Thân bài</p>{XSS}",
    )])
    category = site.store.get_article("evil").category_slug
    for path in ("/", "/articles/evil/", f"/category/{category}/", "/list/tin-sang/", "/archive/tin-sang", "/no-such-page"):
        r = site.http.get(path)
        assert r.status_code == (404 if path == "/no-such-page" else 200), path
        assert not re.search(r"<script|<img[^>]*onerror", r.text), path
        assert all(h in r.headers for h in SECURITY), path
        assert r.headers["content-type"] == "text/html; charset=utf-8"
    home = site.http.get("/").text
    links = re.findall(r'<link rel="alternate" type="[^"]+" title="[^"]*" href="([^"]+)">', home)
    assert {"/rss.xml", "/atom.xml", "/feed.json", f"/category/{category}/rss.xml"} <= set(links)
    for href in links:  # every autodiscovery link is a feed the same app serves
        assert site.http.get(href).status_code == 200, href
