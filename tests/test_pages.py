"""The public pages, driven in-process through httpx's ASGI transport against a real store.

Confirmation mail goes through the real Maildir transport (no SMTP host set),
so each test reads what a subscriber would receive from files under tmp_path.
The end-to-end path over uvicorn and aiosmtpd is in tests/e2e/test_web.py.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from syndicate import subscribers
from syndicate.config import Settings
from syndicate.models import Article, NewsList
from syndicate.store import Store
from syndicate.store.outbox import ArchivedDigest
from syndicate.web.context import WebContext
from syndicate.web.pages import MAX_BODY, RateLimits, SlidingWindow, csrf_token, routes

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class Client:
    """A synchronous face on httpx.AsyncClient + ASGITransport (background tasks run before it returns)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("203.0.113.7", 4321))
            async with httpx.AsyncClient(transport=transport, base_url="https://news.example.org") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


def make_client(settings: Settings, limits: RateLimits | None = None) -> Client:
    return Client(Starlette(routes=routes(WebContext(settings), limits=limits)))


@pytest.fixture
def site(settings: Settings, store: Store) -> Settings:
    """Two articles (one hostile), a Vietnamese list covering one category and an English list."""
    store.upsert_articles([
        Article(
            guid="tag:news.example.org,2026:1", slug="khoi-nghiep-sang-tao", title="Khởi nghiệp sáng tạo ở Đà Nẵng",
            published=datetime(2026, 11, 23, 8, tzinfo=UTC), category="Công nghệ", author="Minh Anh",
            summary="Thành phố hỗ trợ khởi nghiệp.", body_html="<p>Đà Nẵng đẩy mạnh hệ sinh thái khởi nghiệp.</p>",
        ),
        Article(
            guid="tag:news.example.org,2026:2", slug="hostile", title=f"Tin {XSS}",
            published=datetime(2026, 11, 22, 8, tzinfo=UTC), category="Kinh tế", summary=XSS,
            body_html=f'<p onclick="steal()">Nội dung</p>{XSS}<a href="javascript:alert(1)">x</a>',
        ),
    ])
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng Đà Nẵng", description=f"Mỗi sáng {XSS}",
                               categories=["cong-nghe"], language="vi"))
    store.create_list(NewsList(slug="morning", name="Morning brief", language="en", cadence="weekly"))
    return settings


def assert_secure(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"


def inbox(settings: Settings) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(settings.mail_maildir, create=True)
    return [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in box]  # type: ignore[misc]


def link_in(message: email.message.EmailMessage, path: str) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"https?://\S+" + re.escape(path) + r"[A-Za-z0-9_.\-]+", text)
    assert found, text
    return found.group(0)


def status_of(store: Store, email_addr: str, slug: str) -> str:
    subscriber = store.get_subscriber(email_addr)
    newslist = store.get_list(slug)
    assert subscriber.id is not None and newslist.id is not None
    return store.get_subscription(subscriber.id, newslist.id).status


# --- reading -------------------------------------------------------------------------------------


