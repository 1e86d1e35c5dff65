"""The feed rules of issue 11: embargo, finished-month archives in the site's time zone, JSON paging,
RSS descriptions, hub pings that never fail an import, and the change counter."""

from __future__ import annotations

import json
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import pytest
import uvicorn
from click.testing import CliRunner
from loopback import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syndicate.cli import main
from syndicate.config import Settings
from syndicate.feeds import FORMATS, SITE, Scope, tag_uri
from syndicate.models import Article, NewsList
from syndicate.publish import build_current, publish_all
from syndicate.store import Store, open_store

NOW = datetime.now(UTC).replace(microsecond=0)


def art(i: int, published: datetime, category: str = "Kinh tế", **changes: object) -> Article:
    values: dict[str, object] = dict(
        guid=f"r{i}", title=f"Tin {i}", slug=f"tin-{i}", published=published,
        body_html=f"<p>Nội dung {i}</p>", summary=f"Tóm tắt {i}", category=category,
    )
    values.update(changes)
    return Article(**values)  # type: ignore[arg-type]


def titles(body: bytes) -> list[str]:
    parsed = feedparser.parse(body)
    assert parsed.bozo is False, parsed.get("bozo_exception")
    return [e.title for e in parsed.entries]


# --- the change counter -----------------------------------------------------------------


def test_every_write_to_articles_or_lists_bumps_the_counter(store: Store) -> None:
    seen = [store.change_counter()]

    def moved() -> bool:
        seen.append(store.change_counter())
        return seen[-1] > seen[-2]

    store.upsert_articles([art(1, NOW - timedelta(days=3))])
    assert moved()
    store.upsert_articles([art(1, NOW - timedelta(days=3))])  # unchanged: nothing written
    assert not moved()
    # an edit whose `updated` is older than the newest article's still counts
    store.upsert_articles([art(2, NOW - timedelta(days=1))], now=NOW)
    assert moved()
    store.upsert_articles([art(1, NOW - timedelta(days=3), title="Sửa")], now=NOW - timedelta(days=30))
    assert moved()
    store.create_list(NewsList(slug="sang", name="Sáng"))
    assert moved()
    nl = store.get_list("sang")
    nl.description = "Mới"
    store.update_list(nl)
    assert moved()
    store.remove_list(nl.id or 0)
    assert moved()
    store.remove_article("r1")
    assert moved()
    reopened = open_store(store.path)
    assert reopened.change_counter() == seen[-1]  # persisted, not per connection
    reopened.close()


# --- embargo ----------------------------------------------------------------------------


def test_future_dated_articles_are_in_no_feed_page_or_archive(store: Store, settings: Settings) -> None:
    store.upsert_articles([
        art(1, NOW - timedelta(days=40)),
        art(2, NOW + timedelta(hours=2), title="Tin chưa đến giờ"),
        art(3, NOW + timedelta(days=400), category="Tương lai", title="Tin năm sau"),
    ])
    out = Path(settings.feeds_out)
    publish_all(store, settings)
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert "Tin chưa đến giờ".encode() not in everything and "Tin năm sau".encode() not in everything
    assert not (out / "category" / "tuong-lai").exists()
    next_year = (NOW + timedelta(days=400)).astimezone(settings.tz).strftime("%Y-%m")
    assert not list(out.rglob(f"{next_year}.*"))
    docs, _ = build_current(store, settings, SITE)
    assert titles(next(d.body for d in docs if d.fmt == "atom")) == ["Tin 1"]


def test_the_next_build_after_the_embargo_publishes_it(store: Store, settings: Settings) -> None:
    store.upsert_articles([art(1, NOW - timedelta(days=40)), art(2, NOW + timedelta(hours=2), title="Đến giờ")])
    out = Path(settings.feeds_out)
    publish_all(store, settings, now=NOW)
    assert "Đến giờ" not in titles((out / "atom.xml").read_bytes())
    later = NOW + timedelta(hours=2, seconds=1)
    report = publish_all(store, settings, now=later)
    assert "atom.xml" in report.written and titles((out / "atom.xml").read_bytes())[0] == "Đến giờ"


