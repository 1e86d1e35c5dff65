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
    r = client.get("/articles/hostile/")
    assert r.status_code == 200
    assert_secure(r)
    assert not re.search(r"<script|<img[^>]*onerror|onclick=|href=\"javascript:", r.text)
    assert "Nội dung" in r.text
    assert "Tin &lt;script&gt;" in r.text
    good = client.get("/articles/khoi-nghiep-sang-tao/")
    assert '<link rel="canonical" href="https://news.example.org/articles/khoi-nghiep-sang-tao/">' in good.text
    assert "Thứ Hai, 23/11/2026" in good.text and 'href="/category/cong-nghe/atom.xml"' in good.text
    moved = client.get("/articles/tag:news.example.org,2026:1", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == "/articles/khoi-nghiep-sang-tao/"


def test_unknown_pages_are_friendly_404s(site: Settings) -> None:
    client = make_client(site)
    for path in ("/articles/nope", "/category/nope", "/category/nope/", "/list/nope/", "/list/nope", "/archive/nope", "/archive/tin-sang/2026-11-01",
                 "/archive/tin-sang/%3Cb%3E"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "Không tìm thấy trang" in r.text and "Traceback" not in r.text
        assert_secure(r)


def test_category_page_has_its_feeds(site: Settings) -> None:
    client = make_client(site)
    r = client.get("/category/cong-nghe/", follow_redirects=False)  # the URL the category feeds carry
    assert r.status_code == 200
    moved = client.get("/category/cong-nghe", follow_redirects=False)  # an older link: one permanent move
    assert moved.status_code == 301 and moved.headers["location"] == "/category/cong-nghe/"
    assert client.get("/category/nope", follow_redirects=False).status_code == 404
    assert "<h1>Công nghệ</h1>" in r.text
    for name in ("rss.xml", "atom.xml", "feed.json"):
        assert f'href="/category/cong-nghe/{name}"' in r.text
    assert "khoi-nghiep-sang-tao" in r.text and "hostile" not in r.text


def test_list_page_has_its_name_form_articles_and_feeds(site: Settings) -> None:
    """/list/<slug>/ is the link, alternate link and home_page_url of every list feed."""
    client = make_client(site)
    r = client.get("/list/tin-sang/", follow_redirects=False)
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert_secure(r)
    html = r.text
    assert '<html lang="vi">' in html and "<h1>Tin sáng Đà Nẵng</h1>" in html
    assert "Mỗi sáng &lt;script&gt;" in html and "<script" not in html  # the description, escaped
    for name, mime in (("rss.xml", "application/rss+xml"), ("atom.xml", "application/atom+xml"),
                       ("feed.json", "application/feed+json")):
        assert f'<link rel="alternate" type="{mime}" title="Tin sáng Đà Nẵng (' in html
        assert f'href="/list/tin-sang/{name}"' in html
    assert html.count('action="/subscribe"') == 1 and 'name="list" value="tin-sang"' in html
    assert 'name="categories" value="cong-nghe"' in html
    assert "khoi-nghiep-sang-tao" in html and "/articles/hostile" not in html  # only the list's categories
    assert 'href="/archive/tin-sang"' in html
    english = client.get("/list/morning/")
    assert english.status_code == 200 and '<html lang="en">' in english.text
    assert "/articles/hostile" in english.text and "/articles/khoi-nghiep-sang-tao" in english.text  # all topics
    moved = client.get("/list/morning", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == "/list/morning/"


def test_pages_link_to_the_canonical_article_category_and_list_urls(site: Settings) -> None:
    client = make_client(site)
    for path in ("/", "/articles/khoi-nghiep-sang-tao/", "/category/cong-nghe/", "/list/morning/"):
        html = client.get(path).text
        hrefs = re.findall(r'href="(/(?:articles|category|list)/[^"]*)"', html)
        assert hrefs, path
        for href in hrefs:
            assert href.endswith(("/", ".xml", ".json")), (path, href)
            if href.endswith("/"):  # feeds are not in these page routes: tests/e2e/test_links.py reads them
                assert client.get(href, follow_redirects=False).status_code == 200, (path, href)
    assert 'href="/list/tin-sang/"' in client.get("/").text


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
                                        "categories": ["cong-nghe"]})
    assert r.status_code == 200 and "Hãy kiểm tra hộp thư của bạn" in r.text
    assert r.headers["cache-control"] == "no-store" and "set-cookie" not in r.headers
    assert status_of(store, "lan@example.org", "tin-sang") == "pending"
    [message] = inbox(site)
    assert message["To"].addresses[0].addr_spec.lower() == "lan@example.org"
    confirm = link_in(message, "/confirm/")
    path = confirm.removeprefix(site.base_url)
    done = client.post(path)
    assert done.status_code == 200 and "Đã xác nhận đăng ký" in done.text and "Lan@example.org" in done.text
    assert "Công nghệ" in done.text and "/preferences/" in done.text
    assert done.headers["cache-control"] == "no-store"
    assert status_of(store, "lan@example.org", "tin-sang") == "active"
    assert client.post(path).status_code == 200  # idempotent
    again = client.get(path)  # the link opened again later: says so, offers nothing to press
    assert again.status_code == 200 and "Đã xác nhận đăng ký" in again.text and 'method="post"' not in again.text


def test_confirm_get_shows_one_button_and_only_post_confirms(site: Settings, store: Store) -> None:
    """Corporate mail scanners fetch every link in a message: a GET must never give consent."""
    result = subscribers.subscribe(store, site, "lan@example.org", "tin-sang", source="web")
    assert result.subscriber.id is not None and result.newslist.id is not None
    path = subscribers.confirm_url(site, result.subscriber.id, result.newslist.id, "lan@example.org")
    path = path.removeprefix(site.base_url)
    client = make_client(site)
    for method in ("GET", "HEAD", "GET"):
        page = client.request(method, path)
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert_secure(page)
    assert page.text.count("<form") == 1 and 'method="post" action=""' in page.text
    assert page.text.count("<button") == 1 and "Xác nhận đăng ký" in page.text
    assert "lan@example.org" in page.text and "Tin sáng Đà Nẵng" in page.text
    assert status_of(store, "lan@example.org", "tin-sang") == "pending"
    assert [e.kind for e in store.events_for(result.subscriber.id)] == ["subscribe"]
    done = client.post(path, data={})
    assert done.status_code == 200 and "Đã xác nhận đăng ký" in done.text
    assert status_of(store, "lan@example.org", "tin-sang") == "active"
    assert client.request("PUT", path).status_code == 405


def test_confirm_post_with_a_forged_or_stale_token_changes_nothing(site: Settings, store: Store) -> None:
    result = subscribers.subscribe(store, site, "lan@example.org", "tin-sang", source="web")
    assert result.subscriber.id is not None and result.newslist.id is not None
    good = subscribers.make_token(site, "confirm", result.subscriber.id, result.newslist.id, "lan@example.org")
    client = make_client(site)
    for token in (good[:-2] + "zz", subscribers.make_token(site, "unsubscribe", result.subscriber.id,
                                                               result.newslist.id, "lan@example.org")):
        r = client.post(f"/confirm/{token}")
        assert r.status_code == 400 and "Đường dẫn không hợp lệ" in r.text
    assert status_of(store, "lan@example.org", "tin-sang") == "pending"
    subscribers.unsubscribe(store, site, result.subscriber.id, result.newslist.id, source="cli")
    for method in ("GET", "POST"):  # someone who left is not brought back by an old confirm link
        r = client.request(method, f"/confirm/{good}")
        assert r.status_code == 400 and 'method="post"' not in r.text
    assert status_of(store, "lan@example.org", "tin-sang") == "unsubscribed"


def test_the_public_form_never_changes_an_existing_subscribers_data(site: Settings, store: Store) -> None:
    """Anyone may type anyone's address: the form may only ask for consent, never rename or re-topic."""
    subscribers.subscribe(store, site, "lan@example.org", "tin-sang", name="Lan", timezone="Asia/Bangkok",
                          categories=["cong-nghe"], confirmed=True)
    subscribers.subscribe(store, site, "lan@example.org", "morning", name="Lan")
    before = store.get_subscriber("lan@example.org")
    client = make_client(site)
    for slug, email_addr in (("tin-sang", "lan@example.org"), ("morning", "LAN@Example.org"), ("morning", "lan@example.org")):
        r = client.post("/subscribe", data={"email": email_addr, "name": "Mallory says: click evil.example",
                                            "list": slug, "categories": []})
        assert r.status_code == 200
    after = store.get_subscriber("lan@example.org")
    assert (after.name, after.timezone, after.locale) == (before.name, before.timezone, before.locale) == (
        "Lan", "Asia/Bangkok", "vi")
    newslist = store.get_list("tin-sang")
    assert newslist.id is not None and after.id is not None
    assert store.get_subscription(after.id, newslist.id).categories == ["cong-nghe"]
    # Someone who left and asks again gets a fresh confirmation, still under their own data.
    subscribers.unsubscribe(store, site, after.id, newslist.id, source="cli")
    r = client.post("/subscribe", data={"email": "lan@example.org", "name": "Mallory", "list": "tin-sang"})
    assert r.status_code == 200
    sub = store.get_subscription(after.id, newslist.id)
    assert (sub.status, sub.categories) == ("pending", ["cong-nghe"])
    assert store.get_subscriber("lan@example.org").name == "Lan"
    assert all("Mallory" not in m.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
               for m in inbox(site))


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
    # the English list's words (the site is Vietnamese): the per-IP refusal used to fall back to the site's
    assert r.status_code == 429 and "Too many requests" in r.text and r.headers["retry-after"] == "600"
    assert len(inbox(site)) == 1  # asked twice within minutes: the outbox queues one confirmation, not two


def test_the_per_address_limit_is_blind_to_case(site: Settings) -> None:
    """RL@x and rl@x are one inbox at most providers and one subscriber in the store: one key."""
    client = make_client(site, RateLimits(per_ip=100, per_address=2))
    codes = [client.post("/subscribe", data={"email": who, "list": "morning"}).status_code
             for who in ("RL@Example.org", "rl@example.org", "Rl@EXAMPLE.ORG", "rL@example.org")]
    assert codes == [200, 200, 429, 429]
    assert len(inbox(site)) == 1  # and the second request within 10 minutes queues no second confirmation


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


def test_a_future_dated_article_is_not_on_any_page_before_its_time(site: Settings, store: Store) -> None:
    # issue 11: future-dated articles were public at once (an article page by its slug too)
    store.upsert_articles([Article(guid="tag:news.example.org,2099:embargo", slug="tin-cam", title="Tin cấm trước giờ",
                                   published=datetime(2099, 1, 1, tzinfo=UTC), category="Thể thao")])
    client = make_client(site)
    assert client.get("/articles/tin-cam/").status_code == 404
    assert client.get("/category/the-thao", follow_redirects=True).status_code == 404
    home = client.get("/")
    assert home.status_code == 200 and "Tin cấm" not in home.text and "the-thao" not in home.text


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
    assert r.status_code == 400 and "<b>Olympus" not in r.text
    assert error_text(r) == ("Múi giờ: «Mars/<b>Olympus</b>» không phải là múi giờ IANA, "
                             "ví dụ Asia/Ho_Chi_Minh hoặc Europe/Berlin.")
    r = client.post(f"/preferences/{token}", data={"csrf": csrf, "send_hour": "25"})
    assert r.status_code == 400 and error_text(r) == "Giờ gửi: phải là một số từ 0 đến 23, không phải «25»."
    r = client.post(f"/preferences/{token}", data={"csrf": csrf, "send_hour": "-1"})
    assert r.status_code == 400
    assert store.get_subscription(sid, lid).send_hour == 7


def error_text(r: httpx.Response) -> str:
    """The page's error notice as the visitor reads it (entities decoded)."""
    import html

    found = re.search(r'<div class="notice error">(.*?)</div>|<p class="message">(.*?)</p>'
                      r'|<p class="field-error" id="[a-z_]+-error">(.*?)</p>', r.text, re.S)
    assert found, r.text
    return html.unescape((found.group(1) or found.group(2) or found.group(3)).strip())


UNUSUAL_NUMBERS = ["²", "١", "٣", "三", "ⅲ", "-0", "+1", "1.0", "1e1", "0x1", "1_0", "99999999999999999999999", "x"]


@pytest.mark.parametrize(
    ("field", "label", "high", "value"),
    [("weekday", "Ngày gửi (nếu hằng tuần)", 6, v) for v in [*UNUSUAL_NUMBERS, "7"]]
    + [("send_hour", "Giờ gửi", 23, v) for v in [*UNUSUAL_NUMBERS, "24"]],
)
def test_unusual_digits_in_preferences_get_a_400_that_names_the_field(
    site: Settings, store: Store, field: str, label: str, high: int, value: str
) -> None:
    """int() raises on '²' (that was a 500) and reads '١' as 1; only ASCII digits in range are numbers here."""
    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    client = make_client(site)
    token = subscribers.make_token(site, "preferences", sid, lid)
    before = store.get_subscription(sid, lid)
    r = client.post(f"/preferences/{token}", data={"csrf": csrf_token(site.require_secret(), token),
                                                    "cadence": "weekly", field: value})
    assert r.status_code == 400 and "Traceback" not in r.text
    assert error_text(r) == f"{label}: phải là một số từ 0 đến {high}, không phải «{value}»."
    assert_secure(r)
    assert store.get_subscription(sid, lid) == before


def test_control_characters_in_a_number_are_shown_visibly(site: Settings, store: Store) -> None:
    sid, lid = subscribe_active(store, site, "lan@example.org", "morning")
    client = make_client(site)
    token = subscribers.make_token(site, "preferences", sid, lid)
    csrf = csrf_token(site.require_secret(), token)
    r = client.post(f"/preferences/{token}", data={"csrf": csrf, "send_hour": "3\n\x00"})
    assert r.status_code == 400
    assert error_text(r) == "Time of day: must be a number from 0 to 23, not “3\\n\\x00”."
    ok = client.post(f"/preferences/{token}", data={"csrf": csrf, "send_hour": " 06 ", "weekday": "0"})
    assert ok.status_code == 200 and store.get_subscription(sid, lid).send_hour == 6


def test_every_preferences_field_is_checked_and_nothing_is_half_saved(site: Settings, store: Store) -> None:
    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    client = make_client(site)
    token = subscribers.make_token(site, "preferences", sid, lid)
    csrf = csrf_token(site.require_secret(), token)
    before = (store.get_subscription(sid, lid), store.get_subscriber("lan@example.org"))
    good = {"csrf": csrf, "cadence": "weekly", "weekday": "2", "send_hour": "6", "timezone": "Asia/Tokyo",
            "name": "Lan", "categories": "cong-nghe"}
    cases = [
        ({"cadence": "monthly"}, "Tần suất: phải là một trong: Hằng ngày, Hằng tuần, không phải «monthly»."),
        ({"categories": ["cong-nghe", "kinh-te"]},
         "Chủ đề: «kinh-te» không phải là chủ đề của bản tin «Tin sáng Đà Nẵng»."),
        ({"name": "L" * 101}, "Tên của bạn (không bắt buộc): dài 101 ký tự, tối đa 100 ký tự."),
        ({"timezone": "../../etc/passwd"},
         "Múi giờ: «../../etc/passwd» không phải là múi giờ IANA, ví dụ Asia/Ho_Chi_Minh hoặc Europe/Berlin."),
    ]
    for bad, message in cases:
        r = client.post(f"/preferences/{token}", data={**good, **bad})
        assert r.status_code == 400 and error_text(r) == message, bad
        assert (store.get_subscription(sid, lid), store.get_subscriber("lan@example.org")) == before
    ok = client.post(f"/preferences/{token}", data={**good, "name": "  Trần  Thị Lan "})
    assert ok.status_code == 200 and "Đã lưu tùy chọn của bạn." in ok.text
    assert store.get_subscriber("lan@example.org").name == "Trần Thị Lan"
    assert 'name="name" value="Trần Thị Lan"' in ok.text


def test_every_subscribe_field_is_checked(site: Settings, store: Store) -> None:
    client = make_client(site)
    cases = [
        ({"categories": ["cong-nghe", "the-thao"]},
         "Chủ đề: «the-thao» không phải là chủ đề của bản tin «Tin sáng Đà Nẵng»."),
        ({"name": "N" * 101}, "Tên của bạn (không bắt buộc): dài 101 ký tự, tối đa 100 ký tự."),
        ({"email": "a" * 250 + "@example.org"}, None),
    ]
    for bad, message in cases:
        r = client.post("/subscribe", data={"email": "lan@example.org", "list": "tin-sang", **bad})
        assert r.status_code == 400, bad
        if message:
            assert error_text(r) == message
        assert_secure(r)
    assert store.find_subscriber("lan@example.org") is None and inbox(site) == []


def test_unreadable_forms_get_the_sites_400_page(site: Settings, store: Store) -> None:
    client = make_client(site)
    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    token = subscribers.make_token(site, "preferences", sid, lid)
    for path in ("/subscribe", f"/preferences/{token}"):
        upload = client.post(path, files={"email": ("f.txt", b"a@example.org")}, data={"list": "tin-sang"})
        many = client.post(path, content=b"&".join([b"a=1"] * 200),
                           headers={"content-type": "application/x-www-form-urlencoded"})
        for r in (upload, many):
            assert r.status_code == 400 and r.headers["content-type"] == "text/html; charset=utf-8", path
            assert "Yêu cầu không hợp lệ" in r.text
            assert_secure(r)
    assert "Biểu mẫu có tệp đính kèm" in client.post("/subscribe", files={"f": ("f.txt", b"x")}).text


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


def test_archive_lists_digests_and_campaigns_by_when_they_went_out(site: Settings, store: Store) -> None:
    # Periods are "2026-11-24" for a daily digest and "campaign-7" for an announcement: sorting by that string put
    # every campaign above every digest, and the page showed "campaign-7" where a date belongs.
    newslist = store.get_list("tin-sang")
    assert newslist.id is not None
    for period, subject, day in (("2026-11-24", "Bản tin 24", 24), ("campaign-7", "Hội thảo", 25),
                                 ("2026-11-26", "Bản tin 26", 26)):
        store.archive_digest(ArchivedDigest(
            list_id=newslist.id, period=period, categories_key="", subject=subject, html="<p>x</p>", text="x",
            article_count=1, created=datetime(2026, 11, day, 1, tzinfo=UTC),
        ))
    assert [d.period for d in store.archived_digests(newslist.id)] == ["2026-11-26", "campaign-7", "2026-11-24"]
    index = make_client(site).get("/archive/tin-sang").text
    assert index.index("Bản tin 26") < index.index("Hội thảo") < index.index("Bản tin 24")
    meta = re.findall(r'<div class="meta">([^<]*)</div>', index)
    assert meta == ["26/11/2026", "25/11/2026", "24/11/2026"]  # the day each went out, in the list's language


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


# --- any input at all -------------------------------------------------------------------------------

EXAMPLES = int(__import__("os").environ.get("SYNDICATE_EXAMPLES", "25"))
PREF_FIELDS = ("name", "cadence", "weekday", "send_hour", "timezone", "categories")


def test_no_preferences_input_is_a_500_and_a_refusal_changes_nothing(site: Settings, store: Store) -> None:
    """Whatever text arrives in whichever fields: 200 and saved, or 400 and nothing changed."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    client = make_client(site)
    token = subscribers.make_token(site, "preferences", sid, lid)
    csrf = csrf_token(site.require_secret(), token)
    values = st.one_of(st.text(max_size=12), st.sampled_from(["²", "١", "6", "23", "24", "weekly", "daily",
                                                              "cong-nghe", "Asia/Tokyo", "", " 7 "]))

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.dictionaries(st.sampled_from(PREF_FIELDS), values, max_size=len(PREF_FIELDS)))
    def post(fields: dict[str, str]) -> None:
        before = (store.get_subscription(sid, lid), store.get_subscriber("lan@example.org"))
        r = client.post(f"/preferences/{token}", data={"csrf": csrf, **fields})
        assert r.status_code in (200, 400), (fields, r.status_code)
        assert "Traceback" not in r.text
        if r.status_code == 400:
            assert error_text(r)
            assert (store.get_subscription(sid, lid), store.get_subscriber("lan@example.org")) == before
        else:
            sub = store.get_subscription(sid, lid)
            assert 0 <= sub.weekday <= 6 and 0 <= sub.send_hour <= 23 and sub.cadence in ("daily", "weekly")
            assert set(sub.categories) <= {"cong-nghe"}

    post()


def test_no_subscribe_input_is_a_500(site: Settings, store: Store) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    client = make_client(site, RateLimits(per_ip=10**6, per_address=10**6))
    values = st.one_of(st.text(max_size=20), st.sampled_from(["tin-sang", "morning", "cong-nghe", "a@example.org",
                                                              "A@Example.org", ""]))

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.dictionaries(st.sampled_from(("email", "name", "list", "categories", "website")), values))
    def post(fields: dict[str, str]) -> None:
        r = client.post("/subscribe", data=fields)
        assert r.status_code in (200, 400), (fields, r.status_code)
        assert "Traceback" not in r.text

    post()


# --- the page's language on every refusal, and a refused form that keeps what the person chose -------


def selected(page: str, name: str) -> list[str]:
    """The values a form control shows as chosen: selected options, checked boxes, or a text input's value."""
    import html

    control = re.search(rf'<select id="{name}" name="{name}"[^>]*>(.*?)</select>', page, re.S)
    if control:
        return re.findall(r'<option value="([^"]*)" selected>', control.group(1))
    boxes = re.findall(rf'<input type="checkbox" name="{name}" value="([^"]*)" checked', page)
    if f'<input type="checkbox" name="{name}"' in page:
        return boxes
    field = re.search(rf'<input id="{name}" type="text" name="{name}" value="([^"]*)"', page)
    return [html.unescape(field.group(1))] if field else []


def test_a_refused_preferences_form_keeps_every_choice_and_puts_the_error_by_its_field(
    site: Settings, store: Store
) -> None:
    store.upsert_articles([Article(guid="g:3", slug="the-thao", title="Thể thao", category="Thể thao",
                                   published=datetime(2026, 11, 21, 8, tzinfo=UTC))])
    import dataclasses

    store.update_list(dataclasses.replace(store.get_list("tin-sang"), categories=["cong-nghe", "the-thao"]))
    sid, lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    client = make_client(site)
    token = subscribers.make_token(site, "preferences", sid, lid)
    before = (store.get_subscription(sid, lid), store.get_subscriber("lan@example.org"))
    chosen = {"csrf": csrf_token(site.require_secret(), token), "cadence": "weekly", "weekday": "4", "send_hour": "6",
              "timezone": "Asia/Tokyo", "name": "Trần Thị Lan", "categories": ["the-thao"]}
    for field, bad, message in [
        ("timezone", "Mars/<b>Olympus</b>",
         "Múi giờ: «Mars/<b>Olympus</b>» không phải là múi giờ IANA, ví dụ Asia/Ho_Chi_Minh hoặc Europe/Berlin."),
        ("send_hour", "25", "Giờ gửi: phải là một số từ 0 đến 23, không phải «25»."),
        ("name", "L" * 101, "Tên của bạn (không bắt buộc): dài 101 ký tự, tối đa 100 ký tự."),
    ]:
        r = client.post(f"/preferences/{token}", data={**chosen, field: bad})
        assert r.status_code == 400 and error_text(r) == message, field
        page = r.text
        assert "<b>Olympus" not in page
        # the error sits by its field and the field points at it
        control = page.index(f'aria-invalid="true" aria-describedby="{field}-error"')
        message = page.index(f'<p class="field-error" id="{field}-error">')
        assert control < message < page.index("<label", control), field  # right after its control
        assert page.count('class="field-error"') == 1 and 'class="notice error"' not in page
        # everything else is what the person chose, not what is stored
        assert selected(page, "cadence") == ["weekly"] and selected(page, "weekday") == ["4"], field
        assert selected(page, "categories") == ["the-thao"], field
        # a value no option holds is not shown as 00:00: an empty option ("leave it as it is") is chosen instead
        assert selected(page, "send_hour") == (["6"] if field != "send_hour" else [""]), field
        assert selected(page, "timezone") == ["Asia/Tokyo" if field != "timezone" else bad], field
        assert selected(page, "name") == ["Trần Thị Lan" if field != "name" else "L" * 101], field
        assert (store.get_subscription(sid, lid), store.get_subscriber("lan@example.org")) == before
    none_ticked = client.post(f"/preferences/{token}", data={**chosen, "categories": [], "send_hour": "x"})
    assert selected(none_ticked.text, "categories") == []  # unticking every topic is a choice too
    saved = client.post(f"/preferences/{token}", data=chosen)
    assert saved.status_code == 200 and selected(saved.text, "send_hour") == ["6"]
    assert 'class="field-error"' not in saved.text and "aria-invalid" not in saved.text


def test_refusals_speak_the_lists_language_not_the_sites(settings: Settings, store: Store, tmp_path: Path) -> None:
    """An English site with a Vietnamese list: everything a reader of the list meets is Vietnamese, and back."""
    from syndicate.web import create_app

    site = settings.with_(language="en")
    store.create_list(NewsList(slug="tin-sang", name="Tin sáng", language="vi"))
    store.create_list(NewsList(slug="morning", name="Morning brief", language="en"))
    vi_sid, vi_lid = subscribe_active(store, site, "lan@example.org", "tin-sang")
    en_sid, en_lid = subscribe_active(store, site, "ann@example.org", "morning")
    vi_token = subscribers.make_token(site, "preferences", vi_sid, vi_lid)
    en_token = subscribers.make_token(site, "preferences", en_sid, en_lid)
    client = Client(create_app(site))
    r = client.post("/subscribe", data={"email": "bob@", "list": "tin-sang"})
    assert r.status_code == 400 and error_text(r) == "«bob@» không phải là địa chỉ email hợp lệ."
    r = client.post("/subscribe", data={"email": "bob@", "list": "morning"})
    assert error_text(r) == "“bob@” is not an email address: there must be something after the @-sign."
    big = b"csrf=" + b"a" * MAX_BODY
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = client.post(f"/preferences/{vi_token}", content=big, headers=form)
    assert r.status_code == 413 and "Yêu cầu quá lớn" in r.text and '<html lang="vi">' in r.text
    r = client.post(f"/preferences/{en_token}", content=big, headers=form)
    assert r.status_code == 413 and "Request too large" in r.text
    for path in ("/list/tin-sang/no/such/page", "/archive/tin-sang/2099-01-01", "/archive/tin-sang/%3Cb%3E"):
        r = client.get(path)
        assert r.status_code == 404 and "Không tìm thấy trang" in r.text and '<html lang="vi">' in r.text, path
        assert "Page not found" not in r.text
    assert "Page not found" in client.get("/list/morning/no/such/page").text
    assert "Page not found" in client.get("/no/such/page").text  # no list: the site's language
    limited = Client(Starlette(routes=routes(WebContext(site), limits=RateLimits(per_ip=1))))
    limited.post("/subscribe", data={"email": "x@example.org", "list": "tin-sang"})
    r = limited.post("/subscribe", data={"email": "y@example.org", "list": "tin-sang"})
    assert r.status_code == 429 and "Bạn đã gửi quá nhiều yêu cầu" in r.text
    r = limited.post("/subscribe", data={"email": "y@example.org", "list": "morning"})
    assert r.status_code == 429 and "You have sent too many requests" in r.text
