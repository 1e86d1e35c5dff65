"""Publishing: the file layout, atomic writes, unchanged files left alone, archives, WebSub pings."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import feedparser
import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syndicate.cli import main
from syndicate.config import Settings
from syndicate.feeds import FORMATS, SITE, Scope, tag_uri
from syndicate.models import Article
from syndicate.publish import publish_all, publish_changed, write_if_changed
from syndicate.store import Store

T0 = datetime(2024, 1, 10, 8, 0, tzinfo=UTC)


def art(i: int, days: int | None = None, category: str | None = None, **changes: object) -> Article:
    values: dict[str, object] = dict(
        guid=f"g{i}",
        title=f"Bài số {i}",
        slug=f"bai-{i}",
        published=T0 + timedelta(days=11 * i if days is None else days),
        body_html=f"<p>Nội dung {i}</p>",
        summary=f"Tóm tắt {i}",
        category=category if category is not None else ["Kinh tế", "Thể thao"][i % 2],
    )
    values.update(changes)
    return Article(**values)  # type: ignore[arg-type]


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (inode, mtime_ns) of every file under root."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns)
    return out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.alternates: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "link" and a.get("rel") == "alternate":
            self.alternates.append((a.get("type") or "", a.get("href") or ""))


def test_publish_all_writes_the_layout_with_autodiscovery(store: Store, settings: Settings) -> None:
    store.upsert_articles([art(i) for i in range(8)])  # Jan..Mar 2024, two categories
    out = Path(settings.feeds_out)
    report = publish_all(store, settings)
    expected = {"rss.xml", "atom.xml", "feed.json", "index.html"}
    for slug in ("kinh-te", "the-thao"):
        expected |= {f"category/{slug}/{n}" for n in ("rss.xml", "atom.xml", "feed.json", "index.html")}
    for prefix in ("", "category/kinh-te/", "category/the-thao/"):
        for month in ("2024-01", "2024-02", "2024-03"):
            expected |= {f"{prefix}feeds/rss/{month}.xml", f"{prefix}feeds/atom/{month}.xml",
                         f"{prefix}feeds/json/{month}.json"}
    expected |= {f"articles/bai-{i}/index.html" for i in range(8)}  # the pages item links resolve to
    assert set(report.written) == set(files(out)) == expected
    assert report.unchanged == []
    parser = _Links()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    hrefs = {h for _t, h in parser.alternates}
    for scope in (SITE, Scope.category("kinh-te"), Scope.category("the-thao")):
        for fmt in FORMATS:
            assert f"https://news.example.org{scope.feed_path(fmt)}" in hrefs
    assert ("application/atom+xml", "https://news.example.org/atom.xml") in parser.alternates
    cat_page = _Links()
    cat_page.feed((out / "category/kinh-te/index.html").read_text(encoding="utf-8"))
    assert ("application/rss+xml", "https://news.example.org/category/kinh-te/rss.xml") in cat_page.alternates
    assert "Bài số 6" in (out / "category/kinh-te/index.html").read_text(encoding="utf-8")
    kinh_te = feedparser.parse((out / "category/kinh-te/atom.xml").read_bytes())
    assert kinh_te.bozo is False
    assert [e.title for e in kinh_te.entries] == ["Bài số 6", "Bài số 4", "Bài số 2", "Bài số 0"]


def test_unchanged_files_are_not_rewritten(store: Store, settings: Settings) -> None:
    store.upsert_articles([art(i) for i in range(8)])
    out = Path(settings.feeds_out)
    publish_all(store, settings)
    before = files(out)
    time.sleep(0.01)
    again = publish_all(store, settings)
    assert again.written == [] and len(again.unchanged) == len(before)
    assert files(out) == before  # same inodes, same mtimes
    store.upsert_articles([art(9, category="Thể thao")])  # lands in 2024-04, a new month
    third = publish_all(store, settings)
    after = files(out)
    rewritten = {p for p in before if after[p] != before[p]}
    assert rewritten == set(third.written) - {p for p in third.written if p not in before}
    assert "category/kinh-te/rss.xml" not in third.written  # other category untouched
    assert {"rss.xml", "category/the-thao/rss.xml", "feeds/atom/2024-04.xml", "feeds/atom/2024-03.xml"} <= set(
        third.written
    )
    assert not [p for p in after if p.endswith(".tmp") or "/." in p or p.startswith(".")]


def test_writes_are_atomic_renames(tmp_path: Path) -> None:
    assert write_if_changed(tmp_path, "feeds/a.xml", b"old") is True
    target = tmp_path / "feeds/a.xml"
    with open(target, "rb") as reader:  # a reader mid-way keeps the complete old file
        inode = target.stat().st_ino
        assert write_if_changed(tmp_path, "feeds/a.xml", b"new bytes") is True
        assert reader.read() == b"old"
    assert target.read_bytes() == b"new bytes"
    assert target.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert write_if_changed(tmp_path, "feeds/a.xml", b"new bytes") is False
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.xml"]


def _walk(out: Path, settings: Settings, scope: Scope, fmt: str) -> list[str]:
    """Follow prev-archive from the subscription feed to the oldest month; return every id seen."""
    base = settings.base_url
    seen: list[str] = []
    path = out / scope.feed_path(fmt).lstrip("/")
    visited = []
    while True:
        raw = path.read_bytes()
        if fmt == "json":
            doc = json.loads(raw)
            seen += [i["id"] for i in doc["items"]]
            links = doc.get("_rfc5005", {})
            nxt = links.get("prev_archive")
            if visited:
                assert links["archive"] is True and links["current"] == base + scope.feed_path(fmt)
        else:
            parsed = feedparser.parse(raw)
            assert parsed.bozo is False
            seen += [e.id for e in parsed.entries]
            rels = {link.rel: link.href for link in parsed.feed.links}
            nxt = rels.get("prev-archive")
            if visited:
                assert rels["current"] == base + scope.feed_path(fmt)
                if len(visited) > 1:  # a month's next-archive points back where we came from
                    assert rels["next-archive"] == visited[-2]
        if not nxt:
            return seen
        assert nxt.startswith(base)
        visited.append(nxt)
        path = out / urlsplit(nxt).path.lstrip("/")


def test_archives_walk_back_to_the_oldest_article(store: Store, settings: Settings) -> None:
    settings = settings.with_(feeds_items=3)
    articles = [art(i) for i in range(12)] + [art(100, days=400), art(101, days=-300)]  # gaps of empty months
    store.upsert_articles(articles)
    out = Path(settings.feeds_out)
    publish_all(store, settings)
    for scope, expected in (
        (SITE, articles),
        (Scope.category("kinh-te"), [a for a in articles if a.category == "Kinh tế"]),
    ):
        for fmt in FORMATS:
            ids = _walk(out, settings, scope, fmt)
            assert set(ids) == {tag_uri(settings, a.guid) for a in expected}, (scope, fmt)
            assert len(ids) == len(expected) + 3  # the newest three appear in the feed and in their month
    oldest = feedparser.parse((out / "feeds/atom/2023-03.xml").read_bytes())
    assert "prev-archive" not in {link.rel for link in oldest.feed.links}
    assert b"<fh:archive/>" in (out / "feeds/atom/2023-03.xml").read_bytes()


class Hub:
    """A tiny WebSub hub on 127.0.0.1 that records publish pings."""

    def __init__(self) -> None:
        self.pings: list[dict[str, list[str]]] = []

        async def hub(request: Request) -> Response:
            self.pings.append(parse_qs((await request.body()).decode()))
            return Response(status_code=204)

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        app = Starlette(routes=[Route("/hub", hub, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hub"


@pytest.fixture
def hub() -> Iterator[Hub]:
    h = Hub()
    h.thread.start()
    deadline = time.monotonic() + 120
    while not h.server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield h
    h.server.should_exit = True
    h.thread.join(10)


def test_publish_changed_rebuilds_only_what_changed_and_pings_the_hub(
    store: Store, settings: Settings, hub: Hub
) -> None:
    settings = settings.with_(feeds_hub_url=hub.url)
    store.upsert_articles([art(i) for i in range(8)])
    out = Path(settings.feeds_out)
    publish_all(store, settings)
    assert len(hub.pings) == 9  # feed build pings every subscription feed it wrote (site and two categories)
    hub.pings.clear()
    before = files(out)
    result = store.upsert_articles([art(50, days=80, category="Thể thao")])  # 2024-03-30
    report = publish_changed(store, settings, out, result.changed_categories, guids=result.inserted + result.updated)
    assert set(report.written) == {
        "rss.xml", "atom.xml", "feed.json", "index.html",
        "category/the-thao/rss.xml", "category/the-thao/atom.xml", "category/the-thao/feed.json",
        "category/the-thao/index.html",
        "feeds/rss/2024-03.xml", "feeds/atom/2024-03.xml", "feeds/json/2024-03.json",
        "category/the-thao/feeds/rss/2024-03.xml", "category/the-thao/feeds/atom/2024-03.xml",
        "category/the-thao/feeds/json/2024-03.json",
        "articles/bai-50/index.html",
    }
    after = files(out)
    assert after["category/kinh-te/rss.xml"] == before["category/kinh-te/rss.xml"]
    assert after["feeds/atom/2024-01.xml"] == before["feeds/atom/2024-01.xml"]
    pinged = sorted(u for p in hub.pings for u in p["hub.url"])
    assert all(p["hub.mode"] == ["publish"] for p in hub.pings)
    assert pinged == sorted(report.pinged) == sorted(
        f"https://news.example.org{s.feed_path(f)}" for s in (SITE, Scope.category("the-thao")) for f in FORMATS
    )
    # the same bytes as a full rebuild: incremental publishing misses nothing
    full = publish_all(store, settings)
    assert full.written == []


def test_publish_changed_relinks_neighbours_of_a_new_month(store: Store, settings: Settings) -> None:
    store.upsert_articles([art(1, days=0), art(2, days=70)])  # January and March
    out = Path(settings.feeds_out)
    publish_all(store, settings)
    result = store.upsert_articles([art(3, days=35)])  # February appears between them
    publish_changed(store, settings, out, result.changed_categories, guids=result.inserted)
    jan = feedparser.parse((out / "feeds/atom/2024-01.xml").read_bytes())
    mar = feedparser.parse((out / "feeds/atom/2024-03.xml").read_bytes())
    assert {link.rel: link.href for link in jan.feed.links}["next-archive"].endswith("/feeds/atom/2024-02.xml")
    assert {link.rel: link.href for link in mar.feed.links}["prev-archive"].endswith("/feeds/atom/2024-02.xml")
    assert publish_all(store, settings).written == []


def test_publish_changed_without_guids_uses_the_last_publish_time(store: Store, settings: Settings) -> None:
    store.upsert_articles([art(i) for i in range(4)])
    out = Path(settings.feeds_out)
    publish_all(store, settings)
    store.upsert_articles([art(2, title="Bài sửa")], now=datetime.now(UTC) + timedelta(seconds=5))
    report = publish_changed(store, settings, out, {"kinh-te"})
    assert "feeds/atom/2024-02.xml" in report.written  # art(2) is published 2024-02-01
    assert "feeds/atom/2024-01.xml" not in report.written
    assert publish_all(store, settings).written == []


def test_an_unreachable_hub_is_reported_not_raised(store: Store, settings: Settings) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    settings = settings.with_(feeds_hub_url=f"http://127.0.0.1:{port}/hub")
    store.upsert_articles([art(1)])
    publish_all(store, settings)
    result = store.upsert_articles([art(2)])
    report = publish_changed(store, settings, None, result.changed_categories, guids=result.inserted)
    assert report.pinged == [] and report.errors == [] and report.warnings  # a warning, never a failure
    assert report.warnings[0].startswith(f"hub http://127.0.0.1:{port}/hub unreachable for https://news.example.org/")
    assert (Path(settings.feeds_out) / "rss.xml").exists()


def test_cli_feed_build(cli: CliRunner, tmp_path: Path) -> None:
    from syndicate.store import open_store

    s = open_store(tmp_path / "syndicate.db")
    s.upsert_articles([art(1), art(2)])
    s.close()
    result = cli.invoke(main, ["feed", "build", "--out", "public", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "atom.xml" in data["written"] and data["unchanged"] == 0
    assert (tmp_path / "public/category/kinh-te/feed.json").exists()
    again = cli.invoke(main, ["feed", "build", "--out", "public"])
    assert again.exit_code == 0
    assert again.output.startswith("0 written, ") and "unchanged in public/" in again.output
    assert len(again.output.splitlines()) == 1  # one summary line; -v names the files
    (tmp_path / "public" / "atom.xml").unlink()
    verbose = cli.invoke(main, ["feed", "build", "--out", "public", "-v"])
    assert verbose.output.splitlines()[0] == "wrote public/atom.xml"
    assert verbose.output.splitlines()[1].startswith("1 written, ")
    assert os.path.exists(tmp_path / "public" / "index.html")


def test_list_feeds_are_published_advertised_and_refreshed(store: Store, settings: Settings) -> None:
    from syndicate.models import NewsList

    store.upsert_articles([art(i) for i in range(8)])  # Kinh tế (even), Thể thao (odd); Jan..Mar 2024
    store.create_list(NewsList(slug="kinh-te-sang", name="Kinh tế sáng", description="Tin kinh tế",
                               categories=["kinh-te"], language="vi"))
    store.create_list(NewsList(slug="moi-tin", name="Mọi tin", categories=[]))
    out = Path(settings.feeds_out)
    publish_all(store, settings)
    for slug in ("kinh-te-sang", "moi-tin"):
        for name in ("rss.xml", "atom.xml", "feed.json"):
            assert (out / "list" / slug / name).is_file()
        for month in ("2024-01", "2024-02", "2024-03"):
            assert (out / f"list/{slug}/feeds/atom/{month}.xml").is_file()
    econ = feedparser.parse((out / "list/kinh-te-sang/atom.xml").read_bytes())
    assert econ.bozo is False and econ.feed.title == "Kinh tế sáng"
    assert [e.title for e in econ.entries] == [f"Bài số {i}" for i in (6, 4, 2, 0)]
    parser = _Links()
    parser.feed((out / "index.html").read_text("utf-8"))
    hrefs = {href for _type, href in parser.alternates}
    assert "https://news.example.org/list/kinh-te-sang/atom.xml" in hrefs
    assert "https://news.example.org/list/moi-tin/feed.json" in hrefs

    # a new Thể thao article: the all-covering list changes, the Kinh tế list is left alone
    before = files(out)
    result = store.upsert_articles([art(50, days=80, category="Thể thao")])
    report = publish_changed(store, settings, out, result.changed_categories, guids=result.inserted)
    assert "list/moi-tin/atom.xml" in report.written and "list/moi-tin/feeds/atom/2024-03.xml" in report.written
    assert not any(p.startswith("list/kinh-te-sang/") for p in report.written)
    assert files(out)["list/kinh-te-sang/atom.xml"] == before["list/kinh-te-sang/atom.xml"]
    # a new Kinh tế article reaches the Kinh tế list's feed at once
    result = store.upsert_articles([art(52, days=81, category="Kinh tế")])
    report = publish_changed(store, settings, out, result.changed_categories, guids=result.inserted)
    assert {"list/kinh-te-sang/rss.xml", "list/kinh-te-sang/atom.xml", "list/kinh-te-sang/feed.json"} <= set(
        report.written
    )
    econ = feedparser.parse((out / "list/kinh-te-sang/rss.xml").read_bytes())
    assert econ.bozo is False and econ.entries[0].title == "Bài số 52"
    assert json.loads((out / "list/moi-tin/feed.json").read_bytes())["items"][0]["title"] == "Bài số 52"
    assert publish_all(store, settings).written == []  # incremental missed nothing


def test_publish_all_prunes_what_it_no_longer_makes(store: Store, settings: Settings) -> None:
    from syndicate.models import NewsList

    store.upsert_articles([art(i) for i in range(4)])  # Kinh tế (even), Thể thao (odd)
    store.create_list(NewsList(slug="old-list", name="Old"))
    root = Path(settings.feeds_out)
    publish_all(store, settings, root)
    (root / "robots.txt").write_text("User-agent: *\n", encoding="utf-8")  # not ours: must stay
    (root / "category" / "custom.html").write_text("mine", encoding="utf-8")
    assert (root / "list" / "old-list" / "atom.xml").exists()
    for article in store.newest_articles(10, category_slug="the-thao"):
        store.remove_article(article.guid)
    store.remove_list(store.get_list("old-list").id or 0)
    report = publish_all(store, settings, root)
    assert "category/the-thao/atom.xml" in report.removed and "list/old-list/rss.xml" in report.removed
    assert not (root / "category" / "the-thao").exists() and not (root / "list" / "old-list").exists()
    assert (root / "category" / "kinh-te" / "atom.xml").exists()
    assert (root / "robots.txt").exists() and (root / "category" / "custom.html").exists()
    assert publish_all(store, settings, root).removed == []


def test_publish_all_prunes_the_pages_of_removed_articles_and_nothing_else(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    store.upsert_articles([art(i) for i in range(5)])
    root = Path(settings.feeds_out)
    publish_all(store, settings, root)
    pages = root / "articles"
    (pages / "bai-3" / "notes.txt").write_text("mine", encoding="utf-8")  # not ours: it and its folder stay
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "index.html").write_text("not the site's", encoding="utf-8")
    (pages / "linked").symlink_to(tmp_path / "elsewhere")  # a folder through a link: never followed
    (pages / "readme.txt").write_text("mine", encoding="utf-8")
    for guid in ("g1", "g3"):
        store.remove_article(guid)
    report = publish_all(store, settings, root)
    assert {"articles/bai-1/index.html", "articles/bai-3/index.html"} <= set(report.removed)
    assert not (pages / "bai-1").exists() and not (pages / "bai-3" / "index.html").exists()
    assert (pages / "bai-3" / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (tmp_path / "elsewhere" / "index.html").exists() and (pages / "readme.txt").exists()
    assert sorted(p.name for p in pages.iterdir()) == ["bai-0", "bai-2", "bai-3", "bai-4", "linked", "readme.txt"]
    assert publish_all(store, settings, root).removed == []


# --- progress: a bar on a terminal, one summary line otherwise (issue 13) -----------------------


def _on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run ``syndicate ARGS`` with stderr on a pseudo-terminal: (exit code, stdout, what the terminal showed)."""
    import pty
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("SYNDICATE_")}
    env.update(SYNDICATE_DB=str(cwd / "syndicate.db"), SYNDICATE_SECRET_KEY="test-secret-key-0123456789-abcdefghij",
               COLUMNS="100")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "syndicate", *args], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower)
    finally:
        os.close(follower)
    shown = b""
    try:
        while True:  # until the child exits and the terminal reports EOF (EIO on Linux)
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=120), out, shown.decode(errors="replace")


