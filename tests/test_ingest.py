"""Ingestion: every format, the sample page, bad files, re-imports, hostile HTML, the CLI."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from loopback import free_port

from syndicate.cli import main
from syndicate.errors import InputError
from syndicate.fetcher import FetchPolicy
from syndicate.ingest import detect_format, import_paths, parse_published
from syndicate.models import Article
from syndicate.sanitize import slugify
from syndicate.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_VI = ROOT / "data" / "articles" / "vi" / "hai-phong-khoi-nghiep.txt"  # shared/samples/news-page-vi.txt
DATA = ROOT / "data"
SEED_TITLE = (
    "Tìm kiếm cơ hội trong việc kết nối công nghệ, thúc đẩy phát triển hệ sinh thái "
    "khởi nghiệp đổi mới sáng tạo tại Hải Phòng"
)

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>Tin Cảng</title><link>https://tin.example.org/</link><description>d</description>
<item><title>Tàu lớn cập cảng</title><link>https://tin.example.org/a</link><guid>tin-a</guid>
<pubDate>Sat, 21 Nov 2026 09:00:00 +0700</pubDate><category>Kinh tế</category><category>cảng</category>
<content:encoded><![CDATA[<p onclick="x()">Nội dung <script>alert(1)</script><a href="javascript:alert(2)">xem</a></p>]]></content:encoded>
</item>
<item><title>Second item</title><link>https://tin.example.org/b</link>
<pubDate>Sun, 22 Nov 2026 10:00:00 +0000</pubDate><description>Plain &lt;b&gt;summary&lt;/b&gt;</description></item>
</channel></rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom news</title><id>urn:x</id>
<updated>2026-11-20T00:00:00Z</updated>
<entry><title>Atom entry</title><id>urn:uuid:1234</id><updated>2026-11-20T08:00:00Z</updated>
<published>2026-11-19T08:00:00Z</published><author><name>Ann</name></author>
<category term="Technology"/><content type="html">&lt;p&gt;Body &lt;em&gt;text&lt;/em&gt;&lt;/p&gt;</content></entry>
</feed>
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def by_title(store: Store, title: str) -> Article:
    matches = [a for a in store.newest_articles(1000) if a.title == title]
    assert len(matches) == 1, [a.title for a in store.newest_articles(1000)]
    return matches[0]


# --- plain-text news pages -------------------------------------------------------------------


def test_sample_page_parts(store: Store, tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    shutil.copy(SAMPLE_VI, page)
    os.utime(page, (1795000000, 1795000000))
    report = import_paths(store, [page])
    assert report.errors == [] and report.inserted == 1
    assert report.notes == [f"{page}: published from file mtime (2026-11-18 11:06 UTC)"]
    a = store.get_article(store.newest_articles(1)[0].guid)
    assert a.title == SEED_TITLE
    assert a.category == "Công nghệ" and a.category_slug == "cong-nghe"
    assert a.author == "Nguyễn Hải"
    assert a.source == "haiphong.gov.vn"
    assert a.language == "vi"
    assert a.published == datetime(2026, 11, 18, 11, 6, 40, tzinfo=UTC)
    assert a.summary.startswith("Trong khuôn khổ chuyến công tác tại Hoa Kỳ và Canada")
    for junk in ("Tin khác", "cookies", "Read More", "Nguồn tin", "Nguyễn Hải", "Dương Kinh"):
        assert junk not in a.body_text and junk not in a.body_html, junk
    # The page's no-break space is text as written: kept in the text, the HTML and the summary;
    # the line holding only a no-break space is still a paragraph break, not a paragraph.
    assert "KH&CN\xa0trân trọng" in a.body_text and "KH&amp;CN\xa0trân trọng" in a.body_html
    assert "\n\n\xa0" not in a.body_text and "<p>\xa0" not in a.body_html
    assert a.body_text.endswith("hệ sinh thái khởi nghiệp đổi mới sáng tạo./.")
    assert '<p class="caption"><em>Quang cảnh buổi làm việc với Đại sứ,Tổng Lãnh sự quán Việt Nam tại San Francisco</em></p>' in a.body_html
    assert ('<p class="caption"><em>Đoàn công tác thành phố Hải Phòng tại Trung tâm Kết nối công nghệ '
            "Plug and Play thuộc thành phố San Francisco</em></p>") in a.body_html
    assert a.body_html.startswith("<p>Trong khuôn khổ")
    assert [(r.title, r.date) for r in a.related][:2] == [
        ("Công bố Quyết định về công tác cán bộ quận Dương Kinh", "2024-10-14"),
        ("Không ép buộc học sinh tham gia học thêm, học liên kết giáo dục", "2024-10-12"),
    ]
    assert len(a.related) == 5
    assert a.related[0].summary == "Sáng 14/10, Thành ủy Hải Phòng tổ chức Hội nghị công bố Quyết định về…"
    assert a.slug.startswith("tim-kiem-co-hoi-trong-viec-ket-noi-cong-nghe")


def test_text_page_published_option_and_page_date(store: Store, tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    shutil.copy(SAMPLE_VI, page)
    when = parse_published("2026-11-20T08:00:00+07:00")
    report = import_paths(store, [page], published=when)
    assert report.notes == [f"{page}: published from --published"]
    assert store.newest_articles(1)[0].published == datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    dated = write(tmp_path / "dated.txt", "Kinh tế\n\nTiêu đề bài\n\nNgày đăng: 21/11/2026 09:15\n\nĐoạn một dài.\n\n"
                                          "Đoạn hai cũng dài.\n\nNguồn tin: example.vn\n")
    report = import_paths(store, [dated], default_tz=ZoneInfo("Asia/Ho_Chi_Minh"))
    assert report.notes == [f"{dated}: published from the page (21/11/2026 09:15)"]
    a = by_title(store, "Tiêu đề bài")
    assert a.published == datetime(2026, 11, 21, 2, 15, tzinfo=UTC)
    assert (a.category, a.source, a.author) == ("Kinh tế", "example.vn", "")


def test_text_page_guid_survives_body_edits(store: Store, tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    shutil.copy(SAMPLE_VI, page)
    os.utime(page, (1795000000, 1795000000))
    import_paths(store, [page])
    first = store.newest_articles(1)[0]
    again = import_paths(store, [page])
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1)
    page.write_text(page.read_text(encoding="utf-8").replace("sáng 9/10", "sáng ngày 9/10"), encoding="utf-8")
    os.utime(page, (1795000000, 1795000000))
    edited = import_paths(store, [page], published=first.published)
    assert (edited.inserted, edited.updated) == (0, 1)
    after = store.get_article(first.guid)
    assert (after.id, after.guid, after.slug) == (first.id, first.guid, first.slug)
    assert "sáng ngày 9/10" in after.body_text
    assert first.updated is not None and after.updated is not None and after.updated > first.updated
    assert store.count_articles() == 1


# --- Markdown --------------------------------------------------------------------------------


def test_markdown_yaml_and_toml_front_matter(store: Store, tmp_path: Path) -> None:
    write(tmp_path / "a.md", "---\ntitle: Xe buýt điện\ndate: 2026-11-19T07:30:00+07:00\ncategory: Kinh tế\n"
                             "tags: [giao thông, xe điện]\nauthor: Lê Phúc\nslug: xe-buyt\nimage: https://x.example/i.jpg\n"
                             "---\n\nĐoạn **một**.\n\n<script>alert(1)</script>\n\n[link](javascript:alert(1))\n")
    write(tmp_path / "b.markdown", '+++\ntitle = "Startup week"\ndate = 2026-11-18\ncategory = "Technology"\n'
                                   'tags = ["startups"]\nsummary = "Short."\nid = "custom-id"\n+++\n\n# Heading\n\nBody.\n')
    report = import_paths(store, [tmp_path], default_tz=ZoneInfo("Asia/Ho_Chi_Minh"))
    assert report.errors == [] and report.inserted == 2 and report.files == 2
    a = store.get_article("xe-buyt")
    assert a.guid == "urn:syndicate:xe-buyt"
    assert a.tags == ["giao thông", "xe điện"] and a.author == "Lê Phúc" and a.category == "Kinh tế"
    assert a.image == "https://x.example/i.jpg" and a.language == "vi"
    assert "<strong>một</strong>" in a.body_html
    assert "<script" not in a.body_html and 'href="javascript' not in a.body_html  # left as inert text
    assert a.summary == "Đoạn một."
    b = store.get_article("custom-id")
    assert b.published == datetime(2026, 11, 17, 17, 0, tzinfo=UTC)  # midnight in Asia/Ho_Chi_Minh
    assert (b.summary, b.language, b.category_slug) == ("Short.", "en", "technology")
    assert "<h1>Heading</h1>" in b.body_html


def test_markdown_title_from_heading(store: Store, tmp_path: Path) -> None:
    write(tmp_path / "h.md", "---\ndate: 2026-11-01\n---\n# From the heading\n\nText.\n")
    report = import_paths(store, [tmp_path / "h.md"])
    assert report.errors == []
    a = by_title(store, "From the heading")
    assert "<h1>" not in a.body_html and a.body_text == "Text."


# --- JSON and JSON Lines ---------------------------------------------------------------------


def test_json_array_object_and_aliases(store: Store, tmp_path: Path) -> None:
    write(tmp_path / "arr.json", json.dumps([
        {"id": "j1", "title": "One", "date": "2026-11-01T10:00:00Z", "body": "Para one.\n\nPara two.",
         "categories": ["Economy", "Ports"], "author": {"name": "Ann"}, "link": "https://x.example/1"},
        {"title": "Two", "published_at": "2026-11-02 10:00", "html": "<p>Two <b>bold</b></p>", "tags": "a, b, a"},
    ]))
    write(tmp_path / "obj.json", json.dumps({"articles": [
        {"guid": "j3", "title": "Ba", "published": "2026-11-03T10:00:00+07:00", "content": "<p>Nội dung</p>",
         "updated": "2026-11-04T10:00:00+07:00", "related": [{"title": "Khác", "url": "https://x.example/k"}]},
    ]}, ensure_ascii=False))
    report = import_paths(store, [tmp_path / "arr.json", tmp_path / "obj.json"])
    assert report.errors == [] and report.inserted == 3
    one = store.get_article("j1")
    assert one.body_html == "<p>Para one.</p>\n<p>Para two.</p>" and one.body_text == "Para one.\n\nPara two."
    assert (one.category, one.tags, one.author, one.url) == ("Economy", ["Ports"], "Ann", "https://x.example/1")
    two = by_title(store, "Two")
    assert two.guid == "urn:syndicate:two" and two.tags == ["a", "b"] and two.body_text == "Two bold"
    assert two.published == datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    three = store.get_article("j3")
    assert three.updated == datetime(2026, 11, 4, 3, 0, tzinfo=UTC) and three.language == "vi"
    assert three.related[0].url == "https://x.example/k"


def test_jsonl_bad_lines_do_not_stop_the_rest(store: Store, tmp_path: Path) -> None:
    good = {"title": "Good", "published": "2026-11-20T00:00:00Z", "body_text": "x"}
    lines = [json.dumps({**good, "id": f"g{i}", "title": f"Good {i}"}) for i in range(1, 4)]
    lines.insert(1, '{"title": "broken" "published": 1}')
    lines.append(json.dumps({"id": "nt", "published": "2026-11-20"}))
    lines.append(json.dumps({"id": "nd", "title": "No date"}))
    lines.append(json.dumps({"id": "bd", "title": "Bad date", "date": "yesterday"}))
    lines.append("[1, 2]")
    lines.append("")
    path = write(tmp_path / "bulk.jsonl", "\n".join(lines) + "\n")
    report = import_paths(store, [path], batch_size=2)
    assert report.inserted == 3 and store.count_articles() == 3
    assert report.errors == [
        f"{path} line 2: not valid JSON (Expecting ',' delimiter at column 20)",
        f"{path} line 5: no title (every article needs a 'title')",
        f"{path} line 6: no published date (add 'published' or 'date'; use ISO 8601 such as 2026-11-20T08:00:00+07:00)",
        f"{path} line 7: 'date' is 'yesterday', not a date (use ISO 8601 such as 2026-11-20T08:00:00+07:00)",
        f"{path} line 8: expected an object with a 'title', got list",
    ]


# --- feeds -----------------------------------------------------------------------------------


def test_rss_and_atom_files(store: Store, tmp_path: Path) -> None:
    write(tmp_path / "f.rss", RSS)
    write(tmp_path / "g.atom", ATOM)
    report = import_paths(store, [tmp_path])
    assert report.errors == [] and report.warnings == [] and report.inserted == 3
    a = store.get_article("tin-a")
    assert (a.category, a.tags, a.source, a.url) == ("Kinh tế", ["cảng"], "Tin Cảng", "https://tin.example.org/a")
    assert a.published == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    for bad in ("<script", "onclick", "javascript:", "alert(1)"):
        assert bad not in a.body_html, bad
    b = store.get_article("https://tin.example.org/b")  # no guid: the link is the identity
    assert b.body_text == "Plain summary"
    atom = store.get_article("urn:uuid:1234")
    assert atom.published == datetime(2026, 11, 19, 8, 0, tzinfo=UTC)
    assert atom.updated == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert (atom.author, atom.category, atom.body_html) == ("Ann", "Technology", "<p>Body <em>text</em></p>")


def test_bozo_feed_with_entries_imports_with_a_warning(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "bozo.xml", RSS.replace("</channel></rss>", "<broken></channel></rss>"))
    report = import_paths(store, [path])
    assert report.errors == [] and report.inserted == 2
    assert len(report.warnings) == 1 and report.warnings[0] == (
        f"{path}: feed is not well-formed (XML error: mismatched tag); imported what could be read"
    )


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    write(root / "feed.xml", RSS)
    elsewhere = free_port()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            targets = {"/to-port": f"http://127.0.0.1:{elsewhere}/feed.xml", "/to-ftp": "ftp://127.0.0.1/feed.xml",
                       "/to-feed": "/feed.xml"}
            if self.path in targets:
                self.send_response(302)
                self.send_header("Location", targets[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == "/drip.xml":  # one byte every 2 s: only a total deadline ends it
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                try:
                    for _ in range(1000):
                        self.wfile.write(b"<")
                        self.wfile.flush()
                        time.sleep(2)
                except OSError:
                    pass
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


LOOPBACK = FetchPolicy(allow_private=True, timeout=60)  # the test server is on 127.0.0.1: allowed explicitly


def test_feed_by_url(store: Store, feed_server: str) -> None:
    report = import_paths(store, [f"{feed_server}/feed.xml", f"{feed_server}/missing.xml"], fetch=LOOPBACK)
    assert report.inserted == 2 and store.get_article("tin-a").origin == f"{feed_server}/feed.xml"
    assert report.errors == [f"{feed_server}/missing.xml: cannot fetch feed: HTTP 404 File not found"]
    same_host = import_paths(store, [f"{feed_server}/to-feed"], fetch=LOOPBACK)
    assert same_host.errors == [] and same_host.unchanged == 2


def test_feed_urls_go_through_the_safe_fetcher(store: Store, feed_server: str) -> None:
    port = feed_server.rsplit(":", 1)[1]
    report = import_paths(store, [f"{feed_server}/feed.xml", f"{feed_server}/to-port", f"{feed_server}/to-ftp"])
    hint = "(set [fetch] allow_private = true to allow it)"
    assert report.errors == [
        f"{feed_server}/feed.xml: cannot fetch feed: refused: 127.0.0.1 is a loopback address {hint}",
        f"{feed_server}/to-port: cannot fetch feed: refused: 127.0.0.1 is a loopback address {hint}",
        f"{feed_server}/to-ftp: cannot fetch feed: refused: 127.0.0.1 is a loopback address {hint}",
    ]
    report = import_paths(store, [f"{feed_server}/to-port", f"{feed_server}/to-ftp"], fetch=LOOPBACK)
    assert report.inserted == 0 and len(report.errors) == 2
    moved, ftp = report.errors
    assert moved.startswith(f"{feed_server}/to-port: cannot fetch feed: refused a redirect to http://127.0.0.1:")
    assert moved.endswith(f'/feed.xml: another host or port than http://127.0.0.1:{port} '
                          '(set [fetch] redirects = "any" to follow it)')
    assert ftp == (f"{feed_server}/to-ftp: cannot fetch feed: refused a redirect to ftp://127.0.0.1/feed.xml "
                   "(only http:// and https:// are followed)")


def test_cli_import_url_reads_the_fetch_settings(cli: CliRunner, feed_server: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli.invoke(main, ["article", "import", f"{feed_server}/feed.xml"])
    assert result.exit_code == 1
    assert result.stderr == (f"error: {feed_server}/feed.xml: cannot fetch feed: refused: 127.0.0.1 is a loopback "
                             "address (set [fetch] allow_private = true to allow it)\n")
    monkeypatch.setenv("SYNDICATE_FETCH_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("SYNDICATE_FETCH_TIMEOUT", "3")
    result = cli.invoke(main, ["article", "import", f"{feed_server}/drip.xml", f"{feed_server}/feed.xml"])
    assert result.exit_code == 1, result.output
    assert result.stdout == "imported 2 files: 2 new, 0 updated, 0 unchanged; 1 failed\n"
    assert result.stderr == (f"error: {feed_server}/drip.xml: cannot fetch feed: no complete answer within 3 s "
                             "(the total deadline)\n")


# --- bad files, hostile input, detection ------------------------------------------------------


def test_bad_files_give_exact_errors_and_good_files_land(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "in"
    write(d / "good.md", "---\ntitle: Good one\ndate: 2026-11-20\n---\nBody.\n")
    write(d / "notitle.md", "---\ndate: 2026-11-20\ncategory: X\n---\nNo heading here.\n")
    write(d / "badyaml.md", "---\ntitle: [unclosed\n---\nBody.\n")
    (d / "latin1.txt").write_bytes("Kinh tế\n\nTiêu đề\n\nĐoạn.\n".encode().replace("ế".encode(), b"\xea"))
    write(d / "junk.xml", "this is not a feed at all")
    write(d / "empty.json", "")
    write(d / "good.jsonl", json.dumps({"title": "Good two", "date": "2026-11-21"}) + "\n")
    write(d / ".hidden.md", "---\ntitle: Hidden\ndate: 2026-11-20\n---\n")
    write(d / "notes.csv", "not,an,article\n")
    report = import_paths(store, [d, tmp_path / "missing.md"])
    assert report.files == 8
    assert report.inserted == 2 and {a.title for a in store.newest_articles()} == {"Good one", "Good two"}
    assert report.errors == [
        f"{d}/badyaml.md: front matter is not valid YAML at line 2: expected ',' or ']', but got '<stream end>'",
        f"{d}/empty.json: not valid JSON (Expecting value at line 1 column 1)",
        f"{d}/junk.xml: not an RSS or Atom feed",
        f"{d}/latin1.txt: not UTF-8 text (byte 0xea at offset 6); convert it first, e.g. iconv -f cp1258 -t utf-8",
        f"{d}/notitle.md: no title: add 'title: ...' to the front matter",
        f"{tmp_path}/missing.md: no such file or directory",
    ]


def test_unreadable_feed_is_an_error_naming_it(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "broken.rss", "<rss version='2.0'><channel><title>x</title>")
    report = import_paths(store, [path])
    assert report.inserted == 0
    assert report.errors == [f"{path}: cannot read feed: XML error: no element found"]


def test_hostile_html_is_cleaned(store: Store, tmp_path: Path) -> None:
    record = {
        "id": "evil",
        "title": "Bad\x00 title\x1b with\u200b <b>tags</b>",
        "published": "2026-11-20T00:00:00Z",
        "body_html": (
            '<p style="position:fixed;top:0" onclick="steal()">Hi<script>alert(1)</script></p>'
            '<img src="x.png" onerror="alert(2)"><a href="javascript:alert(3)">x</a>'
            '<a href="https://ok.example/">ok</a><iframe src="https://evil.example"></iframe>\x07'
        ),
        "summary": "<script>bad()</script>Sum\x0bmary",
        "image": "javascript:alert(4)",
    }
    path = write(tmp_path / "evil.json", json.dumps([record]))
    assert import_paths(store, [path]).errors == []
    a = store.get_article("evil")
    for bad in ("<script", "alert", "onclick", "onerror", "style=", "javascript:", "iframe", "\x07", "steal"):
        assert bad not in a.body_html, bad
    assert '<a href="https://ok.example/" rel="noopener noreferrer">ok</a>' in a.body_html
    assert a.title == "Bad title with\u200b <b>tags</b>"  # text stays text; escaped where it is shown
    assert a.summary == "Summary" and a.image == ""


def test_detect_format_by_extension_or_force(tmp_path: Path) -> None:
    assert detect_format("x.TXT") == "text" and detect_format("x.markdown") == "markdown"
    assert detect_format("a/b.ndjson") == "jsonl" and detect_format("feed.atom") == "feed"
    assert detect_format("https://example.org/rss") == "feed"
    assert detect_format("x.txt", "markdown") == "markdown" and detect_format("notes.csv", "jsonl") == "jsonl"
    with pytest.raises(InputError, match="unknown format 'yaml'; choose one of text, markdown, json, jsonl, feed"):
        detect_format("x.txt", "yaml")
    with pytest.raises(InputError, match="--published 'soon' is not a date"):
        parse_published("soon")


def test_unknown_extensions_are_refused_unless_a_format_is_forced(store: Store, tmp_path: Path) -> None:
    subscribers = write(tmp_path / "subscribers.csv", "email,name\nan@example.org,An\n")
    log = write(tmp_path / "server.log", "GET / 200\n\nGET /feed 200\n")
    bare = write(tmp_path / "README", "Notes\n\nSome text.\n\nMore text.\n")
    good = write(tmp_path / "good.md", "---\ntitle: Good\ndate: 2026-11-20\n---\nBody.\n")
    report = import_paths(store, [subscribers, log, bare, good])
    known = ".txt, .text, .md, .markdown, .json, .jsonl, .ndjson, .xml, .rss, .atom"
    assert report.errors == [
        f"{subscribers}: '.csv' is not a known article format ({known}); nothing imported from it "
        "(use --format to import it anyway)",
        f"{log}: '.log' is not a known article format ({known}); nothing imported from it "
        "(use --format to import it anyway)",
        f"{bare}: no file extension to tell its format ({known}); nothing imported from it "
        "(use --format to import it anyway)",
    ]
    assert [a.title for a in store.newest_articles()] == ["Good"]
    forced = import_paths(store, [log], fmt="text", published=parse_published("2026-11-20"))
    assert forced.errors == [] and forced.inserted == 1


def test_cli_refuses_the_subscriber_csv(cli: CliRunner, tmp_path: Path) -> None:
    shutil.copy(DATA / "subscribers.csv", tmp_path / "subscribers.csv")
    result = cli.invoke(main, ["article", "import", "subscribers.csv"])
    assert result.exit_code == 1
    assert result.stdout == "imported 1 file: 0 new, 0 updated, 0 unchanged; 1 failed\n"
    assert result.stderr.startswith("error: subscribers.csv: '.csv' is not a known article format (")
    assert json.loads(cli.invoke(main, ["article", "list", "--json"]).stdout) == []


def test_forced_format(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "export.dat", json.dumps({"title": "Forced", "date": "2026-11-01"}) + "\n")
    assert import_paths(store, [path], fmt="jsonl").inserted == 1


# --- the sample data and the CLI --------------------------------------------------------------


def test_sample_data_imports_cleanly_and_searches_both_ways(store: Store) -> None:
    report = import_paths(store, [DATA / "articles"], default_tz=ZoneInfo("Asia/Ho_Chi_Minh"))
    assert report.errors == [] and report.warnings == []
    assert store.count_articles() >= 30
    cats = store.categories()
    assert len(cats) >= 5
    recent = store.articles_since(datetime(2026, 11, 16, 17, 0, tzinfo=UTC), datetime(2026, 11, 24, 17, 0, tzinfo=UTC))
    assert len({a.category_slug for a in recent}) >= 5 and len(recent) >= 10
    assert {a.language for a in store.newest_articles(1000)} == {"vi", "en"}
    for query in ("khởi nghiệp", "khoi nghiep", "KHOI NGHIEP Hai Phong"):
        assert SEED_TITLE in [a.title for a in store.search_articles(query)], query
    again = import_paths(store, [DATA / "articles"], default_tz=ZoneInfo("Asia/Ho_Chi_Minh"))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, report.inserted)


def test_cli_import_summary_errors_and_exit_codes(cli: CliRunner, tmp_path: Path) -> None:
    write(tmp_path / "in" / "a.md", "---\ntitle: Một\ndate: 2026-11-20\ncategory: Kinh tế\n---\nThân bài.\n")
    write(tmp_path / "in" / "b.jsonl", '{"title": "Hai", "date": "2026-11-21"}\nnot json\n')
    result = cli.invoke(main, ["article", "import", "in"])
    assert result.exit_code == 1
    assert result.stdout == "imported 2 files: 2 new, 0 updated, 0 unchanged; 1 failed\n"
    assert result.stderr == "error: in/b.jsonl line 2: not valid JSON (Expecting value at column 1)\n"

    write(tmp_path / "in" / "b.jsonl", '{"title": "Hai", "date": "2026-11-21"}\n')
    result = cli.invoke(main, ["article", "import", "in", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["files"], report["inserted"], report["unchanged"], report["errors"]) == (2, 0, 2, [])

    shutil.copy(SAMPLE_VI, tmp_path / "page.txt")
    result = cli.invoke(main, ["article", "import", "page.txt", "--published", "2026-11-20T08:00"])
    assert result.exit_code == 0
    assert result.stdout == "note: page.txt: published from --published\nimported 1 file: 1 new, 0 updated, 0 unchanged\n"
    listed = json.loads(cli.invoke(main, ["article", "search", "khoi nghiep", "--json"]).stdout)
    assert listed[0]["published"] == "2026-11-20T01:00:00+00:00"  # read in the site's zone, Asia/Ho_Chi_Minh

    result = cli.invoke(main, ["article", "import", "page.txt", "--published", "someday"])
    assert result.exit_code == 65
    assert result.stderr.startswith("error: --published 'someday' is not a date")


# --- hostile input: each a one-line error naming the file; the rest of the batch lands ------------


def test_out_of_range_dates_are_one_line_errors_and_the_rest_lands(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "in"
    write(d / "a-inf.json", '[{"id": "inf", "title": "Inf", "published": 1e400},'
                            ' {"id": "ok", "title": "Ok", "published": "2026-11-20T00:00:00Z"}]')
    write(d / "b-inf.md", '+++\ntitle = "Vô cực"\ndate = inf\n+++\nThân bài.\n')
    write(d / "c-yaml.md", "---\ntitle: Float\npublished: 1.0e+400\n---\nBody.\n")
    write(d / "d-year.txt", "Kinh tế\n\nTiêu đề bài\n\nPublished: Mon, 01 Jan 99999999999999999999 00:00:00 +0000\n\n"
                            "Đoạn một dài.\n\nĐoạn hai cũng dài.\n")
    write(d / "e-year.jsonl", '{"id": "y", "title": "Year", "date": "9999-12-31T23:00:00-05:00"}\n'
                              '{"id": "t", "title": "Huge stamp", "date": 100000000000000000000}\n'
                              '{"id": "n", "title": "NaN", "date": NaN}\n'
                              '{"id": "ok2", "title": "Ok two", "date": "2026-11-21"}\n')
    write(d / "f-good.md", "---\ntitle: Good\ndate: 2026-11-20\n---\nBody.\n")
    report = import_paths(store, [d])
    assert report.errors == [
        f"{d}/a-inf.json record 1: 'published' is inf, a date out of range (years 1800 to 2199)",
        f"{d}/b-inf.md: 'date' is inf, a date out of range (years 1800 to 2199)",
        f"{d}/c-yaml.md: 'published' is inf, a date out of range (years 1800 to 2199)",
        f"{d}/d-year.txt: the date line 'Published: Mon, 01 Jan 99999999999999999999 00:00:00 +0000' "
        "is out of range (years 1800 to 2199)",
        f"{d}/e-year.jsonl line 1: 'date' is '9999-12-31T23:00:00-05:00', a date out of range (years 1800 to 2199)",
        f"{d}/e-year.jsonl line 2: 'date' is 100000000000000000000, a date out of range (years 1800 to 2199)",
        f"{d}/e-year.jsonl line 3: 'date' is nan, not a date (use ISO 8601 such as 2026-11-20T08:00:00+07:00)",
    ]
    assert {a.title for a in store.newest_articles()} == {"Ok", "Ok two", "Good"}


def test_cli_hostile_batch_has_no_traceback(cli: CliRunner, tmp_path: Path) -> None:
    write(tmp_path / "in" / "inf.md", '+++\ntitle = "Vô cực"\ndate = inf\n+++\nThân bài.\n')
    write(tmp_path / "in" / "ok.md", "---\ntitle: Good\ndate: 2026-11-20\n---\nBody.\n")
    result = cli.invoke(main, ["article", "import", "in"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stdout == "imported 2 files: 1 new, 0 updated, 0 unchanged; 1 failed\n"
    assert result.stderr == "error: in/inf.md: 'date' is inf, a date out of range (years 1800 to 2199)\n"


def alias_bomb() -> str:
    lines = ["---", "title: Bomb", "date: 2026-11-20", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines += ["tags: *i", "---", "Body."]
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_fails_fast_in_little_memory(store: Store, tmp_path: Path) -> None:
    import tracemalloc

    bomb = write(tmp_path / "bomb.md", alias_bomb())
    good = write(tmp_path / "good.md", "---\ntitle: Good\ndate: 2026-11-20\n---\nBody.\n")
    assert bomb.stat().st_size <= 520
    tracemalloc.start()
    started = time.monotonic()
    try:
        report = import_paths(store, [bomb, good])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.errors == [
        f"{bomb}: front matter line 5 uses the YAML alias *a; aliases are not accepted (write the value out)"
    ]
    assert report.inserted == 1 and peak < 20 * 1024 * 1024
    assert time.monotonic() - started < 60  # it used to run for minutes at 3 GB


def test_deeply_nested_json_is_an_error_not_a_crash(store: Store, tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    a = write(tmp_path / "deep.json", deep)
    b = write(tmp_path / "deep.jsonl", deep + "\n" + json.dumps({"title": "After", "date": "2026-11-20"}) + "\n")
    report = import_paths(store, [a, b])
    assert report.errors == [f"{a}: not valid JSON (nested too deeply)", f"{b} line 1: not valid JSON (nested too deeply)"]
    assert report.inserted == 1


# --- re-imports: an mtime is not a date; identical content is unchanged; --dry-run ----------------

T1, T2 = 1795000000, 1795600000  # 2026-11-18 11:06:40 UTC and a week later


def test_reimport_with_only_a_new_mtime_is_unchanged(store: Store, tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    shutil.copy(SAMPLE_VI, page)
    os.utime(page, (T1, T1))
    import_paths(store, [page])
    first = store.newest_articles(1)[0]
    os.utime(page, (T2, T2))
    again = import_paths(store, [page])
    assert (again.inserted, again.updated, again.unchanged, again.changed_guids) == (0, 0, 1, [])
    assert again.notes == [f"{page}: no date on the page: kept the stored published date (2026-11-18 11:06 UTC)"]
    after = store.get_article(first.guid)
    assert (after.published, after.updated) == (first.published, first.updated)


def test_reimport_of_an_edit_keeps_published_and_updated_never_precedes_it(store: Store, tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    shutil.copy(SAMPLE_VI, page)
    os.utime(page, (T1, T1))
    import_paths(store, [page])
    first = store.newest_articles(1)[0]
    page.write_text(page.read_text(encoding="utf-8").replace("sáng 9/10", "sáng ngày 9/10"), encoding="utf-8")
    os.utime(page, (T2, T2))
    edited = import_paths(store, [page])
    assert (edited.inserted, edited.updated, edited.changed_guids) == (0, 1, [first.guid])
    after = store.get_article(first.guid)
    assert after.published == first.published == datetime(2026, 11, 18, 11, 6, 40, tzinfo=UTC)
    assert after.updated is not None and first.updated is not None and after.updated > first.updated
    assert after.updated >= after.published


def test_a_date_the_source_states_does_replace_published(store: Store, tmp_path: Path) -> None:
    page = write(tmp_path / "dated.txt", "Kinh tế\n\nTiêu đề bài\n\nNgày đăng: 21/11/2026 09:15\n\n"
                                         "Đoạn một dài.\n\nĐoạn hai cũng dài.\n")
    import_paths(store, [page])
    page.write_text(page.read_text(encoding="utf-8").replace("21/11/2026", "22/11/2026"), encoding="utf-8")
    report = import_paths(store, [page])
    assert (report.updated, report.unchanged) == (1, 0)
    assert by_title(store, "Tiêu đề bài").published == datetime(2026, 11, 22, 9, 15, tzinfo=UTC)


def test_editing_a_future_dated_article_never_puts_updated_before_published(store: Store, tmp_path: Path) -> None:
    record = {"id": "later", "title": "Later", "date": "2099-01-01T00:00:00Z", "body_text": "One."}
    path = write(tmp_path / "later.json", json.dumps([record]))
    import_paths(store, [path])
    write(path, json.dumps([{**record, "body_text": "Two."}]))
    assert import_paths(store, [path]).updated == 1
    a = store.get_article("later")
    assert a.updated is not None and a.updated >= a.published == datetime(2099, 1, 1, tzinfo=UTC)


def test_cli_reimport_after_touch_rewrites_no_feed(cli: CliRunner, tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    shutil.copy(SAMPLE_VI, page)
    os.utime(page, (T1, T1))
    assert cli.invoke(main, ["article", "import", "page.txt"]).exit_code == 0
    assert cli.invoke(main, ["feed", "build"]).exit_code == 0
    rss = tmp_path / "site" / "rss.xml"
    before = (rss.read_bytes(), rss.stat().st_mtime_ns)
    os.utime(page, (T2, T2))
    result = cli.invoke(main, ["article", "import", "page.txt"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "note: page.txt: no date on the page: kept the stored published date (2026-11-18 11:06 UTC)\n"
        "imported 1 file: 0 new, 0 updated, 1 unchanged\n"
    )
    assert (rss.read_bytes(), rss.stat().st_mtime_ns) == before


def test_cli_dry_run_shows_each_item_and_writes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    d = tmp_path / "in"
    write(d / "a.md", "---\ntitle: Same\ndate: 2026-11-20\n---\nBody.\n")
    write(d / "b.md", "---\ntitle: Edited\ndate: 2026-11-20\n---\nOld body.\n")
    assert cli.invoke(main, ["article", "import", "in"]).exit_code == 0
    db = tmp_path / "syndicate.db"
    before = db.read_bytes()
    write(d / "b.md", "---\ntitle: Edited\ndate: 2026-11-21\n---\nNew body.\n")
    write(d / "c.md", "---\ntitle: Brand new\ndate: 2026-11-22\n---\nBody.\n")
    write(d / "d.md", "---\ntitle: [broken\n---\n")
    result = cli.invoke(main, ["article", "import", "--dry-run", "in"])
    assert result.exit_code == 1
    assert result.stdout == (
        "unchanged  in/a.md: Same\n"
        "updated    in/b.md: Edited (changed: published, body, summary)\n"
        "new        in/c.md: Brand new\n"
        "dry run: would import 4 files: 1 new, 1 updated, 1 unchanged; 1 failed (nothing written)\n"
    )
    assert result.stderr.startswith("error: in/d.md: front matter is not valid YAML")
    assert db.read_bytes() == before
    as_json = json.loads(cli.invoke(main, ["article", "import", "--dry-run", "--json", "in/b.md", "in/c.md"]).stdout)
    assert as_json["dry_run"] is True and (as_json["inserted"], as_json["updated"]) == (1, 1)
    assert as_json["items"] == [
        {"status": "updated", "guid": "urn:syndicate:b", "title": "Edited", "source": "in/b.md",
         "changes": ["published", "body", "summary"]},
        {"status": "new", "guid": "urn:syndicate:c", "title": "Brand new", "source": "in/c.md", "changes": []},
    ]
    assert db.read_bytes() == before
    titles = [a["title"] for a in json.loads(cli.invoke(main, ["article", "list", "--json"]).stdout)]
    assert sorted(titles) == ["Edited", "Same"]


# --- size cap ---------------------------------------------------------------------------------


def test_an_article_over_the_size_cap_is_refused(store: Store, tmp_path: Path) -> None:
    big = {"id": "big", "title": "Big one", "date": "2026-11-20", "body_html": "<p>" + "x" * 2_100_000 + "</p>"}
    small = {"id": "small", "title": "Small", "date": "2026-11-20", "body_text": "ok"}
    path = write(tmp_path / "mixed.json", json.dumps([big, small]))
    huge_md = write(tmp_path / "huge.md", "---\ntitle: Huge\ndate: 2026-11-20\n---\n" + "word " * 1_000_000)
    report = import_paths(store, [path, huge_md])
    assert report.errors == [
        f"{path}: 'Big one' is 2.1 MB of HTML, over the 2 MB limit for one article "
        "(raise [ingest] max_article_mb to allow it); not imported",
        f"{huge_md}: is 5 MB, over twice the 2 MB limit for one article's HTML "
        "(raise [ingest] max_article_mb to allow it); not imported",
    ]
    assert [a.guid for a in store.newest_articles()] == ["small"]


def test_cli_size_cap_is_a_setting(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a.md", "---\ntitle: Long read\ndate: 2026-11-20\n---\n" + "Một câu dài. " * 200)
    monkeypatch.setenv("SYNDICATE_INGEST_MAX_ARTICLE_MB", "0.002")
    result = cli.invoke(main, ["article", "import", "a.md"])
    assert result.exit_code == 1
    assert result.stderr == ("error: a.md: 'Long read' is 3.4 KB of HTML, over the 2 KB limit for one article "
                             "(raise [ingest] max_article_mb to allow it); not imported\n")
    monkeypatch.setenv("SYNDICATE_INGEST_MAX_ARTICLE_MB", "1")
    assert cli.invoke(main, ["article", "import", "a.md"]).exit_code == 0


# --- the re-import rule as a state machine: any order of edits, touches, removals and imports -----

PAGE_DATES = {None: None, "a": ("20/11/2026 08:00", datetime(2026, 11, 20, 8, 0, tzinfo=UTC)),
              "b": ("22/11/2026 09:30", datetime(2026, 11, 22, 9, 30, tzinfo=UTC))}


class ReimportMachine(RuleBasedStateMachine):
    """Pages are written, edited, touched and removed in any order and imported (dry run first).

    Invariants: the dry run predicts the import exactly and writes nothing; an immediate re-import
    is all unchanged; a page without a date line keeps the published date its article first got
    (an mtime never moves it), a stated date always wins; updated is never before published."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name) / "pages"
        self.dir.mkdir()
        self.store = open_store(str(Path(self.tmp.name) / "s.db"))
        self.pages: dict[int, tuple[str, str, str | None]] = {}  # file -> (title, body, date key)
        self.expected: dict[str, datetime] = {}  # guid -> published the store must hold

    def teardown(self) -> None:
        self.store.close()
        self.tmp.cleanup()

    def path(self, n: int) -> Path:
        return self.dir / f"p{n}.txt"

    @rule(n=st.integers(0, 2), new_title=st.booleans(), body=st.sampled_from(["Một.", "Hai.", "Ba\xa0bốn."]),
          date=st.sampled_from([None, "a", "b"]))
    def write_page(self, n: int, new_title: bool, body: str, date: str | None) -> None:
        title = f"Tiêu đề số {n}" + (" mới" if new_title else "")
        line = f"Ngày đăng: {PAGE_DATES[date][0]}\n\n" if date else ""  # type: ignore[index]
        self.path(n).write_text(f"Kinh tế\n\n{title}\n\n{line}Đoạn đầu: {body}\n\nĐoạn cuối dài.\n", encoding="utf-8")
        self.pages[n] = (title, body, date)

    @rule(n=st.integers(0, 2), stamp=st.integers(1_790_000_000, 1_800_000_000))
    def touch(self, n: int, stamp: int) -> None:
        if n in self.pages:
            os.utime(self.path(n), (stamp, stamp))

    @rule(n=st.integers(0, 2))
    def remove_file(self, n: int) -> None:
        if self.pages.pop(n, None) is not None:
            self.path(n).unlink()

    @rule()
    def import_pages(self) -> None:
        before = {a.guid: (a.published, a.updated, a.body_text) for a in self.store.newest_articles(1000, include_scheduled=True)}
        dry = import_paths(self.store, [self.dir], dry_run=True)
        after_dry = {a.guid: (a.published, a.updated, a.body_text) for a in self.store.newest_articles(1000, include_scheduled=True)}
        assert after_dry == before  # a dry run writes nothing
        real = import_paths(self.store, [self.dir])
        assert real.errors == dry.errors == []
        assert (dry.inserted, dry.updated, dry.unchanged) == (real.inserted, real.updated, real.unchanged)
        assert sorted(dry.changed_guids) == sorted(real.changed_guids)
        again = import_paths(self.store, [self.dir])
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(self.pages))
        for n, (title, _, date) in self.pages.items():
            guid = f"urn:syndicate:kinh-te:{slugify(title)}"
            if date:
                self.expected[guid] = PAGE_DATES[date][1]  # type: ignore[index]
            elif guid not in self.expected:
                self.expected[guid] = datetime.fromtimestamp(int(self.path(n).stat().st_mtime), UTC)

    @invariant()
    def dates_hold(self) -> None:
        stored = {a.guid: a for a in self.store.newest_articles(1000, include_scheduled=True)}
        assert set(stored) == set(self.expected)
        for guid, published in self.expected.items():
            assert stored[guid].published == published, guid
            assert stored[guid].changed >= stored[guid].published


