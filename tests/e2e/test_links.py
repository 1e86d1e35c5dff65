"""Every link a feed carries answers 200 on a real ``serve`` (uvicorn on 127.0.0.1), with no redirect.

The feeds are read back the way readers read them (feedparser, and the JSON
Feed keys), starting from the site, every category and every list feed and
following archive links, so a URL shape added to the feeds later is checked
too. A link that redirects counts as broken: readers store the URL they were
given, and the static site cannot answer a redirect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import feedparser
import httpx
import pytest

from syndicate.config import Secret, Settings
from syndicate.ingest import import_paths
from syndicate.store import open_store
from syndicate.subscribers import load_lists
from syndicate.web import create_app

if TYPE_CHECKING:  # fixtures from tests/e2e/conftest.py
    from conftest import LiveServer

DATA = Path(__file__).resolve().parent.parent.parent / "data"
FEED_PATH = re.compile(r"(\.xml|\.json)$")


@pytest.fixture
def served(tmp_path: Path, live_server: Callable[[], LiveServer]) -> Iterator[tuple[Settings, httpx.Client]]:
    """The sample articles and lists from data/, served by create_app (what `syndicate serve` runs)."""
    srv = live_server()
    settings = Settings(db=str(tmp_path / "s.db"), secret_key=Secret("links-test-secret-0123456789-abcdefgh"),
                        base_url=srv.url, feeds_out=str(tmp_path / "site"), source="e2e")
    store = open_store(settings.db)
    try:
        report = import_paths(store, [DATA / "articles"])
        assert not report.errors and report.inserted > 10
        load_lists(store, DATA / "lists.toml")
    finally:
        store.close()
    srv.start(create_app(settings))
    with httpx.Client(base_url=srv.url, timeout=30, follow_redirects=False) as http:
        yield settings, http


def feed_links(body: bytes, content_type: str) -> set[str]:
    """Every URL a reader takes from one feed document: feedparser for RSS/Atom, the JSON Feed 1.1 keys."""
    if "json" in content_type:  # feedparser 6.0 does not read JSON Feed
        doc = json.loads(body)
        found = {doc.get(k, "") for k in ("home_page_url", "feed_url", "next_url")}
        for item in doc.get("items", []):
            found |= {item.get("url", ""), item.get("external_url", "")}
        return {url for url in found if url}
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    found = {parsed.feed.get("link", "")}
    found |= {link.get("href", "") for link in parsed.feed.get("links", [])}
    for entry in parsed.entries:
        found.add(entry.get("link", ""))
        found |= {link.get("href", "") for link in entry.get("links", [])}
    return {url for url in found if url}


def test_every_link_in_every_feed_answers_200_without_a_redirect(
    served: tuple[Settings, httpx.Client],
) -> None:
    settings, http = served
    home = http.get("/")
    assert home.status_code == 200
    start = set(re.findall(r'<link rel="alternate" type="application/[a-z+]+" title="[^"]*" href="([^"]+)">', home.text))
    for slug in ("tin-sang", "weekly-tech"):
        start |= {f"/list/{slug}/rss.xml", f"/list/{slug}/atom.xml", f"/list/{slug}/feed.json"}
    assert {"/rss.xml", "/atom.xml", "/feed.json"} <= start and any(p.startswith("/category/") for p in start)
    to_read = [settings.base_url + path for path in sorted(start)]
    read: set[str] = set()
    checked: dict[str, int] = {}
    pages: set[str] = set()
    external: set[str] = set()
    while to_read:
        url = to_read.pop()
        if url in read:
            continue
        read.add(url)
        r = http.get(url)
        assert r.status_code == 200, (url, r.status_code, r.headers.get("location"))
        for link in feed_links(r.content, r.headers["content-type"]):
            if urlsplit(link).netloc != urlsplit(settings.base_url).netloc:
                external.add(link)  # an imported article's own page elsewhere: not ours to serve
                continue
            if FEED_PATH.search(urlsplit(link).path):
                to_read.append(link)
            elif link not in checked:
                answer = http.get(link)
                checked[link] = answer.status_code
                if answer.status_code == 200:
                    assert answer.headers["content-type"] == "text/html; charset=utf-8", link
                    pages.add(urlsplit(link).path)
    broken = {link: code for link, code in checked.items() if code != 200}
    assert broken == {}
    # The kinds of page the feeds point at, each seen at least once.
    assert "/" in pages
    assert any(re.fullmatch(r"/category/[a-z0-9-]+/", p) for p in pages), pages
    assert {"/list/tin-sang/", "/list/weekly-tech/"} <= pages
    assert any(p.startswith("/articles/") for p in pages)
    assert all(urlsplit(link).netloc.endswith("example.org") for link in external), external
    assert len(read) > 20  # site, categories, lists and their archive months were all walked


def test_list_page_and_category_page_carry_their_own_feeds(served: tuple[Settings, httpx.Client]) -> None:
    _, http = served
    for path in ("/list/weekly-tech/", "/category/cong-nghe/"):
        page = http.get(path)
        assert page.status_code == 200
        links = re.findall(r'<link rel="alternate" type="application/[a-z+]+" title="[^"]*" href="([^"]+)">', page.text)
        prefix = path.rstrip("/")
        assert {f"{prefix}/rss.xml", f"{prefix}/atom.xml", f"{prefix}/feed.json"} <= set(links), path
        for href in links:  # every autodiscovery link is a feed the same server answers
            assert http.get(href).status_code == 200, href


def test_every_link_on_the_pages_answers_without_a_redirect(served: tuple[Settings, httpx.Client]) -> None:
    """Two clicks deep from the home page and each list page: templates link the canonical URLs only."""
    _, http = served
    seen: dict[str, int] = {}
    frontier = ["/", "/list/tin-sang/", "/list/weekly-tech/"]
    for _depth in range(2):
        found: list[str] = []
        for path in frontier:
            if path in seen:
                continue
            r = http.get(path)
            seen[path] = r.status_code
            if r.status_code == 200 and r.headers["content-type"].startswith("text/html"):
                found += re.findall(r'href="(/[^"#?]*)', r.text)
        frontier = sorted(set(found) - set(seen))
    for path in frontier:
        seen[path] = http.get(path).status_code
    assert {p: code for p, code in seen.items() if code != 200} == {}
    assert len(seen) > 40 and any(p.startswith("/archive/") for p in seen)
