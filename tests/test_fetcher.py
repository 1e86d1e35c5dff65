"""The safe fetcher against real servers on 127.0.0.1: a scripted asyncio HTTP server (slow drip,
gzip, redirects, conditional GET, caps) and aiosmtpd as the non-HTTP service."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field

import pytest
from loopback import free_port, smtp_server

from syndicate.config import Settings
from syndicate.fetcher import FetchError, FetchPolicy, default_user_agent, fetch

LOOPBACK = FetchPolicy(allow_private=True, timeout=60)  # tests talk to 127.0.0.1, so they allow it explicitly
FEED = "<?xml version='1.0'?><rss version='2.0'><channel><title>Tin Cảng</title></channel></rss>".encode()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


Route = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    """A scripted HTTP/1.1 server on 127.0.0.1 in its own thread: one request per connection."""

    routes: dict[str, Route]
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.tasks: set[asyncio.Task[None]] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self.loop
        ).result(60)
        self.port = self.server.sockets[0].getsockname()[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)  # type: ignore[arg-type]
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            line, *lines = head.split("\r\n")
            method, path, _ = line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
            request = Request(method, path, headers)
            self.requests.append(request)
            route = self.routes.get(path.split("?")[0])
            if route is None:
                await respond(writer, 404, {}, b"no such page")
            else:
                await route(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            self.tasks.discard(task)  # type: ignore[arg-type]

    async def _stop(self) -> None:
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
        self.loop.close()


async def respond(writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes,
                  reason: str = "") -> None:
    reason = reason or {200: "OK", 302: "Found", 304: "Not Modified", 404: "Not Found",
                        500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Status")
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


def redirect(location: str, status: int = 302) -> Route:
    async def route(request: Request, writer: asyncio.StreamWriter) -> None:
        await respond(writer, status, {"Location": location}, b"")

    return route


async def feed_route(request: Request, writer: asyncio.StreamWriter) -> None:
    validators = {"ETag": '"v1"', "Last-Modified": "Sat, 21 Nov 2026 02:00:00 GMT"}
    if request.headers.get("if-none-match") == '"v1"':
        await respond(writer, 304, validators, b"")
        return
    if "gzip" in request.headers.get("accept-encoding", ""):
        await respond(writer, 200, {**validators, "Content-Type": "application/rss+xml", "Content-Encoding": "gzip"},
                      gzip.compress(FEED))
    else:
        await respond(writer, 200, {**validators, "Content-Type": "application/rss+xml"}, FEED)


async def drip_route(request: Request, writer: asyncio.StreamWriter) -> None:
    """Headers at once, then one byte every two seconds: each read is quick, the whole never ends."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")
    await writer.drain()
    for _ in range(1000):
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(2)


