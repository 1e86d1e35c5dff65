"""`syndicate serve` over real loopback HTTP: types, ETag/304, Last-Modified/304, gzip, rebuild on change."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import feedparser
import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from loopback import free_port

from syndicate.cli import main
from syndicate.config import Settings
from syndicate.models import Article
from syndicate.publish import publish_all
from syndicate.store import Store
from syndicate.web import create_app
from syndicate.web.feeds import with_clock
from syndicate.web.guard import RateLimits
from syndicate.web.serving import AccessLog, ServeOptions, uvicorn_config

T0 = datetime(2024, 10, 1, 8, 0, tzinfo=UTC)


def art(i: int, **changes: object) -> Article:
    values: dict[str, object] = dict(
        guid=f"g{i}", title=f"Tin số {i}: đổi mới", slug=f"tin-{i}", published=T0 + timedelta(days=3 * i),
        body_html=f"<p>Nội dung {i} " + "dài " * 200 + "</p>", category=["Kinh tế", "Xã hội"][i % 2],
    )
    values.update(changes)
    return Article(**values)  # type: ignore[arg-type]



@dataclass
class Served:
    client: httpx.Client
    settings: Settings
    app: object


@pytest.fixture
def served(store: Store, settings: Settings) -> Iterator[Served]:
    store.upsert_articles([art(i) for i in range(12)])
    app = create_app(settings)
    # as `syndicate serve` runs it: Date from the clock that dates Last-Modified
    server = uvicorn.Server(uvicorn.Config(with_clock(app), host="127.0.0.1", port=free_port(), log_level="warning",
                                           date_header=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        yield Served(client, settings, app)
    server.should_exit = True
    thread.join(10)


def identity(client: httpx.Client, path: str, **headers: str) -> httpx.Response:
    return client.get(path, headers={"accept-encoding": "identity", **headers})


def test_content_types_and_cache_headers(served: Served) -> None:
    c = served.client
    expected = {
        "/rss.xml": "application/rss+xml; charset=utf-8",
        "/atom.xml": "application/atom+xml; charset=utf-8",
        "/feed.json": "application/feed+json; charset=utf-8",
        "/category/kinh-te/rss.xml": "application/rss+xml; charset=utf-8",
        "/category/xa-hoi/feed.json": "application/feed+json; charset=utf-8",
        "/feeds/atom/2024-10.xml": "application/atom+xml; charset=utf-8",
        "/category/kinh-te/feeds/json/2024-10.json": "application/feed+json; charset=utf-8",
    }
    for path, ctype in expected.items():
        r = identity(c, path)
        assert r.status_code == 200, path
        assert r.headers["content-type"] == ctype
        assert r.headers["etag"].startswith('"') and not r.headers["etag"].startswith("W/")
        assert parsedate_to_datetime(r.headers["last-modified"]) <= datetime.now(UTC)
        assert r.headers["cache-control"].startswith("public, max-age=")
        assert int(r.headers["content-length"]) == len(r.content)
        if ctype.startswith("application/feed+json"):
            assert r.json()["version"] == "https://jsonfeed.org/version/1.1"
        else:
            assert feedparser.parse(r.content).bozo is False
    assert identity(c, "/category/nope/rss.xml").status_code == 404
    assert identity(c, "/feeds/atom/1999-01.xml").status_code == 404
    assert c.post("/rss.xml").status_code == 405


def test_the_server_serves_the_published_bytes(served: Served, store: Store) -> None:
    out = Path(served.settings.feeds_out)
    publish_all(store, served.settings, out)
    for path in ("/rss.xml", "/category/kinh-te/atom.xml", "/feeds/json/2024-10.json"):
        assert identity(served.client, path).content == (out / path.lstrip("/")).read_bytes()


def test_etag_gives_304_without_body(served: Served) -> None:
    c = served.client
    first = identity(c, "/atom.xml")
    again = identity(c, "/atom.xml", **{"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert "content-length" not in again.headers or again.headers["content-length"] == "0"
    listed = identity(c, "/atom.xml", **{"if-none-match": f'"nope", W/{first.headers["etag"]}'})
    assert listed.status_code == 304
    stale = identity(c, "/atom.xml", **{"if-none-match": '"something-else"'})
    assert stale.status_code == 200 and stale.content == first.content
    head = c.head("/atom.xml", headers={"accept-encoding": "identity"})
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == first.headers["etag"]


def test_last_modified_gives_304(served: Served) -> None:
    c = served.client
    first = identity(c, "/rss.xml")
    modified = parsedate_to_datetime(first.headers["last-modified"])
    assert modified == T0 + timedelta(days=33)  # the newest article's change
    same = identity(c, "/rss.xml", **{"if-modified-since": first.headers["last-modified"]})
    assert same.status_code == 304 and same.content == b""
    earlier = format_datetime(modified - timedelta(seconds=1), usegmt=True)
    assert identity(c, "/rss.xml", **{"if-modified-since": earlier}).status_code == 200
    assert identity(c, "/rss.xml", **{"if-modified-since": "not a date"}).status_code == 200


def test_gzip(served: Served) -> None:
    c = served.client
    plain = identity(c, "/feed.json")
    zipped = c.get("/feed.json", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    raw = c.build_request("GET", "/feed.json", headers={"accept-encoding": "gzip"})
    streamed = c.send(raw, stream=True)
    compressed = b"".join(streamed.iter_raw())
    streamed.close()
    assert len(compressed) < len(plain.content) / 3
    assert gzip.decompress(compressed) == plain.content
    assert "content-encoding" not in plain.headers
    refused = identity(c, "/feed.json", **{"accept-encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers
    # either representation's tag revalidates
    assert identity(c, "/feed.json", **{"if-none-match": zipped.headers["etag"]}).status_code == 304


def test_importing_an_article_changes_the_etag_once(served: Served, store: Store) -> None:
    c = served.client
    cache = served.app.state.feed_cache  # type: ignore[attr-defined]
    first = identity(c, "/atom.xml")
    generation = cache.generation
    for _ in range(5):
        assert identity(c, "/atom.xml", **{"if-none-match": first.headers["etag"]}).status_code == 304
    assert cache.generation == generation  # no rebuild without a change
    store.upsert_articles([art(99, published=T0 + timedelta(days=60), title="Tin mới nhất")])
    changed = identity(c, "/atom.xml", **{"if-none-match": first.headers["etag"]})
    assert changed.status_code == 200
    assert changed.headers["etag"] != first.headers["etag"]
    assert feedparser.parse(changed.content).entries[0].title == "Tin mới nhất"
    assert parsedate_to_datetime(changed.headers["last-modified"]) > parsedate_to_datetime(
        first.headers["last-modified"]
    )
    assert cache.generation == generation + 1
    # removing it brings back the same bytes (same ETag); Last-Modified never goes back, and a copy
    # dated by the previous Last-Modified is not "not modified" (two bodies may share that second)
    store.remove_article("g99")
    removed = identity(c, "/atom.xml")
    assert removed.headers["etag"] == first.headers["etag"]
    assert parsedate_to_datetime(removed.headers["last-modified"]) >= parsedate_to_datetime(
        changed.headers["last-modified"]
    )
    stale = identity(c, "/atom.xml", **{"if-modified-since": changed.headers["last-modified"]})
    assert stale.status_code == 200 and stale.content == removed.content


def test_syndicate_serve_command(tmp_path: Path, store: Store, settings: Settings) -> None:
    store.upsert_articles([art(1)])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(SYNDICATE_DB=settings.db, SYNDICATE_SECRET_KEY="test-secret-key-0123456789-abcdefghij")
    cmd = [sys.executable, "-c", "from syndicate.cli import main; main()", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/atom.xml", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "syndicate serve did not start"
                time.sleep(0.05)
        assert r.status_code == 200 and r.headers["content-type"] == "application/atom+xml; charset=utf-8"
        assert feedparser.parse(r.content).entries[0].title == "Tin số 1: đổi mới"
    finally:
        proc.terminate()
        proc.communicate(timeout=120)


def test_list_feeds_are_served_with_etag_and_304(served: Served, store: Store) -> None:
    from syndicate.models import NewsList

    c = served.client
    assert identity(c, "/list/kinh-te-sang/atom.xml").status_code == 404
    store.create_list(NewsList(slug="kinh-te-sang", name="Kinh tế sáng", description="Tin kinh tế",
                               categories=["kinh-te"], language="vi"))
    first = identity(c, "/list/kinh-te-sang/atom.xml")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(first.content)
    assert parsed.bozo is False and parsed.feed.title == "Kinh tế sáng"
    assert [e.title for e in parsed.entries] == [art(i).title for i in range(10, -1, -2)]
    again = identity(c, "/list/kinh-te-sang/atom.xml", **{"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    month = identity(c, "/list/kinh-te-sang/feeds/json/2024-10.json")
    assert month.status_code == 200 and month.headers["content-type"].startswith("application/feed+json")
    # a Kinh tế article changes the list feed's ETag; renaming the list does too
    store.upsert_articles([art(40, category="Kinh tế")])
    changed = identity(c, "/list/kinh-te-sang/atom.xml", **{"if-none-match": first.headers["etag"]})
    assert changed.status_code == 200 and feedparser.parse(changed.content).entries[0].title == art(40).title
    nl = store.get_list("kinh-te-sang")
    nl.name = "Kinh tế buổi sáng"
    store.update_list(nl)
    renamed = identity(c, "/list/kinh-te-sang/rss.xml")
    assert feedparser.parse(renamed.content).feed.title == "Kinh tế buổi sáng"


def test_an_edit_whose_updated_is_not_the_newest_changes_the_feed(served: Served, store: Store) -> None:
    c = served.client
    first = identity(c, "/atom.xml")
    # an edit dated before the newest article's change: (count, max id, max updated) all stay put
    store.upsert_articles([art(3, title="Tin số 3 đã sửa")], now=T0 + timedelta(days=10))
    after = identity(c, "/atom.xml", **{"if-none-match": first.headers["etag"]})
    assert after.status_code == 200 and "Tin số 3 đã sửa" in [e.title for e in feedparser.parse(after.content).entries]
    since = identity(c, "/atom.xml", **{"if-modified-since": first.headers["last-modified"]})
    assert since.status_code == 200


def test_an_edit_while_a_future_article_exists_changes_the_feed(served: Served, store: Store) -> None:
    c = served.client
    store.upsert_articles([art(50, published=datetime.now(UTC) + timedelta(days=3), title="Tin tương lai")])
    first = identity(c, "/atom.xml")
    assert "Tin tương lai" not in first.text  # embargoed
    store.upsert_articles([art(5, title="Tin số 5 đã sửa")])
    after = identity(c, "/atom.xml", **{"if-none-match": first.headers["etag"]})
    assert after.status_code == 200 and "Tin số 5 đã sửa" in after.text


def test_last_modified_is_never_after_date(served: Served, store: Store) -> None:
    c = served.client
    later_today = datetime.now(UTC) + timedelta(hours=3)
    store.upsert_articles([art(60, published=later_today, updated=later_today, title="Tin chiều nay")])
    for path in ("/atom.xml", "/rss.xml", "/category/kinh-te/feed.json"):
        r = identity(c, path)
        assert parsedate_to_datetime(r.headers["last-modified"]) <= parsedate_to_datetime(r.headers["date"]), path


def test_absurd_if_modified_since_is_a_200(served: Served) -> None:
    c = served.client
    for value in ("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", "Mon, 01 Jan 99999 00:00:00 GMT",
                  "Mon, 01 Jan 0000 00:00:00 GMT", "Mon, 32 Foo 2026 25:61:61 GMT"):
        r = identity(c, "/atom.xml", **{"if-modified-since": value})
        assert r.status_code == 200, value


def test_an_embargo_ending_changes_the_feed_with_no_write(store: Store, settings: Settings) -> None:
    """serve on a clock of its own (the hook `syndicate serve` fills with the real clock)."""
    from tests_clock import Clock

    now = datetime(2026, 3, 12, 8, 0, tzinfo=UTC)
    clock = Clock(now)
    store.upsert_articles([art(1, published=now - timedelta(days=2)),
                           art(2, published=now + timedelta(minutes=30), title="Tin 8 giờ 30")])
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(with_clock(app, clock), host="127.0.0.1", port=free_port(),
                                           log_level="warning", date_header=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            before = identity(c, "/atom.xml")
            assert "Tin 8 giờ 30" not in before.text
            assert parsedate_to_datetime(before.headers["date"]) == now
            clock.advance(timedelta(minutes=30))
            after = identity(c, "/atom.xml", **{"if-none-match": before.headers["etag"]})
            assert after.status_code == 200 and "Tin 8 giờ 30" in after.text
            assert parsedate_to_datetime(after.headers["last-modified"]) == now + timedelta(minutes=30)
            assert parsedate_to_datetime(after.headers["date"]) == now + timedelta(minutes=30)
    finally:
        server.should_exit = True
        thread.join(30)


# --- production serving: security headers, access log, trusted proxies --------------------------------

FEED_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def test_every_feed_answer_carries_the_security_headers(served: Served) -> None:
    c = served.client
    first = c.get("/atom.xml")
    again = c.get("/atom.xml", headers={"if-none-match": first.headers["etag"]})
    missing = c.get("/category/no-such-topic/atom.xml")
    posted = c.post("/rss.xml")
    assert [r.status_code for r in (first, again, missing, posted)] == [200, 304, 404, 405]
    for r in (first, again, missing, posted):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == FEED_CSP
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["strict-transport-security"] == "max-age=31536000"  # base_url is https
    page = c.get("/")
    assert page.headers["strict-transport-security"] == "max-age=31536000"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert c.get("/no/such/page").headers["strict-transport-security"] == "max-age=31536000"


@dataclass
class Logged:
    client: httpx.Client
    lines: list[str]

    def last(self, count: int = 1) -> list[str]:
        """The newest ``count`` lines, waiting for them: a line is written once its response is sent."""
        deadline = time.monotonic() + 120
        while len(self.lines) < count:
            assert time.monotonic() < deadline, "no access log line"
            time.sleep(0.01)
        return self.lines[-count:]


@contextlib.contextmanager
def serving(settings: Settings, options: ServeOptions) -> Iterator[Logged]:
    """The stack `syndicate serve` runs (uvicorn_config), its access log kept in a list."""
    lines: list[str] = []
    options = dataclasses.replace(options, host="127.0.0.1", port=free_port())
    server = uvicorn.Server(uvicorn_config(settings, options, lines.append))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{options.port}", timeout=60) as client:
            client.get("/atom.xml")  # warm the cache; tests read the lines after this one
            Logged(client, lines).last()
            lines.clear()
            yield Logged(client, lines)
    finally:
        server.should_exit = True
        thread.join(20)


CLF = re.compile(r'^(\S+) - - \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000)\] "([^"]*)" (\d{3}) (\d+|-)$')


def test_serve_uses_httptools_and_uvloop(settings: Settings) -> None:
    config = uvicorn_config(settings, ServeOptions(), None)
    assert (config.http, config.loop) == ("httptools", "uvloop")


def test_access_log_is_common_log_format_one_line_per_request(store: Store, settings: Settings) -> None:
    store.upsert_articles([art(1)])
    with serving(settings, ServeOptions()) as s:
        r = s.client.get("/atom.xml", headers={"accept-encoding": "identity"})
        (line,) = s.last()
        m = CLF.match(line)
        assert m, line
        assert m.group(1) == "127.0.0.1" and m.group(3) == "GET /atom.xml HTTP/1.1"
        assert (m.group(4), m.group(5)) == ("200", str(len(r.content)))
        logged_at = datetime.strptime(m.group(2), "%d/%b/%Y:%H:%M:%S %z")
        assert abs((logged_at - datetime.now(UTC)).total_seconds()) < 60
        s.client.get("/atom.xml", headers={"if-none-match": r.headers["etag"]})
        assert s.last()[0].endswith('"GET /atom.xml HTTP/1.1" 304 -')
        s.client.get("/nowhere")
        assert ' "GET /nowhere HTTP/1.1" 404 ' in s.last()[0]
        assert len(s.lines) == 3


def test_access_log_redacts_tokens_and_never_writes_authorization(store: Store, settings: Settings) -> None:
    secret = "eyJzIjoxMjN9.c2VjcmV0LXRva2Vu"
    asked = [
        (f"/unsubscribe/{secret}", "/unsubscribe/[redacted]"),
        (f"/preferences/{secret}", "/preferences/[redacted]"),
        (f"/confirm/{secret}", "/confirm/[redacted]"),
        (f"/r/{secret}/3", "/r/[redacted]"),
        (f"/Preferences/{secret}%0A", "/Preferences/[redacted]"),  # no route, but a token all the same
        (f"/%75nsubscribe/{secret}", "/unsubscribe/[redacted]"),  # what the router would decode and match
        (f"/unsubscribe?token={secret}&list=tin", "/unsubscribe?token=[redacted]&list=tin"),
        (f"/api/v1/articles?TOKEN={secret}", "/api/v1/articles?TOKEN=[redacted]"),
        ("/tin tức/\"x\"", "/tin%20t%E1%BB%A9c/%22x%22"),
    ]
    with serving(settings, ServeOptions(access_log="json")) as s:
        for path, _ in asked:
            s.client.get(path, headers={"authorization": f"Bearer {secret}", "user-agent": "NetNewsWire/6"})
        lines = s.last(len(asked))
    records = [json.loads(line) for line in lines]
    assert [r["path"] for r in records] == [want for _, want in asked]
    assert all(secret not in line and "Bearer" not in line for line in lines)
    assert records[0]["method"] == "GET" and records[0]["client"] == "127.0.0.1"
    assert records[0]["user_agent"] == "NetNewsWire/6" and records[0]["protocol"] == "HTTP/1.1"
    assert isinstance(records[0]["status"], int) and records[0]["duration_ms"] >= 0
    assert datetime.fromisoformat(records[0]["time"]).tzinfo is not None


def test_access_log_off_writes_nothing(store: Store, settings: Settings) -> None:
    lines: list[str] = []
    config = uvicorn_config(settings, ServeOptions(access_log="off"), lines.append)
    assert not isinstance(config.app, AccessLog)


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(store: Store, settings: Settings) -> None:
    forwarded = {"x-forwarded-for": "198.51.100.23", "x-forwarded-proto": "https"}
    with serving(settings, ServeOptions(proxy_headers=True, forwarded_allow_ips="10.9.9.9")) as s:
        s.client.get("/atom.xml", headers=forwarded)
        assert s.last()[0].startswith("127.0.0.1 - - ")  # an untrusted peer keeps its own address
    with serving(settings, ServeOptions(proxy_headers=True, forwarded_allow_ips="127.0.0.1")) as s:
        s.client.get("/atom.xml", headers=forwarded)
        assert s.last()[0].startswith("198.51.100.23 - - ")
    with serving(settings, ServeOptions(proxy_headers=False)) as s:
        s.client.get("/atom.xml", headers=forwarded)
        assert s.last()[0].startswith("127.0.0.1 - - ")


def test_rate_limits_key_on_the_client_a_trusted_proxy_names(store: Store, settings: Settings) -> None:
    def subscribe(s: Logged, ip: str) -> int:
        form = {"email": "a@example.org", "list": "no-such-list"}
        return s.client.post("/subscribe", data=form, headers={"x-forwarded-for": ip}).status_code

    limit = RateLimits().per_ip
    with serving(settings, ServeOptions(proxy_headers=True)) as s:
        assert {subscribe(s, "198.51.100.1") for _ in range(limit)} == {400}  # unknown list, but counted
        assert subscribe(s, "198.51.100.1") == 429
        assert subscribe(s, "198.51.100.2") == 400  # another visitor behind the same proxy is not blocked
    with serving(settings, ServeOptions(proxy_headers=True, forwarded_allow_ips="10.9.9.9")) as s:
        assert {subscribe(s, f"198.51.100.{i}") for i in range(limit)} == {400}
        assert subscribe(s, "198.51.100.99") == 429  # untrusted: every forged address is the one peer


def test_serve_command_logs_to_a_file_with_proxy_headers(tmp_path: Path, store: Store, settings: Settings) -> None:
    store.upsert_articles([art(1)])
    port = free_port()
    log = tmp_path / "access.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(SYNDICATE_DB=settings.db, SYNDICATE_SECRET_KEY="test-secret-key-0123456789-abcdefghij")
    cmd = [sys.executable, "-c", "from syndicate.cli import main; main()", "serve", "--port", str(port),
           "--access-log", "json", "--access-log-file", str(log), "--proxy-headers"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/atom.xml", timeout=5, headers={"x-forwarded-for": "192.0.2.9"})
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "syndicate serve did not start"
                time.sleep(0.05)
        while not log.exists() or not log.read_text(encoding="utf-8").endswith("\n"):
            assert time.monotonic() < deadline, "no access log line"
            time.sleep(0.02)
        record = json.loads(log.read_text(encoding="utf-8").splitlines()[-1])
        assert (record["client"], record["path"], record["status"]) == ("192.0.2.9", "/atom.xml", 200)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert b"192.0.2.9" not in err  # the log went to the file, not stderr


def test_serve_refuses_bad_proxy_lists_and_log_files_before_listening(cli: CliRunner, tmp_path: Path) -> None:
    bad = cli.invoke(main, ["serve", "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1, nginx.local"])
    assert bad.exit_code == 65 and bad.stderr == (
        "error: --forwarded-allow-ips: 'nginx.local' is not an IP address or network such as 127.0.0.1 or "
        "10.0.0.0/8 (nothing was started)\n"
    )
    (tmp_path / "syndicate.toml").write_text('[serve]\nforwarded_allow_ips = "10.0.0.0/33"\n')
    bad = cli.invoke(main, ["--config", "syndicate.toml", "serve"])
    assert bad.exit_code == 65 and bad.stderr.startswith(
        "error: syndicate.toml: [serve] forwarded_allow_ips: '10.0.0.0/33' is not an IP address or network")
    (tmp_path / "syndicate.toml").unlink()
    bad = cli.invoke(main, ["serve", "--access-log-file", str(tmp_path / "no" / "such" / "dir" / "access.log")])
    assert bad.exit_code == 65 and bad.stderr.startswith(
        f"error: cannot open the access log {tmp_path / 'no' / 'such' / 'dir' / 'access.log'}: "
    ) and bad.stderr.endswith(" (nothing was started)\n")
    bad = cli.invoke(main, ["serve", "--access-log", "xml"])
    assert bad.exit_code == 2 and "'xml' is not one of 'clf', 'json', 'off'" in bad.stderr