def test_home_lists_articles_forms_and_every_feed(site: Settings) -> None:
    r = make_client(site).get("/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert_secure(r)
    html = r.text
    assert '<html lang="vi">' in html
    assert "Khởi nghiệp sáng tạo ở Đà Nẵng" in html  # NFC Vietnamese, intact
    for href, mime in [("/rss.xml", "application/rss+xml"), ("/atom.xml", "application/atom+xml"),
                       ("/feed.json", "application/feed+json"), ("/category/cong-nghe/rss.xml", "application/rss+xml"),
                       ("/category/kinh-te/rss.xml", "application/rss+xml")]:
        assert f'<link rel="alternate" type="{mime}"' in html and f'href="{href}"' in html
    assert html.count('action="/subscribe"') == 2
    assert 'value="tin-sang"' in html and 'value="morning"' in html
    assert 'name="website"' in html  # the honeypot
    assert "<script" not in html and "&lt;script&gt;" in html
    assert 'name="categories" value="cong-nghe"' in html


def test_article_page_escapes_title_and_sanitises_body(site: Settings) -> None:
    client = make_client(site)
    r = client.get("/articles/hostile")
    assert r.status_code == 200
    assert_secure(r)
    assert not re.search(r"<script|<img[^>]*onerror|onclick=|href=\"javascript:", r.text)
    assert "Nội dung" in r.text
    assert "Tin &lt;script&gt;" in r.text
    good = client.get("/articles/khoi-nghiep-sang-tao")
    assert '<link rel="canonical" href="https://news.example.org/articles/khoi-nghiep-sang-tao">' in good.text
    assert "Thứ Hai, 23/11/2026" in good.text and 'href="/category/cong-nghe/atom.xml"' in good.text
    moved = client.get("/articles/tag:news.example.org,2026:1", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == "/articles/khoi-nghiep-sang-tao"


def test_unknown_pages_are_friendly_404s(site: Settings) -> None:
    client = make_client(site)
    for path in ("/articles/nope", "/category/nope", "/archive/nope", "/archive/tin-sang/2026-11-01",
                 "/archive/tin-sang/%3Cb%3E"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "Không tìm thấy trang" in r.text and "Traceback" not in r.text
        assert_secure(r)


def test_category_page_has_its_feeds(site: Settings) -> None:
    r = make_client(site).get("/category/cong-nghe")
    assert r.status_code == 200
    assert "<h1>Công nghệ</h1>" in r.text
    for name in ("rss.xml", "atom.xml", "feed.json"):
        assert f'href="/category/cong-nghe/{name}"' in r.text
    assert "khoi-nghiep-sang-tao" in r.text and "hostile" not in r.text


def test_stylesheet_is_served_with_etag(site: Settings) -> None:
    client = make_client(site)
    r = client.get("/static/site.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    again = client.get("/static/site.css", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


# --- subscribing ----------------------------------------------------------------------------------


def test_subscribe_then_confirm_by_the_emailed_link(site: Settings, store: Store) -> None:
    client = make_client(site)
    r = client.post("/subscribe", data={"email": " Lan@Example.ORG ", "name": "Lan", "list": "tin-sang",
                                        "categories": ["cong-nghe", "not-a-category"]})
    assert r.status_code == 200 and "Hãy kiểm tra hộp thư của bạn" in r.text
    assert r.headers["cache-control"] == "no-store" and "set-cookie" not in r.headers
    assert status_of(store, "lan@example.org", "tin-sang") == "pending"
    [message] = inbox(site)
    assert message["To"].addresses[0].addr_spec.lower() == "lan@example.org"
    confirm = link_in(message, "/confirm/")
    path = confirm.removeprefix(site.base_url)
    done = client.get(path)
    assert done.status_code == 200 and "Đã xác nhận đăng ký" in done.text and "Lan@example.org" in done.text
    assert "Công nghệ" in done.text and "/preferences/" in done.text
    assert status_of(store, "lan@example.org", "tin-sang") == "active"
    assert client.get(path).status_code == 200  # idempotent


def test_subscribe_answer_is_identical_for_new_pending_active_and_suppressed(site: Settings, store: Store) -> None:
    subscribers.subscribe(store, site, "pending@example.org", "tin-sang")
    subscribers.subscribe(store, site, "active@example.org", "tin-sang", confirmed=True)
    subscribers.subscribe(store, site, "gone@example.org", "tin-sang", confirmed=True)
    gone = store.get_subscriber("gone@example.org")
    assert gone.id is not None
    store.add_suppression(subscribers.address_hash("gone@example.org"), "complaint")
    client = make_client(site)
    answers = set()
    for who in ("new", "pending", "active", "gone"):
        r = client.post("/subscribe", data={"email": f"{who}@example.org", "list": "tin-sang"})
        answers.add((r.status_code, tuple(sorted((k, v) for k, v in r.headers.items() if k != "content-length")),
                     r.text.replace(f"{who}@example.org", "ADDRESS")))
    assert len(answers) == 1
    assert status_of(store, "active@example.org", "tin-sang") == "active"  # nothing downgraded


def test_honeypot_answers_the_same_and_does_nothing(site: Settings, store: Store) -> None:
    client = make_client(site)
    human = client.post("/subscribe", data={"email": "a@example.org", "list": "tin-sang"})
    bot = client.post("/subscribe", data={"email": "b@example.org", "list": "tin-sang", "website": "http://spam"})
    assert bot.status_code == human.status_code == 200
    assert bot.text.replace("b@", "a@") == human.text
    assert store.find_subscriber("b@example.org") is None
    assert len(inbox(site)) == 1


def test_bad_address_and_unknown_list_get_clear_400s(site: Settings) -> None:
    client = make_client(site)
    r = client.post("/subscribe", data={"email": "bob@", "list": "tin-sang"})
    assert r.status_code == 400 and "Địa chỉ email không hợp lệ" in r.text and "bob@" in r.text
    r = client.post("/subscribe", data={"email": "bob@example.org", "list": "<b>nope</b>"})
    assert r.status_code == 400 and "Không có bản tin này" in r.text and "<b>nope" not in r.text


def test_rate_limits_per_ip_and_per_address(site: Settings) -> None:
    client = make_client(site, RateLimits(per_ip=3, per_address=2))
    codes = [client.post("/subscribe", data={"email": "same@example.org", "list": "morning"}).status_code
             for _ in range(3)]
    assert codes == [200, 200, 429]
    r = client.post("/subscribe", data={"email": "other@example.org", "list": "morning"})
    assert r.status_code == 429 and "Quá nhiều yêu cầu" in r.text and r.headers["retry-after"] == "600"
    assert len(inbox(site)) == 1  # asked twice within minutes: the outbox queues one confirmation, not two


def test_sliding_window_forgets_old_hits() -> None:
    now = [0.0]
    w = SlidingWindow(2, 10.0, clock=lambda: now[0], max_keys=1)
    assert w.hit("a") and w.hit("a") and not w.hit("a")
    now[0] = 10.5
    assert w.hit("a") and w.hit("b")
    assert set(w._hits) <= {"a", "b"}


# --- tokens ---------------------------------------------------------------------------------------


def subscribe_active(store: Store, settings: Settings, address: str, slug: str) -> tuple[int, int]:
    result = subscribers.subscribe(store, settings, address, slug, confirmed=True)
    assert result.subscriber.id is not None and result.newslist.id is not None
    return result.subscriber.id, result.newslist.id


def test_forged_expired_and_misused_tokens_get_a_clear_400(site: Settings, store: Store) -> None:
    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    client = make_client(site)
    good = subscribers.make_token(site, "unsubscribe", sid, lid)
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    confirm_token = subscribers.make_token(site, "confirm", sid, lid)
    for method, path in [("GET", f"/confirm/{forged}"), ("GET", f"/unsubscribe/{forged}"),
                         ("POST", f"/unsubscribe/{forged}"), ("GET", f"/preferences/{forged}"),
                         ("GET", f"/unsubscribe/{confirm_token}"), ("POST", f"/unsubscribe/{confirm_token}"),
                         ("GET", "/confirm/%3Cscript%3E"), ("GET", f"/preferences/{good}")]:
        r = client.request(method, path)
        assert r.status_code == 400, path
        assert "Đường dẫn không hợp lệ" in r.text and "Traceback" not in r.text and "<script" not in r.text
        assert_secure(r)
    assert status_of(store, "lan@example.org", "tin-sang") == "active"
    expired = make_client(site.with_(mail_pending_max_age_days=-1))  # every confirm link is past its age
    r = expired.get(f"/confirm/{confirm_token}")
    assert r.status_code == 400 and "Đường dẫn không hợp lệ" in r.text


def test_token_for_another_list_changes_nothing(site: Settings, store: Store) -> None:
    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    other = store.get_list("morning").id
    assert other is not None
    client = make_client(site)
    stray = subscribers.make_token(site, "unsubscribe", sid, other)
    assert client.get(f"/unsubscribe/{stray}").status_code == 400
    assert client.post(f"/unsubscribe/{stray}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert status_of(store, "lan@example.org", "tin-sang") == "active"


def test_unsubscribe_get_never_changes_state_and_post_is_one_click(site: Settings, store: Store) -> None:
    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    subscribe_active(store, site, "lan@example.org", "morning")
    client = make_client(site)
    path = subscribers.unsubscribe_url(site, sid, lid).removeprefix(site.base_url)
    for _ in range(3):
        page = client.get(path)
        assert page.status_code == 200 and 'method="post"' in page.text
        assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert status_of(store, "lan@example.org", "tin-sang") == "active"
    r = client.post(path, content=b"List-Unsubscribe=One-Click",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and "Bạn đã hủy đăng ký" in r.text and "set-cookie" not in r.headers
    assert status_of(store, "lan@example.org", "tin-sang") == "unsubscribed"
    assert status_of(store, "lan@example.org", "morning") == "active"  # only the token's list
    again = client.post(path, files={"List-Unsubscribe": (None, "One-Click")})  # multipart, idempotent
    assert again.status_code == 200
    kinds = [e.kind for e in store.events_for(sid) if e.list_id == lid]
    assert kinds.count("unsubscribe") == 1


def test_unsubscribe_accepts_multipart_first(site: Settings, store: Store) -> None:
    sid, lid = subscribe_active(store, site, "lan@example.org", "morning")
    client = make_client(site)
    path = subscribers.unsubscribe_url(site, sid, lid, "lan@example.org").removeprefix(site.base_url)
    r = client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200 and "You are unsubscribed" in r.text and '<html lang="en">' in r.text
    assert status_of(store, "lan@example.org", "morning") == "unsubscribed"


# --- preferences ------------------------------------------------------------------------------------


def test_preferences_need_the_csrf_token(site: Settings, store: Store) -> None:
    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    client = make_client(site)
    token = subscribers.make_token(site, "preferences", sid, lid)
    path = f"/preferences/{token}"
    page = client.get(path)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert csrf and csrf.group(1) == csrf_token(site.require_secret(), token)
    change = {"cadence": "weekly", "weekday": "4", "send_hour": "18", "timezone": "Europe/Berlin",
              "categories": "cong-nghe"}
    for bad in ({}, {"csrf": "0" * 64}, {"csrf": csrf_token(site.require_secret(), token + "x")}):
        r = client.post(path, data={**change, **bad})
        assert r.status_code == 403 and "Kiểm tra bảo mật" in r.text
    sub = store.get_subscription(sid, lid)
    assert (sub.cadence, sub.send_hour) == ("daily", 7)
    ok = client.post(path, data={**change, "csrf": csrf.group(1)})
    assert ok.status_code == 200 and "Đã lưu tùy chọn của bạn." in ok.text
    sub = store.get_subscription(sid, lid)
    assert (sub.cadence, sub.weekday, sub.send_hour, sub.categories) == ("weekly", 4, 18, ["cong-nghe"])
    assert store.get_subscriber("lan@example.org").timezone == "Europe/Berlin"
    assert 'value="18" selected' in ok.text


def test_preferences_reject_bad_values_with_the_reason(site: Settings, store: Store) -> None:
    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    client = make_client(site)
    token = subscribers.make_token(site, "preferences", sid, lid)
    csrf = csrf_token(site.require_secret(), token)
    r = client.post(f"/preferences/{token}", data={"csrf": csrf, "timezone": "Mars/<b>Olympus</b>"})
    assert r.status_code == 400 and "is not an IANA time zone" in r.text and "<b>Olympus" not in r.text
    r = client.post(f"/preferences/{token}", data={"csrf": csrf, "send_hour": "25"})
    assert r.status_code == 400 and "25" in r.text
    r = client.post(f"/preferences/{token}", data={"csrf": csrf, "send_hour": "-1"})
    assert r.status_code == 400
    assert store.get_subscription(sid, lid).send_hour == 7


# --- limits and archive -----------------------------------------------------------------------------


def test_oversize_bodies_get_413_declared_or_streamed(site: Settings) -> None:
    client = make_client(site)
    big = b"email=" + b"a" * MAX_BODY
    r = client.post("/subscribe", content=big, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and "Yêu cầu quá lớn" in r.text
    assert_secure(r)

    async def chunks() -> Any:
        for _ in range(20):
            yield b"a" * 8192

    r = client.post("/unsubscribe/x", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


def test_archive_shows_past_digests(site: Settings, store: Store) -> None:
    newslist = store.get_list("tin-sang")
    assert newslist.id is not None
    store.archive_digest(ArchivedDigest(
        list_id=newslist.id, period="2026-11-24", categories_key="", subject="Tin sáng: Thứ Ba, 24/11/2026",
        html='<html><head><style>p{}</style></head><body><table><tr><td style="color:#333">Bản tin hôm nay</td>'
             "</tr></table></body></html>",
        text="Bản tin hôm nay", article_count=1, created=datetime(2026, 11, 24, tzinfo=UTC),
    ))
    client = make_client(site)
    index = client.get("/archive/tin-sang")
    assert index.status_code == 200 and 'href="/archive/tin-sang/2026-11-24"' in index.text
    page = client.get("/archive/tin-sang/2026-11-24")
    assert page.status_code == 200 and "Bản tin hôm nay" in page.text and "<style>" not in page.text
    assert "'unsafe-inline'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]


def test_tracebacks_never_reach_the_visitor(site: Settings, tmp_path: Path) -> None:
    broken = site.with_(db=str(tmp_path / "no" / "such" / "dir" / "\0bad.db"))
    r = make_client(broken).get("/")
    assert r.status_code == 500 and "Đã xảy ra lỗi" in r.text and "Traceback" not in r.text
    assert_secure(r)


def test_archived_digests_generic_links_explain_where_the_personal_ones_are(site: Settings) -> None:
    client = make_client(site)
    for path in ("/unsubscribe", "/preferences"):
        r = client.get(path)
        assert r.status_code == 200 and "Dùng đường dẫn trong email của bạn" in r.text


def test_one_click_cancels_the_digest_still_queued(site: Settings, store: Store) -> None:
    from datetime import timedelta

    from syndicate.digest import plan

    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    sub = store.get_subscription(sid, lid)
    assert sub.id is not None
    at = datetime.now(UTC).replace(hour=0, minute=30, second=0, microsecond=0) + timedelta(days=1)  # 07:30 HCMC
    store.upsert_articles([Article(guid="tag:x,2026:q", slug="queued", title="Tin chờ gửi", category="Công nghệ",
                                   published=at - timedelta(hours=2), body_html="<p>x</p>")])
    store.plan_deliveries(plan(store, at), now=at)
    assert [d.status for d in store.deliveries_for(sub.id)] == ["queued"]
    path = subscribers.unsubscribe_url(site, sid, lid).removeprefix(site.base_url)
    assert make_client(site).post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert [d.status for d in store.deliveries_for(sub.id)] == ["cancelled"]


def test_view_in_browser_shows_the_readers_own_topics(settings: Settings, store: Store) -> None:
    from syndicate.mailer import MemoryTransport
    from syndicate.sender import run_send

    store.upsert_articles([
        Article(guid="t1", slug="tran-dau", title="Trận đấu tối qua", category="Thể thao",
                published=datetime(2026, 11, 23, 12, tzinfo=UTC)),
        Article(guid="k1", slug="gia-dien", title="Giá điện ổn định", category="Kinh tế",
                published=datetime(2026, 11, 23, 13, tzinfo=UTC)),
    ])
    store.create_list(NewsList(slug="tin", name="Tin", language="vi"))
    joined = datetime(2026, 11, 1, tzinfo=UTC)
    subscribers.subscribe(store, settings, "all@example.org", "tin", confirmed=True, now=joined)
    subscribers.subscribe(store, settings, "sport@example.org", "tin", categories=["the-thao"], confirmed=True,
                          now=joined)
    transport = MemoryTransport()
    sent = transport.sent
    assert run_send(store, settings, transport, now=datetime(2026, 11, 24, 3, tzinfo=UTC)).sent == 2
    client = make_client(settings)
    pages = {}
    for _, (rcpt,), raw in sent:
        text = email.message_from_bytes(raw, policy=email.policy.default).get_body(("plain",)).get_content()
        view = re.search(r"https://news\.example\.org(/archive/\S+)", text)
        assert view is not None, text
        pages[rcpt] = client.get(view.group(1)).text
    assert "Trận đấu tối qua" in pages["sport@example.org"] and "Giá điện" not in pages["sport@example.org"]
    assert "Trận đấu tối qua" in pages["all@example.org"] and "Giá điện ổn định" in pages["all@example.org"]
    index = client.get("/archive/tin").text
    assert 'href="/archive/tin/2026-11-24?topics=the-thao"' in index and 'href="/archive/tin/2026-11-24"' in index
    assert client.get("/archive/tin/2026-11-24?topics=<script>").status_code == 200  # ignored, generic shown
