"""Feeds read back with feedparser and xml.etree: every field, stable ids, hostile input, golden bytes."""

from __future__ import annotations

import html
import json
import os
import unicodedata
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from syndicate.config import Settings
from syndicate.feeds import (
    FORMATS,
    SITE,
    FeedMeta,
    Scope,
    atom_bytes,
    feed_items,
    feed_updated,
    json_feed_bytes,
    parse_path,
    render_feeds,
    rss_bytes,
    tag_uri,
)
from syndicate.models import Article
from syndicate.publish import build_current, build_month
from syndicate.store import Store

GOLDEN = Path(__file__).parent / "golden" / "feeds"
T0 = datetime(2024, 10, 1, 6, 30, tzinfo=UTC)


def make_article(i: int, **changes: object) -> Article:
    values: dict[str, object] = dict(
        guid=f"news:{i}",
        title=f"Khởi nghiệp đổi mới sáng tạo số {i}",
        slug=f"khoi-nghiep-{i}",
        published=T0 + timedelta(days=i),
        body_html=f"<p>Thành phố hỗ trợ doanh nghiệp {i}.</p><p>Đoạn hai.</p>",
        body_text=f"Thành phố hỗ trợ doanh nghiệp {i}.\n\nĐoạn hai.",
        summary=f"Tóm tắt bài {i}",
        author="Nguyễn Thị Hồng",
        category=["Kinh tế", "Thể thao"][i % 2],
        image=f"https://img.example.org/{i}.jpg",
    )
    values.update(changes)
    return Article(**values)  # type: ignore[arg-type]


def current(store: Store, settings: Settings, scope: Scope = SITE) -> dict[str, bytes]:
    docs, _items = build_current(store, settings, scope)
    return {d.fmt: d.body for d in docs}


def test_every_item_field_reads_back_equal_to_the_store(store: Store, settings: Settings) -> None:
    store.upsert_articles([make_article(i) for i in range(3)])
    stored = {a.guid: a for a in store.newest_articles(10)}
    feeds = current(store, settings)
    for fmt in ("rss", "atom"):
        parsed = feedparser.parse(feeds[fmt])
        assert parsed.bozo is False, (fmt, parsed.get("bozo_exception"))
        assert len(parsed.entries) == 3
        for entry in parsed.entries:
            guid = next(g for g in stored if tag_uri(settings, g) == entry.id)
            a = stored[guid]
            assert entry.title == a.title
            assert entry.link == f"https://news.example.org/articles/{a.slug}/"
            assert entry.summary == a.summary
            # the lead image leads the content, then the article's own HTML
            content = entry.content[0].value
            assert content.startswith("<figure><img") and a.image in content.split("</figure>")[0]
            assert content.endswith("</figure>\n" + a.body_html)
            assert entry.author == a.author
            assert a.category in {entry.tags[0].term, entry.tags[0].get("label")}
            assert entry.published_parsed[:6] == a.published.timetuple()[:6]
            assert entry.updated_parsed[:6] == a.changed.timetuple()[:6]
            assert entry.enclosures[0].href == a.image
            assert entry.enclosures[0].type == "image/jpeg"
        if fmt == "rss":
            assert all(e.guidislink is False for e in parsed.entries)


