"""Feed documents put together from entries serialised one by one (feeds._Frame) equal feedgen's
whole-tree documents byte for byte, and a month's entries are held as bytes, not as feedgen objects."""

from __future__ import annotations

import gc
import os
from datetime import UTC, datetime, timedelta

from feedgen.entry import FeedEntry
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from lxml import etree

from syndicate import feeds
from syndicate.config import Settings
from syndicate.feeds import SITE, EntryCache, FeedItem, FeedMeta, Scope, atom_bytes, feed_items, feed_updated, rss_bytes
from syndicate.models import Article

_EXAMPLES = int(os.environ.get("SYNDICATE_EXAMPLES", "100"))
T0 = datetime(2024, 10, 1, 6, 30, tzinfo=UTC)
SETTINGS = Settings(base_url="https://news.example.org", title="Tin Thành phố")


def whole_tree(meta: FeedMeta, items: list[FeedItem], fmt: str) -> bytes:
    """What feedgen writes from one tree holding every entry (the way documents were made before)."""
    fg = feeds._generator(meta, fmt)
    for item in items:
        fe = feeds._entry(meta.settings, item, feeds._own_language(meta, item))
        fg.add_entry(fe, order="append")
    out: bytes = (fg.rss_str if fmt == "rss" else fg.atom_str)(pretty=True, encoding="UTF-8")
    return out


# Text meant to trip a serialiser that depends on context: line breaks inside content (libxml2 must
# not indent them), markup-looking text, CDATA ends, entities, non-ASCII, spaces at the ends.
_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(["", " x ", "a\n\nb", "<p>x</p>\n<p>y</p>", "]]>", "&amp; &lt;", "Tóm tắt\u00a0bài", "\t\n"])
_HTML = st.lists(
    st.sampled_from(["<p>Đoạn</p>", "\n", "<br>", "<img src='https://i.example.org/a.png'>", "<b>x", "</p>", "  ",
                     "<pre>a\n  b</pre>", "<table><tr><td>1</td></tr></table>", "&nbsp;", "<script>x</script>"]),
    max_size=6,
).map("".join)


@st.composite
def articles(draw: st.DrawFn) -> list[Article]:
    out = []
    for i in range(draw(st.integers(0, 4))):
        out.append(Article(
            guid=f"g:{i}:{draw(st.text(max_size=5))}",
            title=draw(_TEXT),
            slug=f"s-{i}",
            published=draw(st.just(T0 - timedelta(hours=i, seconds=i)) | st.datetimes(
                min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))),
            updated=draw(st.none() | st.just(T0 + timedelta(days=1))),
            body_html=draw(_HTML | _TEXT),
            body_text=draw(_TEXT),
            summary=draw(_TEXT),
            author=draw(st.sampled_from(["", "Nguyễn Thị Hồng", "a\nb"])),
            category=draw(st.sampled_from(["", "Kinh tế", "Thể thao"])),
            tags=draw(st.lists(st.sampled_from(["x", "Kinh tế", " "]), max_size=2)),
            image=draw(st.sampled_from(["", "https://img.example.org/1.jpg", "/media/2.png"])),
            image_alt=draw(st.sampled_from(["", "Ảnh \"x\""])),
            source=draw(st.sampled_from(["", "haiphong.gov.vn", "Báo Hải Phòng", "https://src.example.org/feed"])),
            url=draw(st.sampled_from(["", "https://baohaiphong.vn/a/1.html"])),
            language=draw(st.sampled_from(["", "vi", "en"])),
        ))
    return out


@st.composite
def metas(draw: st.DrawFn) -> FeedMeta:
    settings = SETTINGS.with_(
        feeds_hub_url=draw(st.sampled_from(["", "https://hub.example.org/"])),
        icon=draw(st.sampled_from(["", "/icon.png"])),
        logo=draw(st.sampled_from(["", "/logo.png"])),
        language=draw(st.sampled_from(["vi", "en", ""])),
    )
    scope = draw(st.sampled_from([
        SITE, Scope.category("kinh-te", "Kinh tế"),
        Scope.news_list("sang", "Bản tin sáng", "Mỗi sáng", "en", ["kinh-te"]),
    ]))
    month = draw(st.sampled_from([None, "2024-09"]))
    return FeedMeta(settings, scope, T0, month=month, prev_month=draw(st.sampled_from([None, "2024-08"])),
                    next_month="2024-10" if month else None)