def _store_with_months(tmp_path: Path) -> None:
    from syndicate.store import open_store

    store = open_store(str(tmp_path / "syndicate.db"))
    store.upsert_articles([art(i) for i in range(8)])  # Jan..Mar 2024: three archive months
    store.close()


def test_feed_build_prints_one_summary_line_and_no_bar_when_not_on_a_terminal(cli: CliRunner, tmp_path: Path) -> None:
    _store_with_months(tmp_path)
    built = cli.invoke(main, ["feed", "build"])
    assert built.exit_code == 0, built.output
    assert built.stderr == ""
    assert built.stdout.splitlines() == [
        f"{len(files(tmp_path / 'site'))} written, 0 unchanged in site/; subscribe at http://127.0.0.1:8080/atom.xml"
    ]


def test_feed_build_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    _store_with_months(tmp_path)
    code, out, shown = _on_a_terminal(["feed", "build"], tmp_path)
    assert code == 0, shown
    assert "building feeds" in shown and "8/8" in shown, shown
    assert out.splitlines()[-1].endswith("subscribe at http://127.0.0.1:8080/atom.xml")


def test_article_import_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    pages = tmp_path / "in"
    pages.mkdir()
    for i in range(3):
        (pages / f"a{i}.md").write_text(f"---\ntitle: Bài {i}\npublished: 2024-01-0{i + 1}T08:00:00+07:00\n---\nNội dung {i}\n",
                                        encoding="utf-8")
    code, out, shown = _on_a_terminal(["article", "import", "in"], tmp_path)
    assert code == 0, shown + out
    assert "importing" in shown and "100%" in shown, shown
    quiet = CliRunner().invoke(main, ["--db", str(tmp_path / "quiet.db"), "article", "import", str(pages)],
                               env={"SYNDICATE_SECRET_KEY": "test-secret-key-0123456789-abcdefghij"})
    assert quiet.exit_code == 0 and "importing" not in quiet.output and "%" not in quiet.output