def test_feed_level_fields(store: Store, settings: Settings) -> None:
    settings = settings.with_(feeds_hub_url="https://hub.example.org/", title="Tin tức", subtitle="Tin mới")
    store.upsert_articles([make_article(i) for i in range(3)])
    store.upsert_articles([make_article(0, title="Sửa lại")], now=T0 + timedelta(days=30))
    newest_change = store.latest_change()
    assert newest_change == T0 + timedelta(days=30)
    feeds = current(store, settings)
    for fmt in ("rss", "atom"):
        f = feedparser.parse(feeds[fmt]).feed
        assert f.title == "Tin tức"
        assert f.subtitle == "Tin mới"
        rels = {link.rel: link.href for link in f.links}
        assert rels["self"] == f"https://news.example.org/{'rss.xml' if fmt == 'rss' else 'atom.xml'}"
        assert rels["alternate"] == "https://news.example.org/"
        assert rels["hub"] == "https://hub.example.org/"
        assert rels["prev-archive"].endswith(f"/feeds/{fmt}/2024-10.xml")
        assert f.language == "vi"
        assert f.updated_parsed[:6] == newest_change.timetuple()[:6]
        assert f.generator == "syndicate"
    assert b"<ttl>60</ttl>" in feeds["rss"]
    no_hub = current(store, settings.with_(feeds_hub_url=""))
    assert b'rel="hub"' not in no_hub["rss"] and b'rel="hub"' not in no_hub["atom"]
    assert "hubs" not in json.loads(no_hub["json"])


def test_json_feed_has_the_1_1_fields(store: Store, settings: Settings) -> None:
    store.upsert_articles([make_article(i) for i in range(2)])
    doc = json.loads(current(store, settings.with_(feeds_hub_url="https://hub.example.org/"))["json"])
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["feed_url"] == "https://news.example.org/feed.json"
    assert doc["home_page_url"] == "https://news.example.org/"
    assert doc["language"] == "vi"
    assert doc["hubs"] == [{"type": "WebSub", "url": "https://hub.example.org/"}]
    # the feed holds items of 2024-10, so paging on to that month would repeat them
    assert "next_url" not in doc
    assert doc["_rfc5005"]["prev_archive"] == "https://news.example.org/feeds/json/2024-10.json"
    a = store.get_article("news:1")
    item = doc["items"][0]
    assert item["id"] == tag_uri(settings, "news:1")
    assert item["url"] == "https://news.example.org/articles/khoi-nghiep-1/"
    assert item["title"] == a.title
    assert item["content_html"] == f'<figure><img src="{a.image}" alt=""></figure>\n{a.body_html}'
    assert item["content_text"] == a.body_text
    assert item["summary"] == a.summary
    assert item["image"] == a.image
    assert item["authors"] == [{"name": a.author}]
    assert item["tags"] == [a.category]
    assert datetime.fromisoformat(item["date_published"]) == a.published
    assert datetime.fromisoformat(item["date_modified"]) == a.changed
    assert [i["id"] for i in doc["items"]] == [tag_uri(settings, "news:1"), tag_uri(settings, "news:0")]


def test_ids_never_change_when_an_article_is_edited(store: Store, settings: Settings) -> None:
    store.upsert_articles([make_article(1)])
    before = feedparser.parse(current(store, settings)["atom"]).entries[0]
    store.upsert_articles(
        [make_article(1, title="Tiêu đề mới", slug="tieu-de-moi", body_html="<p>Khác</p>", url="https://x.example/a")],
        now=T0 + timedelta(days=9),
    )
    feeds = current(store, settings)
    after = feedparser.parse(feeds["atom"]).entries[0]
    assert after.title == "Tiêu đề mới"
    assert after.id == before.id == "tag:news.example.org,2024:article:news:1"
    assert after.updated != before.updated
    assert feedparser.parse(feeds["rss"]).entries[0].id == before.id
    assert json.loads(feeds["json"])["items"][0]["id"] == before.id


HOSTILE = [
    make_article(
        10,
        title="Ctl\x00\x01\x08\x0b\x0c\x1f\x7f end \ufffe<script>alert(1)</script>",
        body_html='<p onclick="x()">ok<script>alert("x")</script><iframe src=//evil></iframe><a href="javascript:1">j</a>',
        summary="bad \x02 summary ]]> <![CDATA[",
        author="\x03Mallory <m@evil>",
        image="javascript:alert(1)",
        url="javascript:alert(1)",
    ),
    make_article(11, title="Broken <b><i>html", body_html="<div><p>unclosed <b>bold <table><tr><td>cell"),
    make_article(12, title="Emoji 🎉👩‍💻🇻🇳 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", body_html="<p>🎉 vui</p>", category="Giải trí 🎬"),
    make_article(13, title="عنوان عربي \u202eRTL\u202c שלום", body_html='<p dir="rtl">مرحبا بالعالم</p>', author="كاتب"),
    make_article(14, title="Một megabyte", body_html="<p>" + ("Chữ Việt có dấu. " * 65000) + "</p>"),
    make_article(15, title=unicodedata.normalize("NFD", "Tiếng Việt tổ hợp"), body_text="chỉ văn bản\n\nđoạn hai", body_html=""),
]