@hypothesis_settings(max_examples=_EXAMPLES, deadline=None)
@given(metas(), articles(), st.data())
def test_documents_from_serialised_entries_equal_feedgens_whole_tree(
    meta: FeedMeta, batch: list[Article], data: st.DataObject
) -> None:
    items = feed_items(batch, meta.settings)
    # the same item twice in a document, and a shared cache, as a full build's scopes use it
    order = data.draw(st.lists(st.sampled_from(items), max_size=6)) if items else []
    shared = EntryCache()
    for fmt, writer in (("rss", rss_bytes), ("atom", atom_bytes)):
        expected = whole_tree(meta, items, fmt)
        assert writer(meta, items) == expected
        assert writer(meta, items, shared) == expected
        assert writer(meta, order, shared) == whole_tree(meta, order, fmt)
        etree.fromstring(expected)  # well-formed, whatever the text held


def test_an_empty_document_is_feedgens_document_without_entries() -> None:
    meta = FeedMeta(SETTINGS, SITE, T0)
    assert rss_bytes(meta, []) == whole_tree(meta, [], "rss")
    assert atom_bytes(meta, []) == whole_tree(meta, [], "atom")


def test_a_month_cache_holds_bytes_not_feedgen_entries_or_elements() -> None:
    """The cache keeps each entry's bytes only: no feedgen entry and no lxml element stays alive with it
    (they were most of a month's peak memory)."""
    items = feed_items([
        Article(guid=f"m{i}", title=f"Tin {i}", slug=f"tin-{i}", published=T0 - timedelta(minutes=i),
                body_html="<p>Nội dung</p>", category="Kinh tế")
        for i in range(50)
    ], SETTINGS)
    cache = EntryCache()
    for meta in (FeedMeta(SETTINGS, SITE, feed_updated(items), month="2024-09"),
                 FeedMeta(SETTINGS, Scope.category("kinh-te", "Kinh tế"), feed_updated(items), month="2024-09")):
        rss_bytes(meta, items, cache)
        atom_bytes(meta, items, cache)
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, FeedEntry)] == []
    held = [o for o in gc.get_referents(*cache._entries.values()) if isinstance(o, dict)]
    assert held and all(isinstance(v, bytes) for d in held for v in d.values())


def test_threads_rendering_at_once_each_get_their_own_bytes() -> None:
    """serve renders feeds in a thread pool: each thread lends its entries to its own frames."""
    from concurrent.futures import ThreadPoolExecutor

    batches = [feed_items([
        Article(guid=f"t{n}:{i}", title=f"Tin {n}.{i}", slug=f"tin-{n}-{i}", published=T0 - timedelta(minutes=i),
                body_html=f"<p>Nội dung {n}</p>\n<p>{i}</p>", category="Kinh tế", language=["vi", "en"][i % 2])
        for i in range(30)
    ], SETTINGS) for n in range(8)]
    meta = FeedMeta(SETTINGS, SITE, T0)
    expected = [(whole_tree(meta, items, "rss"), whole_tree(meta, items, "atom")) for items in batches]

    def render(items: list[FeedItem]) -> tuple[bytes, bytes]:
        for _ in range(5):
            out = (rss_bytes(meta, items), atom_bytes(meta, items))
        return out

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(render, batches)) == expected


@hypothesis_settings(max_examples=_EXAMPLES * 3, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.none() | st.just(UTC) | st.timezones()))
def test_rfc2822_writes_what_feedgen_writes(value: datetime) -> None:
    from feedgen.util import formatRFC2822

    assert feeds.rfc2822(value) == formatRFC2822(value)
