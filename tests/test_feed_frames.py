"""Feed documents put together from entries serialised one by one (feeds._Frame) equal feedgen's
whole-tree documents byte for byte, and a month's entries are held as bytes, not as feedgen objects."""

from __future__ import annotations

import gc
import os
from datetime import UTC, datetime, timedelta

import pytest
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


# Any text at all in any field, with what lxml refuses (control characters, lone surrogates, U+FFFE),
# what libxml2 escapes differently in text and in attributes, and the probes' own characters.
_ANY = st.lists(st.text(st.characters(codec=None, categories=None), max_size=4) | st.sampled_from(
    ["\x00", "\x0b", "\x1f", "\ufffe", "\ud800", "\r", "\t", "\n", '"', "'", "&", "<", ">", "]]>", "\ue000",
     "\ue001", "&#9;", "\u00a0", "Đ", "\U0001f600"]), max_size=5).map("".join)
_ZONES = st.none() | st.just(UTC) | st.timezones()


@st.composite
def raw_items(draw: st.DrawFn) -> FeedItem:
    """FeedItems as anything may build them, not only feed_item: any text, dates in any zone or none."""
    when = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES)
    fields = {name: draw(_ANY | st.just("")) for name in (
        "id", "title", "link", "summary", "content_html", "content_text", "author", "category", "category_term",
        "image", "image_type", "image_alt", "language", "summary_html", "source", "source_url")}
    published = draw(when)
    updated = draw(when)
    if published.tzinfo is None or updated.tzinfo is None:  # FeedItem makes its ISO dates in UTC: give them
        fields["published_iso"] = fields["updated_iso"] = "x"
    return FeedItem(tags=(), published=published, updated=updated, **fields)


def feedgen_entry(v: tuple[object, ...], fmt: str) -> bytes | None:
    """What a build has feedgen write for the entry values ``v`` in ``fmt``; None: feedgen refuses them."""
    try:
        return feeds._feedgen_entry_bytes(feeds._feedgen_entry(v, feedgen_dates=False), v, fmt)
    except (ValueError, UnicodeError):
        return None


@hypothesis_settings(max_examples=_EXAMPLES, deadline=None)
@given(metas(), st.lists(raw_items(), min_size=1, max_size=3) | articles().map(lambda a: feed_items(a, SETTINGS)))
def test_entry_frames_write_what_feedgen_writes_for_any_item(meta: FeedMeta, items: list[FeedItem]) -> None:
    """An entry spliced from its kind's frame is feedgen's entry byte for byte, whatever the values hold;
    what feedgen (or lxml under it) refuses, the frames are never asked to write."""
    for item in items:
        try:
            v = feeds._entry_values(meta.settings, item, feeds._own_language(meta, item))
        except UnicodeError:  # a lone surrogate in the source's name, for its tag URI: no entry is made
            continue
        shape = tuple(map(bool, v[: feeds._V_TEXT]))
        for fmt in ("rss", "atom"):
            expected = feedgen_entry(v, fmt)
            try:
                frame = feeds._EntryFrame(fmt, shape)
            except ValueError:  # feedgen refuses this kind of entry whatever its values (Atom without a title)
                assert expected is None
                continue
            if expected is None:
                assert not feeds._accepted(v), fmt  # what feedgen refuses is never spliced
            elif feeds._accepted(v):  # (it may refuse more: a bad source name RSS leaves out goes to feedgen)
                assert frame.entry_bytes(v) == expected, fmt


def test_a_months_entries_come_from_frames_and_equal_feedgens_document() -> None:
    """Past the second entry of a kind, entries are spliced from frames, and the documents they make are
    still feedgen's whole-tree documents (escaping, Vietnamese, an image, a source, another language)."""
    items = feed_items([
        Article(guid=f"f{i}", title=f"Tin {i} <b>&amp;</b> \"Hải Phòng\"", slug=f"tin-{i}",
                published=T0 - timedelta(minutes=i), body_html=f"<p>Nội dung {i} &lt;x&gt;</p>\n<p>\u00a0{i}</p>",
                category="Kinh tế", author="Nguyễn Thị Hồng", image=["", "/media/a b.jpg"][i % 2],
                source=["", "Báo Hải Phòng", "haiphong.gov.vn"][i % 3], url="https://baohaiphong.vn/a/1.html",
                language=["vi", "en"][i % 2], summary=f"Tóm tắt\r\n{i}")
        for i in range(24)
    ], SETTINGS)
    meta = FeedMeta(SETTINGS.with_(language="vi"), SITE, feed_updated(items), month="2024-09")
    frames = feeds._entry_frames()
    frames.frames.clear()
    frames.seen.clear()
    cache = EntryCache()
    assert rss_bytes(meta, items, cache) == whole_tree(meta, items, "rss")
    assert atom_bytes(meta, items, cache) == whole_tree(meta, items, "atom")
    made = [key for key, frame in frames.frames.items() if frame is not None]
    assert {fmt for fmt, _shape in made} == {"rss", "atom"} and len(made) >= 6  # kinds: image x source x language


def test_a_frame_escaping_otherwise_than_the_libxml2_here_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The escape rules are libxml2's; a libxml2 that wrote a character otherwise (here: a quote in text
    as &quot;) would make frames that the real entries alone, holding no quote, cannot tell apart. Each
    frame is also tried on every such character before use, so it is refused and feedgen writes them."""
    monkeypatch.setattr(feeds, "_text", lambda value: feeds._attribute(value).replace("&#10;", "\n"))
    items = feed_items([
        Article(guid=f"q{i}", title=f"Tin {i}", slug=f"tin-{i}", published=T0 - timedelta(minutes=i),
                body_html=f"<p>Nội dung {i}</p>", category="Kinh tế")
        for i in range(6)
    ], SETTINGS)
    meta = FeedMeta(SETTINGS, SITE, feed_updated(items))
    frames = feeds._entry_frames()
    frames.frames.clear()
    frames.seen.clear()
    assert rss_bytes(meta, items) == whole_tree(meta, items, "rss")
    assert frames.frames and all(frame is None for frame in frames.frames.values())
    monkeypatch.undo()
    frames.frames.clear()
    frames.seen.clear()
    assert rss_bytes(meta, items) == whole_tree(meta, items, "rss")
    assert frames.frames and all(frame is not None for frame in frames.frames.values())