def test_send_publishes_what_came_due(cli: CliRunner, tmp_path: Path) -> None:
    now = datetime.now(UTC)  # `feed build` reads the wall clock: measure from now, not from import time
    s = open_store(tmp_path / "syndicate.db")
    s.upsert_articles([art(1, now - timedelta(days=40)), art(2, now + timedelta(hours=1), title="Đến giờ")])
    s.close()
    assert cli.invoke(main, ["feed", "build"]).exit_code == 0
    assert "Đến giờ" not in titles((tmp_path / "site/atom.xml").read_bytes())
    at = (now + timedelta(hours=1, minutes=1)).isoformat()
    result = cli.invoke(main, ["send", "--at", at])
    assert result.exit_code == 0, result.output
    assert titles((tmp_path / "site/atom.xml").read_bytes())[0] == "Đến giờ"


def test_publish_due_does_nothing_when_nothing_came_due(store: Store, settings: Settings) -> None:
    from syndicate.publish import publish_due

    store.upsert_articles([art(1, NOW - timedelta(days=40)), art(2, NOW + timedelta(days=2))])
    assert publish_due(store, settings, NOW) is None  # never built: nothing to refresh
    publish_all(store, settings, now=NOW)
    assert publish_due(store, settings, NOW + timedelta(hours=1)) is None
    report = publish_due(store, settings, NOW + timedelta(days=2))
    assert report is not None and "rss.xml" in report.written
    assert publish_all(store, settings, now=NOW + timedelta(days=2)).written == []  # the same bytes as a full build


def test_an_import_after_the_embargo_also_publishes_it(store: Store, settings: Settings) -> None:
    from syndicate.publish import refresh_published

    store.upsert_articles([art(1, NOW - timedelta(days=40)), art(2, NOW + timedelta(hours=1), title="Đến giờ")])
    out = Path(settings.feeds_out)
    publish_all(store, settings, now=NOW)
    later = NOW + timedelta(hours=2)
    result = store.upsert_articles([art(3, NOW - timedelta(days=41), title="Tin cũ")], now=later)
    refresh_published(store, settings, result.changed_categories, guids=result.inserted, now=later)
    assert titles((out / "atom.xml").read_bytes())[:1] == ["Đến giờ"]
    assert publish_all(store, settings, now=later).written == []


# --- archives: finished months only, in the site's time zone ----------------------------


def test_the_open_month_is_not_an_archive(store: Store, settings: Settings) -> None:
    this_month = NOW.astimezone(settings.tz).strftime("%Y-%m")
    store.upsert_articles([art(1, NOW - timedelta(seconds=5)), art(2, NOW - timedelta(days=70))])
    out = Path(settings.feeds_out)
    publish_all(store, settings, now=NOW)
    assert not list(out.rglob(f"{this_month}.*"))
    for fmt in FORMATS:
        for path in out.rglob("feeds/*/*"):
            if fmt == "atom" and path.parent.name == "atom":
                assert b"<fh:archive/>" in path.read_bytes()
    rels = {link.rel: link.href for link in feedparser.parse((out / "atom.xml").read_bytes()).feed.links}
    assert this_month not in rels["prev-archive"]


def test_months_are_bucketed_in_the_site_time_zone(store: Store, settings: Settings) -> None:
    settings = settings.with_(timezone="Asia/Bangkok")  # +07:00
    local = datetime.fromisoformat("2026-11-01T03:00:00+07:00")  # 2026-10-31T20:00Z
    store.upsert_articles([art(1, local, title="Đầu tháng 11"), art(2, local - timedelta(hours=8), title="Cuối tháng 10")])
    out = Path(settings.feeds_out)
    publish_all(store, settings, now=datetime(2027, 1, 5, tzinfo=UTC))
    assert titles((out / "feeds/atom/2026-11.xml").read_bytes()) == ["Đầu tháng 11"]
    assert titles((out / "feeds/atom/2026-10.xml").read_bytes()) == ["Cuối tháng 10"]
    assert json.loads((out / "feeds/json/2026-11.json").read_bytes())["items"][0]["title"] == "Đầu tháng 11"


def test_a_month_becomes_an_archive_when_it_ends(store: Store, settings: Settings) -> None:
    settings = settings.with_(timezone="UTC")
    store.upsert_articles([art(1, datetime(2026, 3, 30, tzinfo=UTC)), art(2, datetime(2026, 2, 3, tzinfo=UTC))])
    out = Path(settings.feeds_out)
    publish_all(store, settings, now=datetime(2026, 3, 31, 23, 59, tzinfo=UTC))
    assert not (out / "feeds/atom/2026-03.xml").exists() and (out / "feeds/atom/2026-02.xml").exists()
    from syndicate.publish import publish_due

    report = publish_due(store, settings, datetime(2026, 4, 1, 0, 1, tzinfo=UTC))
    assert report is not None and "feeds/atom/2026-03.xml" in report.written
    feb = {link.rel: link.href for link in feedparser.parse((out / "feeds/atom/2026-02.xml").read_bytes()).feed.links}
    assert feb["next-archive"].endswith("/feeds/atom/2026-03.xml")


