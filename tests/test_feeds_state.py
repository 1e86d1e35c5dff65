"""The feeds promise, tried in many orders: a Hypothesis state machine over a real store and a running `serve`.

Operations: import (backdated, current and future-dated articles), edit (also with an ``updated``
older than the newest, and while embargoed articles wait), remove, create and rename a list,
advance the clock (across embargo instants and month ends), fetch any feed URL (plain, with
If-None-Match, with If-Modified-Since), and `feed build` into a fresh directory.

Invariants:
* the bytes `serve` returns equal the bytes a fresh build writes at the same instant;
* an ETag that once named a body never names another;
* Last-Modified is never after Date and never goes back; a 304 is only ever given for the
  very body the client holds.

`serve` runs on a test clock handed in through ``with_clock`` (the same hook `syndicate
serve` uses with the real clock): not a mock, the server simply reads that clock.
SYNDICATE_EXAMPLES=N asks for more examples.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import httpx
import uvicorn
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from tests_clock import Clock

from syndicate.config import Secret, Settings
from syndicate.feeds import parse_path, tag_uri
from syndicate.models import Article, NewsList, to_iso
from syndicate.publish import build_group, publish_all
from syndicate.store import open_store
from syndicate.web import create_app
from syndicate.web.feeds import with_clock

EXAMPLES = int(os.environ.get("SYNDICATE_EXAMPLES", "4"))
START = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)  # 22:00 on the site's calendar (+07:00)
CATEGORIES = ["Kinh tế", "Xã hội", "Thể thao", "Kinh Tế"]  # two spellings of one slug: the greater names it
PATHS = [
    "/rss.xml", "/atom.xml", "/feed.json",
    "/category/kinh-te/atom.xml", "/category/xa-hoi/rss.xml", "/category/the-thao/feed.json",
    "/list/sang/atom.xml", "/list/sang/feed.json",
    "/feeds/atom/2026-02.xml", "/feeds/rss/2026-03.xml", "/feeds/json/2026-04.json",
    "/category/kinh-te/feeds/atom/2026-03.xml", "/list/sang/feeds/rss/2026-02.xml",
]


def article(i: int, published: datetime, category: str, title: str = "") -> Article:
    return Article(
        guid=f"s{i}", title=title or f"Tin {i}", slug=f"tin-{i}", published=published,
        body_html=f"<p>Nội dung {i}</p>", summary=f"Tóm tắt {i}", category=category,
    )


@settings(max_examples=EXAMPLES, stateful_step_count=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
class FeedsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="feeds-state-"))
        self.settings = Settings(
            db=str(self.dir / "s.db"), secret_key=Secret("test-secret-key-0123456789"),
            base_url="https://news.example.org", feeds_out=str(self.dir / "site"), feeds_items=4,
            timezone="Asia/Ho_Chi_Minh", source="tests",
        )
        self.store = open_store(self.settings.db)
        self.clock = Clock(START)
        self.articles: dict[int, Article] = {}
        self.etags: dict[str, bytes] = {}  # every ETag ever served -> the one body it named
        self.last_modified: dict[str, datetime] = {}  # path -> newest Last-Modified served
        self.held: dict[str, tuple[str, bytes]] = {}  # path -> (Last-Modified header, body) a client holds
        self.builds = 0
        app = create_app(self.settings)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.sock = sock
        config = uvicorn.Config(with_clock(app, self.clock), log_level="warning", lifespan="on", date_header=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=60,
                                   headers={"accept-encoding": "identity"})

    def teardown(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- writes -----------------------------------------------------------------------

    @rule(i=st.integers(0, 11), days=st.integers(-70, 5), hours=st.integers(-12, 12),
          category=st.sampled_from(CATEGORIES))
    def import_article(self, i: int, days: int, hours: int, category: str) -> None:
        """Backdated, current or future-dated (an embargo) article, new or re-imported."""
        a = article(i, self.clock() + timedelta(days=days, hours=hours), category)
        self.store.upsert_articles([a], now=self.clock())
        self.articles[i] = a

    @precondition(lambda self: self.articles)
    @rule(data=st.data(), back=st.integers(0, 40))
    def edit(self, data: st.DataObject, back: int) -> None:
        """An edit whose `updated` may be older than the newest article's (`back` days before now)."""
        i = data.draw(st.sampled_from(sorted(self.articles)))
        old = self.articles[i]
        edited = article(i, old.published, old.category, title=f"{old.title} (sửa)"[:60])
        self.store.upsert_articles([edited], now=self.clock() - timedelta(days=back))
        self.articles[i] = edited

    @precondition(lambda self: self.articles)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        i = data.draw(st.sampled_from(sorted(self.articles)))
        self.store.remove_article(f"s{i}")
        del self.articles[i]

    @rule(categories=st.lists(st.sampled_from(["kinh-te", "xa-hoi"]), unique=True), name=st.sampled_from(["Sáng", "Tối"]))
    def make_or_rename_list(self, categories: list[str], name: str) -> None:
        try:
            nl = self.store.get_list("sang")
        except Exception:
            self.store.create_list(NewsList(slug="sang", name=name, categories=categories))
            return
        nl.name, nl.categories = name, categories
        self.store.update_list(nl)

    @rule(i=st.integers(0, 11), minutes=st.sampled_from([1, 30, 90, 600]), category=st.sampled_from(CATEGORIES))
    def import_embargoed(self, i: int, minutes: int, category: str) -> None:
        """An article dated later today: public only once the clock passes it."""
        a = article(i, self.clock() + timedelta(minutes=minutes), category)
        self.store.upsert_articles([a], now=self.clock())
        self.articles[i] = a

    @rule(seconds=st.sampled_from([1, 3600, 3600, 6 * 3600, 86400, 20 * 86400]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    # --- reads ------------------------------------------------------------------------

    def expected(self, path: str) -> bytes | None:
        found = parse_path(path)
        assert found is not None
        docs = build_group(self.store, self.settings, found.scope, found.month, self.clock())
        if docs is None:
            return None
        return next((d.body for d in docs if d.path == path), None)

    def check(self, path: str, response: httpx.Response, sent: dict[str, str]) -> None:
        expected = self.expected(path)
        if expected is None:
            assert response.status_code == 404, (path, response.status_code)
            return
        etag, modified = response.headers["etag"], response.headers["last-modified"]
        lm = parsedate_to_datetime(modified)
        assert lm <= parsedate_to_datetime(response.headers["date"]), (path, modified, response.headers["date"])
        assert lm <= self.clock()
        assert lm >= self.last_modified.get(path, lm), f"{path}: Last-Modified went back"
        self.last_modified[path] = lm
        if response.status_code == 304:
            if "if-none-match" in sent:
                assert self.etags[sent["if-none-match"]] == expected, f"{path}: 304 for a changed body"
            elif sent.get("held") == "yes":
                assert self.held[path][1] == expected, f"{path}: If-Modified-Since gave 304 for a changed body"
            else:  # a date long before anything was served
                assert lm <= parsedate_to_datetime(sent["if-modified-since"]), f"{path}: 304 for an old date"
            body = expected
        else:
            assert response.status_code == 200, (path, response.status_code)
            assert response.content == expected, f"{path}: serve's bytes differ from a fresh build's"
            body = response.content
            self.held[path] = (modified, body)
        assert self.etags.setdefault(etag, body) == body, f"{path}: ETag {etag} named two bodies"

    @rule(path=st.sampled_from(PATHS), how=st.sampled_from(["plain", "etag", "since", "old-since"]))
    def fetch(self, path: str, how: str) -> None:
        sent: dict[str, str] = {}
        held: bytes | None = None
        if how == "etag" and self.etags:
            sent["if-none-match"] = sorted(self.etags)[len(self.etags) // 2]
        elif how == "since" and path in self.held:
            sent["if-modified-since"] = self.held[path][0]
            held = self.held[path][1]
        elif how == "old-since":
            sent["if-modified-since"] = format_datetime(START - timedelta(days=400), usegmt=True)
        response = self.client.get(path, headers=sent)
        if "if-modified-since" in sent and how == "since":
            sent["held"] = "yes"
            assert held is not None
        self.check(path, response, sent)
        if path != "/atom.xml":  # the site feed, which every change reaches, is looked at every time
            self.check("/atom.xml", self.client.get("/atom.xml"), {})

    @rule()
    def build(self) -> None:
        """`feed build` into a fresh directory: every file it writes is what serve returns, and nothing else."""
        self.builds += 1
        out = self.dir / f"build-{self.builds}"
        publish_all(self.store, self.settings, out, now=self.clock(), ping=False)
        written = {"/" + p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
        for path in sorted(p for p in written if parse_path(p) is not None):
            response = self.client.get(path)
            assert response.status_code == 200, path
            assert response.content == (out / path.lstrip("/")).read_bytes(), f"{path}: serve != feed build"
        for path in PATHS:
            if path not in written:
                assert self.client.get(path).status_code == 404, f"{path}: served but feed build wrote no such file"
        shutil.rmtree(out)

    @invariant()
    def category_counts_match_a_full_count(self) -> None:
        """The trigger-kept counts less the embargoed equal a GROUP BY over every article, at any clock."""
        for now in (self.clock(), self.clock() + timedelta(days=30)):
            full = self.store.conn.execute(
                "SELECT category_slug, max(category), count(*) FROM articles "
                "WHERE category_slug != '' AND published <= ? GROUP BY category_slug ORDER BY category_slug",
                [to_iso(now)],
            ).fetchall()
            assert self.store.public_categories(now) == [tuple(r) for r in full]
            assert self.store.categories(now=now) == [tuple(r) for r in full]
            names = {slug: name for slug, name, _n in full}
            for slug in {a.category_slug for a in self.articles.values()} | {"no-such-category"}:
                assert self.store.public_category_name(slug, now) == names.get(slug or "\0"), slug

    @invariant()
    def nothing_future_is_public(self) -> None:
        now = self.clock()
        atom = self.expected("/atom.xml") or b""
        for a in self.articles.values():
            if a.published > now:
                assert f"<id>{tag_uri(self.settings, a.guid)}</id>".encode() not in atom, f"{a.guid} is embargoed"


TestFeedsMachine = FeedsMachine.TestCase