TestReimportMachine = ReimportMachine.TestCase
TestReimportMachine.settings = settings(
    max_examples=int(os.environ.get("SYNDICATE_EXAMPLES", "25")), stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_the_no_break_space_survives_to_every_feed(cli: CliRunner, tmp_path: Path) -> None:
    import feedparser

    shutil.copy(SAMPLE_VI, tmp_path / "page.txt")
    assert cli.invoke(main, ["article", "import", "page.txt", "--published", "2026-11-20T08:00"]).exit_code == 0
    assert cli.invoke(main, ["feed", "build"]).exit_code == 0
    site = tmp_path / "site"
    for name in ("rss.xml", "atom.xml"):
        parsed = feedparser.parse((site / name).read_bytes())
        assert not parsed.bozo, name
        assert "KH&amp;CN\xa0trân trọng" in parsed.entries[0].content[0].value, name
    item = json.loads((site / "feed.json").read_text(encoding="utf-8"))["items"][0]
    assert "KH&amp;CN\xa0trân trọng" in item["content_html"] and "KH&CN\xa0trân trọng" in item["content_text"]


def test_a_url_with_a_forced_format_other_than_feed_is_refused(store: Store) -> None:
    report = import_paths(store, ["https://example.org/page.txt"], fmt="text")
    assert report.errors == [
        "https://example.org/page.txt: only feeds can be imported from a URL (--format text was given); "
        "download the file and import it"
    ]


def test_a_text_page_with_an_absurd_mtime_asks_for_published(store: Store, tmp_path: Path) -> None:
    page = write(tmp_path / "p.txt", "Kinh tế\n\nTiêu đề\n\nĐoạn một dài.\n\nĐoạn hai.\n")
    os.utime(page, (4_102_444_800 * 2, 4_102_444_800 * 2))  # year 2229
    report = import_paths(store, [page])
    assert report.errors == [
        f"{page}: no date on the page, and the file's modification time is out of range (years 1800 to 2199); "
        "give one with --published"
    ]


def test_deeply_nested_front_matter_is_an_error(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "deep.md", "---\ntitle: Deep\ndate: 2026-11-20\ntags: " + "[" * 20_000 + "]" * 20_000 + "\n---\n")
    report = import_paths(store, [path])
    assert report.errors == [f"{path}: front matter is nested too deeply"]