# --- JSON Feed paging -------------------------------------------------------------------


def test_json_next_url_never_repeats_an_item(store: Store, settings: Settings) -> None:
    settings = settings.with_(feeds_items=3, timezone="UTC")
    now = datetime(2026, 6, 15, tzinfo=UTC)
    store.upsert_articles([art(i, datetime(2026, 1, 5, tzinfo=UTC) + timedelta(days=9 * i)) for i in range(16)])
    out = Path(settings.feeds_out)
    publish_all(store, settings, now=now)
    seen: list[str] = []
    url: str | None = settings.base_url + "/feed.json"
    while url:
        doc = json.loads((out / urlsplit(url).path.lstrip("/")).read_bytes())
        seen += [item["id"] for item in doc["items"]]
        url = doc.get("next_url")
    assert len(seen) == len(set(seen)), "next_url repeats items"


# --- RSS description --------------------------------------------------------------------


def test_rss_description_is_cleaned_html_not_a_live_tag(store: Store, settings: Settings) -> None:
    store.upsert_articles([art(1, NOW - timedelta(days=1), summary="Tin <script>alert(1)</script> & <b>đậm</b>")])
    docs, _ = build_current(store, settings, SITE)
    rss = next(d.body for d in docs if d.fmt == "rss")
    description = ET.fromstring(rss).find("channel/item/description")
    assert description is not None and description.text is not None
    # what an RSS reader renders as HTML: no live script, the text still readable
    assert "<script" not in description.text.lower()
    assert "alert(1)" in description.text and "đậm" in description.text


# --- hub pings --------------------------------------------------------------------------