def test_hostile_articles_still_give_well_formed_valid_feeds(store: Store, settings: Settings) -> None:
    store.upsert_articles(HOSTILE)
    feeds = current(store, settings)
    assert len(feeds["rss"]) > 1_000_000
    for fmt in ("rss", "atom"):
        ET.fromstring(feeds[fmt])  # well-formed XML 1.0 or this raises
        parsed = feedparser.parse(feeds[fmt])
        assert parsed.bozo is False, (fmt, parsed.get("bozo_exception"))
        assert len(parsed.entries) == len(HOSTILE)
        for entry in parsed.entries:
            body = entry.content[0].value
            assert "<script" not in body and "javascript:" not in body and "onclick" not in body
            assert "<iframe" not in body
            assert entry.link.startswith("https://news.example.org/articles/")
            assert "enclosures" not in entry or all(e.href.startswith("https://") for e in entry.enclosures)
    doc = json.loads(feeds["json"])
    titles = {i["title"] for i in doc["items"]}
    assert "Emoji 🎉👩‍💻🇻🇳 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢" in titles
    assert "Tiếng Việt tổ hợp" in titles  # NFD in, NFC out
    assert any("عنوان عربي" in t for t in titles)
    assert all("\x00" not in i["title"] and "\x01" not in i["title"] for i in doc["items"])
    assert "Tiếng Việt tổ hợp".encode() in feeds["rss"] and "Tiếng Việt tổ hợp".encode() in feeds["atom"]
    # The JSON Feed is written by orjson: byte for byte the standard library's indent=2, even for this input.
    assert feeds["json"] == (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    text_only = next(i for i in doc["items"] if i["title"] == "Tiếng Việt tổ hợp")
    assert text_only["content_html"] == (
        '<figure><img src="https://img.example.org/15.jpg" alt=""></figure>\n<p>chỉ văn bản</p>\n<p>đoạn hai</p>'
    )


def test_vietnamese_is_byte_for_byte_intact(store: Store, settings: Settings) -> None:
    title = "Hội nghị xúc tiến đầu tư Thành phố Hồ Chí Minh năm 2024"
    store.upsert_articles([make_article(1, title=title)])
    for fmt, body in current(store, settings).items():
        assert title.encode("utf-8") in body, fmt
        assert body.decode("utf-8") == unicodedata.normalize("NFC", body.decode("utf-8"))


def test_empty_site_feed_is_valid_and_stable(store: Store, settings: Settings) -> None:
    first = current(store, settings)
    assert first == current(store, settings)
    for fmt in ("rss", "atom"):
        parsed = feedparser.parse(first[fmt])
        assert parsed.bozo is False and parsed.entries == []
    assert json.loads(first["json"])["items"] == []


def test_every_path_of_the_layout_parses_back() -> None:
    for scope in (SITE, Scope.category("kinh-te", "Kinh tế")):
        for fmt in FORMATS:
            found = parse_path(scope.feed_path(fmt))
            assert found is not None and (found.scope.key, found.fmt, found.month) == (scope.key, fmt, None)
            found = parse_path(scope.archive_path(fmt, "2024-02"))
            assert found is not None and (found.scope.key, found.fmt, found.month) == (scope.key, fmt, "2024-02")
    for bad in ("/rss.json", "/feeds/rss/2024-13.xml", "/feeds/json/2024-01.xml", "/category/Bad/rss.xml",
                "/category/a/../rss.xml", "/feeds/rss/2024-1.xml", "/category//rss.xml"):
        assert parse_path(bad) is None, bad


def _golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert path.exists(), f"{path} missing: run UPDATE_GOLDEN=1 pytest tests/test_feeds.py"
    assert data == path.read_bytes(), f"{name} differs from the golden file (UPDATE_GOLDEN=1 to accept)"


def test_golden_files(store: Store, settings: Settings) -> None:
    settings = settings.with_(title="Tin Thành phố", subtitle="Tin tức mỗi ngày", feeds_hub_url="https://hub.example.org/")
    store.upsert_articles([make_article(i) for i in range(3)] + [make_article(40)], now=T0)
    for fmt, body in current(store, settings).items():
        _golden(f"site.{fmt}", body)
    docs = build_month(store, settings, Scope.category("kinh-te", "Kinh tế"), "2024-10")
    assert docs is not None
    for doc in docs:
        _golden(f"kinh-te-2024-10.{doc.fmt}", doc.body)


def test_writers_are_pure_functions_of_their_input(settings: Settings) -> None:
    items = feed_items([make_article(1)], settings)
    meta = FeedMeta(settings, SITE, feed_updated(items))
    assert rss_bytes(meta, items) == rss_bytes(meta, items)
    assert render_feeds(meta, items) == {"rss": rss_bytes(meta, items), "atom": atom_bytes(meta, items),
                                         "json": json_feed_bytes(meta, items)}



def test_a_shared_entry_cache_changes_no_byte(settings: Settings) -> None:
    """Documents sharing an EntryCache (as a full build's scopes do) equal documents made alone, even
    when one item sits twice in a document or a document is rendered again."""
    from syndicate.feeds import EntryCache

    items = feed_items([make_article(i) for i in range(3)], settings)
    meta = FeedMeta(settings, SITE, feed_updated(items))
    other = FeedMeta(settings, Scope.category("kinh-te", "Kinh tế"), feed_updated(items), month="2024-10")
    twice = [items[0], *items, items[2]]
    cache = EntryCache()
    for fmt, writer in (("rss", rss_bytes), ("atom", atom_bytes)):
        assert writer(meta, items, cache) == writer(meta, items)
        assert writer(other, items[1:], cache) == writer(other, items[1:])
        assert writer(meta, twice, cache) == writer(meta, twice)
        assert writer(meta, twice).count({"rss": b"<item>", "atom": b"<entry>"}[fmt]) == 5
        assert writer(meta, items, cache) == writer(meta, items)
        assert render_feeds(meta, items, (fmt,), cache)[fmt] == writer(meta, items)
    cache.forget()
    assert render_feeds(meta, items, cache=cache) == render_feeds(meta, items)

# --- per-list feeds ---------------------------------------------------------------------


def _three_categories(store: Store) -> None:
    cats = ["Kinh tế", "Thể thao", "Xã hội"]
    store.upsert_articles([make_article(i, category=cats[i % 3]) for i in range(12)])


def test_list_feeds_hold_only_the_lists_categories_newest_first(store: Store, settings: Settings) -> None:
    from syndicate.models import NewsList
    from syndicate.publish import resolve_scope

    _three_categories(store)
    store.create_list(NewsList(slug="ban-tin-sang", name="Bản tin sáng", description="Kinh tế và xã hội mỗi sáng",
                               categories=["kinh-te", "xa-hoi"], language="vi"))
    settings = settings.with_(feeds_items=5, language="en")
    scope = resolve_scope(store, Scope.news_list("ban-tin-sang"))
    assert scope is not None and scope.categories == ("kinh-te", "xa-hoi")
    feeds = current(store, settings, scope)
    wanted = [make_article(i) for i in range(11, -1, -1) if i % 3 != 1][:5]  # newest 5 outside Thể thao
    for fmt in ("rss", "atom"):
        parsed = feedparser.parse(feeds[fmt])
        assert parsed.bozo is False, (fmt, parsed.get("bozo_exception"))
        assert parsed.feed.title == "Bản tin sáng"
        assert parsed.feed.get("subtitle", parsed.feed.get("description")) == "Kinh tế và xã hội mỗi sáng"
        assert [e.title for e in parsed.entries] == [a.title for a in wanted]
        assert {e.tags[0].term for e in parsed.entries} <= {"kinh-te", "xa-hoi", "Kinh tế", "Xã hội"}
    doc = json.loads(feeds["json"])
    assert doc["title"] == "Bản tin sáng" and doc["description"] == "Kinh tế và xã hội mỗi sáng"
    assert [item["title"] for item in doc["items"]] == [a.title for a in wanted]
    assert {item["tags"][0] for item in doc["items"]} == {"Kinh tế", "Xã hội"}
    assert feedparser.parse(feeds["atom"]).feed.language == "vi"
    assert json.loads(feeds["json"])["language"] == "vi"
    assert json.loads(feeds["json"])["feed_url"] == "https://news.example.org/list/ban-tin-sang/feed.json"
    atom = feedparser.parse(feeds["atom"])
    assert {link.rel: link.href for link in atom.feed.links}["self"] == "https://news.example.org/list/ban-tin-sang/atom.xml"
    # the archive month of the list holds the list's articles of that month, and nothing else
    month = build_month(store, settings, scope, "2024-10")
    assert month is not None
    archived = feedparser.parse(next(d.body for d in month if d.fmt == "atom"))
    assert archived.bozo is False
    assert {e.title for e in archived.entries} == {make_article(i).title for i in range(12) if i % 3 != 1}


def test_a_list_covering_every_category_carries_every_article(store: Store, settings: Settings) -> None:
    from syndicate.models import NewsList
    from syndicate.publish import resolve_scope

    _three_categories(store)
    store.create_list(NewsList(slug="tat-ca", name="Tất cả", description="Mọi tin", categories=[]))
    scope = resolve_scope(store, Scope.news_list("tat-ca"))
    assert scope is not None and scope.category_slugs is None
    parsed = feedparser.parse(current(store, settings, scope)["rss"])
    assert parsed.bozo is False and parsed.feed.title == "Tất cả"
    assert [e.title for e in parsed.entries] == [make_article(i).title for i in range(11, -1, -1)]
    assert resolve_scope(store, Scope.news_list("khong-co")) is None


def test_newest_in_categories_matches_a_plain_filter(store: Store) -> None:
    _three_categories(store)
    everything = store.newest_articles(100)
    for slugs in (["kinh-te"], ["kinh-te", "the-thao"], ["the-thao", "xa-hoi", "kinh-te"], ["khong-co"], []):
        expected = [a.guid for a in everything if a.category_slug in slugs][:4]
        assert [a.guid for a in store.newest_in_categories(4, slugs)] == expected
        assert [a.guid for a in store.articles_in_month_in("2024-10", slugs)] == [
            a.guid for a in everything if a.category_slug in slugs and a.published.month == 10
        ]
    assert [a.guid for a in store.newest_in_categories(4, None)] == [a.guid for a in everything[:4]]
    assert store.adjacent_months_in("2024-09", ["kinh-te", "xa-hoi"]) == (None, "2024-10")


_EXAMPLES = int(os.environ.get("SYNDICATE_EXAMPLES", "300"))


@hypothesis_settings(max_examples=_EXAMPLES * 3, deadline=None)
@given(st.text() | st.sampled_from(["\ufeffTóm tắt", "a\xa0b &nbsp; <3 > &amp;", "x\u0301 &\u0338", "<!-- c -->"]))
def test_summary_html_is_what_nh3_makes_of_the_escaped_summary(text: str) -> None:
    """A build skips nh3 for a summary (clean text, escaped): the bytes must be what nh3 gives."""
    from syndicate.feeds import summary_html
    from syndicate.sanitize import clean_html, clean_text

    summary = clean_text(text).strip()
    assert summary_html(summary) == clean_html(html.escape(summary, quote=False))