def _every_document(store: Store, settings: Settings, now: datetime) -> dict[str, bytes]:
    """Every feed document, each built on its own (no entry shared with another document)."""
    from syndicate.feed_build import all_scopes, archive_months, build_group

    out: dict[str, bytes] = {}
    for scope in all_scopes(store, now):
        for month in [None, *archive_months(store, settings, scope, now)]:
            for doc in build_group(store, settings, scope, month, now) or []:
                out[doc.path.lstrip("/")] = doc.body
    return out


def test_a_full_build_shares_feed_entries_but_never_a_stale_or_foreign_one(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    from syndicate.models import NewsList

    # Some articles in English: own-language in the Vietnamese site's feeds, not in the English list's,
    # so one article needs two different entries in one month.
    store.upsert_articles([art(i, days=3 * i, language="en" if i % 3 == 0 else "") for i in range(12)])
    store.create_list(NewsList(slug="english", name="English", categories=[], language="en"))
    now = T0 + timedelta(days=120)
    out = Path(settings.feeds_out)
    publish_all(store, settings, now=now, ping=False)
    on_disk = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.xml")}
    on_disk |= {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.json")}
    alone = _every_document(store, settings, now)
    assert any("/feeds/" in path for path in alone) and on_disk == alone

    # Edit an article in place (title, body, language): the next build holds only the edited entry.
    store.upsert_articles([art(4, days=12, title="Bài đã sửa", body_html="<p>Mới</p>", language="en")], now=now)
    publish_all(store, settings, now=now, ping=False)
    fresh = tmp_path / "fresh"
    publish_all(store, settings, fresh, now=now, ping=False)
    edited = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert edited == {p.relative_to(fresh).as_posix(): p.read_bytes() for p in fresh.rglob("*") if p.is_file()}
    alone = _every_document(store, settings, now)
    assert all(edited[path] == body for path, body in alone.items())
    site_month = edited["feeds/atom/2024-01.xml"].decode()
    assert "Bài đã sửa" in site_month and "Bài số 4<" not in site_month
    english = feedparser.parse(edited["list/english/feeds/atom/2024-01.xml"])
    site = feedparser.parse(site_month)
    assert [e.title for e in english.entries] == [e.title for e in site.entries]
    # the English list does not repeat its own language on each entry; the Vietnamese site does
    assert "<entry xml:lang" not in edited["list/english/feeds/atom/2024-01.xml"].decode()
    assert site_month.count('<entry xml:lang="en">') == 4 and site_month.count("<entry>") == 4  # 0, 3, 4, 6 of 0..7


def test_a_sites_own_article_template_gets_the_globals_and_its_errors_name_its_line(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    """Pages are rendered from one lookup of the template with its globals merged once: a site's own
    site-article.html still sees every global (``site``, ``logo``, jinja's ``range``), and a mistake
    in it is reported at its own line, as Template.render would."""
    import jinja2

    mine = tmp_path / "mine"
    (mine / "web").mkdir(parents=True)
    (mine / "web/site-article.html").write_text(
        "{{ site.title }}|{{ logo }}|{{ range(2)|list }}|{{ item.title }}|{{ published_date }}|{{ feeds|length }}\n",
        encoding="utf-8",
    )
    custom = settings.with_(mail_templates_dir=str(mine), title="Tin <Đà Nẵng>")
    store.upsert_articles([art(1), art(2)])
    publish_all(store, custom, now=T0 + timedelta(days=60), ping=False)
    out = Path(settings.feeds_out)
    assert (out / "articles/bai-1/index.html").read_text(encoding="utf-8") == (
        "Tin &lt;Đà Nẵng&gt;||[0, 1]|Bài số 1|21/01/2024|6\n"  # 3 site feeds, 3 of its category
    )
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (mine / "web/site-article.html").write_text("{{ item.title }}\n{{ nope }}\n", encoding="utf-8")
    store.upsert_articles([art(2, title="Bài số 2 (sửa)")])
    with pytest.raises(jinja2.UndefinedError, match="'nope' is undefined") as failed:
        publish_all(store, custom, now=T0 + timedelta(days=60), ping=False)
    frames = [(str(entry.path), entry.lineno + 1) for entry in failed.traceback]
    assert (str(mine / "web/site-article.html"), 2) in frames  # the template's own line, not the compiled code's
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_full_build_under_umask_077_is_readable_by_a_static_server(store: Store, settings: Settings) -> None:
    """Every file 0644 and every folder 0755, in the caller and in its worker alike: the web server
    is another user, whatever umask the cron job that builds the site runs with."""
    import stat

    store.upsert_articles([art(i) for i in range(8)])
    old = os.umask(0o077)
    try:
        publish_all(store, settings, now=T0 + timedelta(days=120), ping=False, jobs=2)
    finally:
        os.umask(old)
    out = Path(settings.feeds_out)
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert "articles/bai-3/index.html" in modes and "category/the-thao/feeds/rss/2024-01.xml" in modes
    assert {rel: m for rel, m in modes.items() if m != (0o755 if (out / rel).is_dir() else 0o644)} == {}
