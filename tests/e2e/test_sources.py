"""Followed sources against a real HTTP server on 127.0.0.1: conditional GET, new and edited items,
failures beside good sources, the safe fetcher's limits, and the seed article out of a news page."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from syndicate.cli import main
from syndicate.config import Settings
from syndicate.ingest import parse_source
from syndicate.publish import publish_all
from syndicate.sources import add_source, run_fetch
from syndicate.store import Store

ROOT = Path(__file__).resolve().parents[2]
SEED_HTML = ROOT / "data" / "pages" / "hai-phong-khoi-nghiep.html"
SEED_TXT = ROOT / "data" / "articles" / "vi" / "hai-phong-khoi-nghiep.txt"
T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def rss(items: list[tuple[str, str, str]]) -> bytes:
    entries = "".join(
        f"<item><guid>{g}</guid><title>{t}</title><link>https://news.example.org/{g}</link>"
        f"<pubDate>Fri, 20 Nov 2026 08:00:00 +0700</pubDate><description>{d}</description></item>"
        for g, t, d in items
    )
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Tin Hải Phòng</title>'
            f"<link>https://news.example.org/</link><description>x</description>{entries}</channel></rss>").encode()


@dataclass
class Site:
    """A tiny web site whose pages the test changes; it records what each request asked."""

    pages: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    clients: list[int] = field(default_factory=list)  # the client's port of each request: one per connection
    delays: dict[str, float] = field(default_factory=dict)  # path -> seconds to wait before answering
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location of a 302
    url: str = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        path = request.url.path
        self.requests.append((path, dict(request.headers)))
        self.clients.append(request.client.port if request.client else 0)
        if path in self.delays:
            await asyncio.sleep(self.delays[path])
        response: Response
        if path == "/slow":
            async def drip():  # type: ignore[no-untyped-def]
                for _ in range(30):
                    yield b"<"
                    await asyncio.sleep(0.5)
            response = StreamingResponse(drip(), media_type="application/rss+xml")
        elif path in self.redirects:
            response = Response(status_code=302, headers={"location": self.redirects[path]})
        elif path == "/elsewhere":
            response = Response(status_code=302, headers={"location": self.url.replace("127.0.0.1", "localhost") + "/feed.xml"})
        elif path in self.pages:
            status, ctype, body = self.pages[path]
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if request.headers.get("if-none-match") == etag:
                response = Response(status_code=304, headers={"etag": etag})
            else:
                response = Response(body, status_code=status, media_type=ctype, headers={"etag": etag})
        else:
            response = Response(b"not here", status_code=404)
        await response(scope, receive, send)

    def asked(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if p == path]


@pytest.fixture
def site(live_server: Callable[[], object]) -> Site:
    s = Site()
    srv = live_server()
    s.url = srv.url  # type: ignore[attr-defined]
    srv.start(s)  # type: ignore[attr-defined]
    return s


@pytest.fixture
def cfg(settings: Settings) -> Settings:
    return settings.with_(fetch_allow_private=True, fetch_timeout=20.0)


def test_a_feed_is_fetched_conditionally_and_items_arrive_later(store: Store, cfg: Settings, site: Site) -> None:
    site.pages["/feed.xml"] = (200, "application/rss+xml", rss([("a1", "Tin một", "Mở đầu")]))
    s = add_source(store, site.url + "/feed.xml", every="30m", now=T0)
    run = run_fetch(store, cfg, now=T0)
    assert [(r.new, r.error) for r in run.results] == [(1, "")]
    assert store.get_article("a1").title == "Tin một"
    # not due yet: nothing is asked
    assert run_fetch(store, cfg, now=T0 + timedelta(minutes=10)).results == []
    # due again, unchanged: a conditional GET answered 304
    run = run_fetch(store, cfg, now=T0 + timedelta(minutes=31))
    assert run.results[0].not_modified
    assert site.asked("/feed.xml")[-1]["if-none-match"].startswith('"')
    # an item appears, another is edited; one that leaves the feed stays in the store
    site.pages["/feed.xml"] = (200, "application/rss+xml", rss([("a2", "Tin hai", "Mới"), ("a1", "Tin một (sửa)", "Mở đầu")]))
    run = run_fetch(store, cfg, now=T0 + timedelta(hours=2))
    assert (run.results[0].new, run.results[0].updated) == (1, 1)
    assert store.get_article("a1").title == "Tin một (sửa)"
    site.pages["/feed.xml"] = (200, "application/rss+xml", rss([("a3", "Tin ba", "Khác")]))
    run_fetch(store, cfg, now=T0 + timedelta(hours=3))
    assert store.get_article("a2").title == "Tin hai"
    state = store.get_source(s.id)
    assert state.items_seen == 3 and state.failures == 0 and state.etag


def test_one_failing_source_never_stops_the_others(store: Store, cfg: Settings, site: Site) -> None:
    site.pages["/good.xml"] = (200, "application/rss+xml", rss([("g1", "Tin tốt", "x")]))
    site.pages["/broken.xml"] = (500, "text/plain", b"boom")
    site.pages["/junk.xml"] = (200, "application/rss+xml", b"this is not a feed")
    good = add_source(store, site.url + "/good.xml", now=T0)
    broken = add_source(store, site.url + "/broken.xml", every="30m", now=T0)
    junk = add_source(store, site.url + "/junk.xml", now=T0)
    steps: list[tuple[int, int]] = []
    run = run_fetch(store, cfg, now=T0, on_progress=lambda done, total: steps.append((done, total)))
    assert steps == [(i, 6) for i in range(1, 7)]  # each source fetched, then each imported (failures too)
    by_id = {r.source.id: r for r in run.results}
    assert by_id[good.id].new == 1 and by_id[good.id].ok
    assert by_id[broken.id].error == "HTTP 500 Internal Server Error"
    assert by_id[junk.id].error == "not an RSS or Atom feed"
    assert not run.ok and len(run.failed) == 2
    state = store.get_source(broken.id)
    assert state.failures == 1 and state.next_due == T0 + timedelta(hours=1)  # backs off: 2 x 30m
    run_fetch(store, cfg, now=T0 + timedelta(hours=1))
    assert store.get_source(broken.id).next_due == T0 + timedelta(hours=3)  # then 4 x 30m


def test_the_fetchers_limits_hold_for_sources(store: Store, settings: Settings, site: Site) -> None:
    site.pages["/feed.xml"] = (200, "application/rss+xml", rss([("x", "X", "x")]))
    other = add_source(store, site.url + "/elsewhere", now=T0)
    slow = add_source(store, site.url + "/slow", now=T0)
    run = run_fetch(store, settings.with_(fetch_allow_private=True, fetch_timeout=2.0), now=T0)
    by_id = {r.source.id: r.error for r in run.results}
    assert by_id[other.id].startswith(f"refused a redirect to {site.url.replace('127.0.0.1', 'localhost')}/feed.xml: another host")
    assert by_id[slow.id] == "no complete answer within 2 s (the total deadline)"
    # and a private address is refused unless allowed
    refused = add_source(store, site.url + "/feed.xml", now=T0)
    run = run_fetch(store, settings, now=T0, source_id=refused.id)
    assert run.results[0].error == "refused: 127.0.0.1 is a loopback address (set [fetch] allow_private = true to allow it)"


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.split("\n") if p.strip()]


def test_a_news_page_yields_the_seed_article(store: Store, cfg: Settings, site: Site) -> None:
    site.pages["/tin-tuc/khoi-nghiep.html"] = (200, "text/html; charset=utf-8", SEED_HTML.read_bytes())
    add_source(store, site.url + "/tin-tuc/khoi-nghiep.html", kind="page", now=T0)
    run = run_fetch(store, cfg, now=T0)
    assert run.ok and run.results[0].new == 1
    got = store.get_article(site.url + "/tin-tuc/khoi-nghiep.html")
    seed = next(iter(parse_source(str(SEED_TXT))))
    seed = getattr(seed, "article", seed)
    assert got.title == seed.title
    assert _paragraphs(got.body_text) == _paragraphs(seed.body_text)  # every paragraph, captions too, in order
    assert "KH&CN\xa0trân trọng" in got.body_text  # the no-break space as written
    assert (got.author, got.source, got.category) == ("Nguyễn Hải", "haiphong.gov.vn", "Công nghệ")
    assert got.published == datetime(2024, 10, 10, 1, 30, tzinfo=UTC)
    for boilerplate in ("Tin khác", "cookies", "Read More", "Trang chủ", "Dương Kinh"):
        assert boilerplate not in got.body_text
    assert got.body_html.count("<figcaption>") == 3 and "<script" not in got.body_html


def test_an_index_page_follows_its_article_links_once(store: Store, cfg: Settings, site: Site) -> None:
    site.pages["/tin-tuc/khoi-nghiep.html"] = (200, "text/html; charset=utf-8", SEED_HTML.read_bytes())
    site.pages["/tin-tuc/"] = (200, "text/html; charset=utf-8", (
        '<html><body><nav><a href="/">Trang chủ</a></nav><h1>Công nghệ</h1><ul>'
        '<li><a href="/tin-tuc/khoi-nghiep.html">Tìm kiếm cơ hội</a></li>'
        '<li><a href="/tin-tuc/mat-tich.html">Bài đã gỡ</a></li>'
        '<li><a href="https://other.example/x.html">Ngoài</a></li></ul></body></html>').encode())
    s = add_source(store, site.url + "/tin-tuc/", kind="index", category="Công nghệ", now=T0)
    run = run_fetch(store, cfg, now=T0)
    assert run.ok and run.results[0].new == 1
    assert [n for n in run.results[0].notes if "mat-tich" in n]  # a dead link is a note, not a failing source
    asked = len(site.asked("/tin-tuc/khoi-nghiep.html"))
    site.pages["/tin-tuc/"] = (200, "text/html; charset=utf-8", site.pages["/tin-tuc/"][2] + b"<!-- changed -->")
    run_fetch(store, cfg, now=T0 + timedelta(hours=1))
    assert len(site.asked("/tin-tuc/khoi-nghiep.html")) == asked  # read once, never again
    assert store.get_source(s.id).failures == 0


def test_fetch_command_end_to_end_into_the_feed(store: Store, cfg: Settings, site: Site, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = Path(cfg.feeds_out)
    publish_all(store, cfg, out)  # published once: later fetches refresh the feeds
    site.pages["/feed.xml"] = (200, "application/rss+xml", rss([("e1", "Tin đầu tiên", "x")]))
    site.pages["/down.xml"] = (503, "text/plain", b"later")
    monkeypatch.chdir(tmp_path)
    for key, value in {"SYNDICATE_DB": cfg.db, "SYNDICATE_SECRET_KEY": cfg.secret_key.get(),
                       "SYNDICATE_FETCH_ALLOW_PRIVATE": "true", "SYNDICATE_FEEDS_OUT": str(out),
                       "SYNDICATE_BASE_URL": cfg.base_url}.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    assert runner.invoke(main, ["source", "add", site.url + "/feed.xml", "--every", "1h"]).exit_code == 0
    assert runner.invoke(main, ["source", "add", site.url + "/down.xml"]).exit_code == 0
    result = runner.invoke(main, ["fetch"])
    assert result.exit_code == 1
    assert "fetched 2 sources: 1 new, 0 updated articles; 0 not modified; 1 failed" in result.stdout
    assert "HTTP 503 Service Unavailable" in result.stderr
    entries = feedparser.parse((out / "atom.xml").read_bytes()).entries
    assert [e.title for e in entries] == ["Tin đầu tiên"]
    listing = runner.invoke(main, ["source", "ls"])
    assert "failing x1, backing off" in listing.stdout and "last error: HTTP 503" in listing.stdout


def bare_rss(titles: list[str]) -> bytes:
    """A feed whose items carry no guid, no link and no date: only a title and a description."""
    items = "".join(f"<item><title>{t}</title><description>Nội dung: {t}</description></item>" for t in titles)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Bảng tin phường</title>'
            f"<link>https://phuong.example.org/</link><description>x</description>{items}</channel></rss>").encode()


def test_items_without_guid_link_or_date_are_dated_when_first_seen(store: Store, cfg: Settings, site: Site) -> None:
    site.pages["/bare.xml"] = (200, "application/rss+xml", bare_rss(["Lịch cắt điện", "Tiêm chủng"]))
    add_source(store, site.url + "/bare.xml", now=T0)
    run = run_fetch(store, cfg, now=T0)
    assert [(r.new, r.error) for r in run.results] == [(2, "")]
    first = store.get_article("urn:syndicate:lich-cat-dien")
    assert first.published == T0 and first.url == ""
    later = T0 + timedelta(hours=1)
    site.pages["/bare.xml"] = (200, "application/rss+xml", bare_rss(["Họp tổ dân phố", "Lịch cắt điện", "Tiêm chủng"]))
    run = run_fetch(store, cfg, now=later)
    assert [(r.new, r.updated, r.unchanged) for r in run.results] == [(1, 0, 2)]
    assert store.get_article("urn:syndicate:lich-cat-dien").published == T0  # the date it was first seen, kept
    assert store.get_article("urn:syndicate:hop-to-dan-pho").published == later


def test_a_round_of_conditional_gets_reuses_kept_alive_connections(store: Store, cfg: Settings, site: Site) -> None:
    for n in range(8):
        site.pages[f"/feed{n}.xml"] = (200, "application/rss+xml", rss([(f"k{n}", f"Tin {n}", "x")]))
        add_source(store, f"{site.url}/feed{n}.xml", now=T0)
    assert len(run_fetch(store, cfg, now=T0, concurrency=2).results) == 8
    del site.clients[:]
    run = run_fetch(store, cfg, now=T0 + timedelta(hours=1), concurrency=2)
    assert [r.not_modified for r in run.results] == [True] * 8
    assert len(site.clients) == 8 and len(set(site.clients)) <= 2  # two connections for eight requests


def test_waiting_for_a_connection_slot_does_not_count_against_the_deadline(
        store: Store, settings: Settings, site: Site) -> None:
    for n in range(3):
        site.pages[f"/nap{n}.xml"] = (200, "application/rss+xml", rss([(f"n{n}", f"Tin {n}", "x")]))
        site.delays[f"/nap{n}.xml"] = 1.0
        add_source(store, f"{site.url}/nap{n}.xml", now=T0)
    started = time.monotonic()
    run = run_fetch(store, settings.with_(fetch_allow_private=True, fetch_timeout=3.0), now=T0, concurrency=1)
    assert [r.error for r in run.results] == ["", "", ""] and [r.new for r in run.results] == [1, 1, 1]
    assert time.monotonic() - started >= 3.0  # one at a time: the last waited two seconds for its turn


def test_fetch_takes_its_own_lock_beside_sends(store: Store, cfg: Settings) -> None:
    from syndicate.errors import LockError
    from syndicate.sender.lock import run_lock
    from syndicate.sources import fetch_lock

    with run_lock(cfg):  # a send running: a fetch may run beside it
        assert run_fetch(store, cfg).summary() == "fetched 0 sources: nothing was due"
    with fetch_lock(cfg), pytest.raises(LockError, match=r"^another `syndicate fetch` is running \(pid \d+"):
        run_fetch(store, cfg)