class SlowHub:
    """A WebSub hub on 127.0.0.1 that answers only when released (or never, within a test)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.pings = 0

        async def hub(request: Request) -> Response:
            await request.body()
            self.pings += 1
            while not self.release.is_set():
                await __import__("asyncio").sleep(0.05)
            return Response(status_code=204)

        self.port = free_port()
        app = Starlette(routes=[Route("/hub", hub, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hub"


@pytest.fixture
def slow_hub() -> Iterator[SlowHub]:
    h = SlowHub()
    h.thread.start()
    deadline = time.monotonic() + 120
    while not h.server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield h
    h.release.set()
    h.server.should_exit = True
    h.thread.join(10)


def test_a_slow_hub_never_slows_or_fails_an_import(cli: CliRunner, tmp_path: Path, slow_hub: SlowHub,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNDICATE_FEEDS_HUB_URL", slow_hub.url)
    monkeypatch.setenv("SYNDICATE_FEEDS_HUB_TIMEOUT", "1.5")  # [feeds] hub_timeout: each publish waits this long
    s = open_store(tmp_path / "syndicate.db")
    s.upsert_articles([art(1, NOW - timedelta(days=3)), art(2, NOW - timedelta(days=2), category="Xã hội")])
    s.create_list(NewsList(slug="sang", name="Sáng"))
    s.close()
    started = time.monotonic()
    built = cli.invoke(main, ["feed", "build"])
    assert built.exit_code == 0, built.output
    assert "warning: hub" in built.output  # feed build pings too
    page = tmp_path / "bai.md"
    page.write_text("---\ntitle: Bài mới\npublished: 2026-01-02T08:00:00+07:00\ncategory: Kinh tế\n---\nNội dung.\n",
                    encoding="utf-8")
    imported = cli.invoke(main, ["article", "import", str(page)])
    elapsed = time.monotonic() - started
    assert imported.exit_code == 0, imported.output  # the article landed: a failed ping is a warning
    assert "warning: hub" in imported.output and "error:" not in imported.output
    assert elapsed >= 3.0  # both waited their hub_timeout for the hanging hub
    assert elapsed < 20, f"two publishes with a hanging hub took {elapsed:.1f} s"
    assert slow_hub.pings >= 9  # site, category and list feeds, pinged at once rather than one after another


def test_feed_links_resolve_in_the_static_site(store: Store, settings: Settings) -> None:
    store.upsert_articles([art(1, NOW - timedelta(days=3)), art(2, NOW - timedelta(days=40), category="Xã hội")])
    store.create_list(NewsList(slug="sang", name="Sáng", categories=["kinh-te"]))
    out = Path(settings.feeds_out)
    publish_all(store, settings, now=NOW)
    base = settings.base_url
    for feed in out.rglob("*.xml"):
        parsed = feedparser.parse(feed.read_bytes())
        links = [link.href for link in parsed.feed.links] + [e.link for e in parsed.entries]
        for href in links:
            if not href.startswith(base):
                continue
            path = urlsplit(href).path
            target = out / path.lstrip("/")
            assert target.is_file() or (path.endswith("/") and (target / "index.html").is_file()), (feed, href)
    assert tag_uri(settings, "r1").startswith("tag:")
    assert Scope.news_list("sang").page_path() == "/list/sang/"


# --- fidelity ---------------------------------------------------------------------------


def test_source_language_icons_and_lead_image_reach_every_format(store: Store, settings: Settings) -> None:
    settings = settings.with_(icon="/static/icon.png", logo="https://news.example.org/static/logo.png")
    store.upsert_articles([
        art(1, NOW - timedelta(days=1), source="haiphong.gov.vn", image="https://img.example.org/1.jpg",
            image_alt="Hội nghị", language="vi"),
        art(2, NOW - timedelta(days=2), title="Startup news", language="en", source="Báo Hải Phòng",
            url="https://baohaiphong.vn/a/2.html"),
    ])
    docs = {d.fmt: d.body for d in build_current(store, settings, SITE)[0]}
    rss = ET.fromstring(docs["rss"])
    channel = rss.find("channel")
    assert channel is not None
    assert channel.findtext("image/url") == "https://news.example.org/static/logo.png"
    first, second = channel.findall("item")
    assert (first.find("source").get("url"), first.findtext("source")) == ("https://haiphong.gov.vn/", "haiphong.gov.vn")
    assert (second.find("source").get("url"), second.findtext("source")) == ("https://baohaiphong.vn/", "Báo Hải Phòng")
    assert second.findtext("{http://purl.org/dc/elements/1.1/}language") == "en"
    assert first.find("{http://purl.org/dc/elements/1.1/}language") is None  # the feed's own language
    media = first.find("{http://search.yahoo.com/mrss/}content")
    assert media is not None and media.get("url") == "https://img.example.org/1.jpg" and media.get("medium") == "image"
    encoded = first.findtext("{http://purl.org/rss/1.0/modules/content/}encoded") or ""
    assert encoded.startswith('<figure><img src="https://img.example.org/1.jpg" alt="Hội nghị">')

    atom = feedparser.parse(docs["atom"])
    assert atom.bozo is False
    assert atom.feed.icon == "https://news.example.org/static/icon.png"
    assert atom.feed.logo == "https://news.example.org/static/logo.png"
    assert atom.entries[0].source.title == "haiphong.gov.vn"
    assert atom.entries[0].source.link == "https://haiphong.gov.vn/"
    assert atom.entries[1].source.title == "Báo Hải Phòng"
    assert b'xml:lang="en"' in docs["atom"] and docs["atom"].count(b'xml:lang="en"') == 1

    doc = json.loads(docs["json"])
    assert doc["icon"] == "https://news.example.org/static/logo.png"
    assert doc["favicon"] == "https://news.example.org/static/icon.png"
    assert doc["items"][0]["_syndicate"]["source"] == {"title": "haiphong.gov.vn", "url": "https://haiphong.gov.vn/"}
    assert "language" not in doc["items"][0] and doc["items"][1]["language"] == "en"
    assert doc["items"][0]["content_html"].startswith("<figure><img")


def test_serve_and_feed_build_name_a_category_of_two_spellings_alike(store: Store, settings: Settings) -> None:
    # Found by the feeds state machine: serve named the feed after the newest article's spelling,
    # feed build after the greatest one, so /category/kinh-te/atom.xml differed in its <title>.
    now = datetime.now(UTC)
    store.upsert_articles([art(1, now - timedelta(days=2), category="Kinh tế"),
                           art(2, now - timedelta(days=1), category="Kinh Tế")])
    [(slug, built, count)] = store.public_categories(now)
    assert (slug, count) == ("kinh-te", 2)
    assert store.public_category_name("kinh-te", now) == built