async def chunked_route(request: Request, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    chunk = b"y" * 65536
    for _ in range(40):  # 2.6 MB, no Content-Length to check up front
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def bomb_route(request: Request, writer: asyncio.StreamWriter) -> None:
    await respond(writer, 200, {"Content-Encoding": "gzip"}, gzip.compress(b"\0" * 50_000_000))


async def big_route(request: Request, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n")
    await writer.drain()


async def error_route(request: Request, writer: asyncio.StreamWriter) -> None:
    await respond(writer, 503, {"Retry-After": "120"}, b"busy")


async def not_modified_route(request: Request, writer: asyncio.StreamWriter) -> None:
    await respond(writer, 304, {}, b"")


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server({
        "/feed": feed_route, "/drip": drip_route, "/chunked": chunked_route, "/bomb": bomb_route,
        "/big": big_route, "/busy": error_route, "/304": not_modified_route,
        "/here": redirect("/feed"), "/loop": redirect("/loop", 301), "/ftp": redirect("ftp://127.0.0.1/feed.xml"),
        "/a": redirect("/b", 307), "/b": redirect("/c", 308), "/c": redirect("/feed", 303),
    })
    yield s
    s.close()


def test_gzip_user_agent_and_conditional_get(server: Server) -> None:
    first = fetch(server.url("/feed"), LOOPBACK, accept="application/rss+xml")
    assert (first.status, first.body, first.url) == (200, FEED, server.url("/feed"))
    assert (first.etag, first.last_modified) == ('"v1"', "Sat, 21 Nov 2026 02:00:00 GMT")
    assert first.content_type == "application/rss+xml" and not first.not_modified
    seen = server.requests[0].headers
    assert seen["user-agent"] == "syndicate/0.1.0" and "gzip" in seen["accept-encoding"]
    assert seen["accept"] == "application/rss+xml" and "if-none-match" not in seen

    again = fetch(server.url("/feed"), LOOPBACK, etag=first.etag, last_modified=first.last_modified)
    assert again.not_modified and (again.status, again.body, again.etag) == (304, b"", '"v1"')
    seen = server.requests[1].headers
    assert seen["if-none-match"] == '"v1"' and seen["if-modified-since"] == "Sat, 21 Nov 2026 02:00:00 GMT"


def test_a_slow_drip_is_cut_off_at_the_total_deadline(server: Server) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch(server.url("/drip"), FetchPolicy(allow_private=True, timeout=3))
    elapsed = time.monotonic() - started
    assert str(caught.value) == "no complete answer within 3 s (the total deadline)" and caught.value.temporary
    assert elapsed < 30  # every read answered within 2 s, so only a total deadline ends it


@pytest.mark.parametrize("path", ["/big", "/chunked", "/bomb"])
def test_the_size_cap_holds_declared_streamed_and_gzipped(server: Server, path: str) -> None:
    with pytest.raises(FetchError, match=r"^the body is larger than 1 MB \(the \[fetch\] max_mb cap\)$"):
        fetch(server.url(path), FetchPolicy(allow_private=True, timeout=60, max_bytes=1_000_000))


def test_same_host_redirects_are_followed_up_to_the_limit(server: Server) -> None:
    assert fetch(server.url("/here"), LOOPBACK).url == server.url("/feed")
    assert fetch(server.url("/a"), LOOPBACK).body == FEED  # 307, 308, 303: three hops
    with pytest.raises(FetchError, match="^more than 2 redirects$"):
        fetch(server.url("/a"), FetchPolicy(allow_private=True, timeout=60, max_redirects=2))
    with pytest.raises(FetchError, match="^more than 5 redirects$"):
        fetch(server.url("/loop"), LOOPBACK)


def test_redirects_to_another_port_host_or_scheme_are_refused(server: Server) -> None:
    other = free_port()
    server.routes["/port"] = redirect(f"http://127.0.0.1:{other}/feed")
    server.routes["/host"] = redirect(f"http://localhost:{server.port}/feed")
    with pytest.raises(FetchError) as caught:
        fetch(server.url("/port"), LOOPBACK)
    assert str(caught.value) == (
        f"refused a redirect to http://127.0.0.1:{other}/feed: another host or port than http://127.0.0.1:{server.port} "
        '(set [fetch] redirects = "any" to follow it)'
    )
    with pytest.raises(FetchError, match="^refused a redirect to http://localhost:.*another host or port"):
        fetch(server.url("/host"), LOOPBACK)
    with pytest.raises(FetchError) as caught:
        fetch(server.url("/ftp"), FetchPolicy(allow_private=True, timeout=60, redirects="any"))
    assert str(caught.value) == "refused a redirect to ftp://127.0.0.1/feed.xml (only http:// and https:// are followed)"
    any_host = FetchPolicy(allow_private=True, timeout=60, redirects="any")
    assert fetch(server.url("/host"), any_host).url == f"http://localhost:{server.port}/feed"
    assert [r.path for r in server.requests].count("/feed") == 1  # the refused ones never went there


def test_a_non_http_service_is_a_clean_error() -> None:
    class Quiet:
        pass

    with smtp_server(Quiet()) as port:
        with pytest.raises(FetchError) as caught:
            fetch(f"http://127.0.0.1:{port}/", LOOPBACK)
    assert str(caught.value) == f"the server at 127.0.0.1:{port} does not speak HTTP (or broke off its answer)"


def test_private_loopback_and_link_local_are_refused_by_default(server: Server) -> None:
    for url, reason in [
        (server.url("/feed"), "127.0.0.1 is a loopback address"),
        (f"http://localhost:{server.port}/feed", "localhost (127.0.0.1) is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("https://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://192.168.0.1:8080/", "192.168.0.1 is a private address"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is a loopback address"),
        ("http://0.0.0.0/", "0.0.0.0 is a private address"),
    ]:
        with pytest.raises(FetchError) as caught:
            fetch(url)
        assert str(caught.value) == f"refused: {reason} (set [fetch] allow_private = true to allow it)", url
    assert server.requests == []  # refused before connecting


def test_only_http_and_https(server: Server) -> None:
    for url, what in [("ftp://example.org/f", "ftp://"), ("file:///etc/passwd", "file://"),
                      ("feed.xml", "a relative URL"), ("javascript:alert(1)", "javascript://")]:
        with pytest.raises(FetchError) as caught:
            fetch(url, LOOPBACK)
        assert str(caught.value) == f"only http:// and https:// URLs can be fetched, not {what}"


def test_http_errors_say_what_and_whether_to_retry(server: Server) -> None:
    with pytest.raises(FetchError) as caught:
        fetch(server.url("/busy"), LOOPBACK)
    busy = caught.value
    assert (str(busy), busy.status, busy.temporary, busy.retry_after) == ("HTTP 503 Service Unavailable", 503, True, 120)
    with pytest.raises(FetchError) as caught:
        fetch(server.url("/missing"), LOOPBACK)
    assert (str(caught.value), caught.value.status, caught.value.temporary) == ("HTTP 404 Not Found", 404, False)
    with pytest.raises(FetchError, match="^HTTP 304 Not Modified to a request that was not conditional$"):
        fetch(server.url("/304"), LOOPBACK)
    with pytest.raises(FetchError, match="^cannot connect: ") as caught:
        fetch(f"http://127.0.0.1:{free_port()}/", LOOPBACK)
    assert caught.value.temporary


def test_policy_from_settings() -> None:
    policy = FetchPolicy.from_settings(Settings(base_url="https://news.example.org", fetch_allow_private=True,
                                                fetch_max_mb=0.5, fetch_timeout=7))
    assert policy == FetchPolicy(timeout=7, max_bytes=500_000, allow_private=True,
                                 user_agent="syndicate/0.1.0 (+https://news.example.org)")
    assert FetchPolicy().allow_private is False and FetchPolicy().user_agent == default_user_agent()
    custom = FetchPolicy.from_settings(Settings(fetch_user_agent="NewsBot/2 (+mailto:ops@example.org)"))
    assert custom.user_agent == "NewsBot/2 (+mailto:ops@example.org)"


def test_malformed_urls_are_clean_errors(server: Server) -> None:
    server.routes["/bad-location"] = redirect("http://[::1/x")
    for url, message in [
        ("http://127.0.0.1:99999/", "'http://127.0.0.1:99999/' has an invalid port"),
        ("http:///feed.xml", "the URL has no host"),
        ("http://[::1/", "'http://[::1/' is not a valid URL"),
        ("https://xn--/", "'https://xn--/' is not a valid URL"),
        ("http://exa\tmple.org/", "'http://exa\\tmple.org/' is not a valid URL"),
    ]:
        with pytest.raises(FetchError) as caught:
            fetch(url, LOOPBACK)
        assert str(caught.value) == message, url
    with pytest.raises(FetchError) as caught:
        fetch(server.url("/bad-location"), FetchPolicy(allow_private=True, timeout=60, redirects="any"))
    assert str(caught.value) == "refused a redirect: its Location header is not a valid URL"
