"""The edges a demanding user hits when following sources, each with the exact words they read:
a URL that is not a feed (its advertised feed is found, or the error says what it is), a source
added twice, `fetch --source` of an unknown id, a page that redirects to a login form."""
# ruff: noqa: F811 - the site and cfg fixtures come from test_sources and are named as parameters

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_sources import T0, Site, cfg, rss, site  # noqa: F401 - its fixtures, shared

from syndicate.cli import main
from syndicate.config import Settings
from syndicate.sources import add_source, run_fetch
from syndicate.store import Store

HTML = "text/html; charset=utf-8"
SECTION = """<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>Tin tức - Cổng thông tin</title>
{links}</head><body><nav><a href="/">Trang chủ</a></nav><h1>Tin tức</h1>
<ul><li><a href="/tin/bai-1.html">Bài một</a></li></ul></body></html>"""
LOGIN = """<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>Đăng nhập hệ thống</title></head>
<body><main><h1>Đăng nhập hệ thống</h1><p>Vui lòng đăng nhập bằng tài khoản do cơ quan cấp để đọc tin nội bộ
của Sở và các phòng ban trực thuộc. Liên hệ bộ phận công nghệ thông tin nếu quên mật khẩu.</p>
<form method="post" action="/dang-nhap"><label>Tên đăng nhập <input name="user"></label>
<label>Mật khẩu <input type="password" name="pass"></label><button>Đăng nhập</button></form></main></body></html>"""


@pytest.fixture
def cli(cfg: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.chdir(tmp_path)
    for key, value in {"SYNDICATE_DB": cfg.db, "SYNDICATE_SECRET_KEY": cfg.secret_key.get(),
                       "SYNDICATE_FETCH_ALLOW_PRIVATE": "true", "SYNDICATE_FEEDS_OUT": cfg.feeds_out}.items():
        monkeypatch.setenv(key, value)
    yield CliRunner()


def test_adding_a_page_that_advertises_its_feed_follows_the_feed(cli: CliRunner, site: Site) -> None:
    site.pages["/tin-tuc/"] = (200, HTML, SECTION.format(links=(
        '<link rel="stylesheet" href="/style.css">'
        '<link rel="alternate" type="application/rss+xml" title="Tin tức" href="/rss/tin-tuc.xml">')).encode())
    site.pages["/rss/tin-tuc.xml"] = (200, "application/rss+xml", rss([("r1", "Tin một", "x")]))
    result = cli.invoke(main, ["source", "add", site.url + "/tin-tuc/"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (f"source 1: feed {site.url}/rss/tin-tuc.xml (the feed {site.url}/tin-tuc/ links to), "
                             "every 30m; run `syndicate fetch` to read it now\n")
    # the page's own URL, added again, is the same source
    again = cli.invoke(main, ["source", "add", site.url + "/tin-tuc/"])
    assert again.exit_code == 65
    assert again.stderr == (f"error: {site.url}/rss/tin-tuc.xml is followed already (source 1); "
                            "see `syndicate source show 1`\n")


def test_adding_a_page_with_no_feed_says_what_it_found(cli: CliRunner, site: Site) -> None:
    site.pages["/tin-tuc/"] = (200, HTML, SECTION.format(links="").encode())
    result = cli.invoke(main, ["source", "add", site.url + "/tin-tuc/"])
    assert result.exit_code == 65
    assert result.stderr == (
        f"error: {site.url}/tin-tuc/ is an HTML page, not a feed, and it links to no feed "
        '(no <link rel="alternate">); follow it with --kind page (one article) or --kind index '
        "(a section page whose articles are read); nothing was added\n")
    site.pages["/data.csv"] = (200, "text/csv", b"a,b\n1,2\n")
    result = cli.invoke(main, ["source", "add", site.url + "/data.csv"])
    assert result.stderr == f"error: {site.url}/data.csv is not a feed (the server sent text/csv); nothing was added\n"
    result = cli.invoke(main, ["source", "add", site.url + "/gone.xml"])
    assert result.stderr == f"error: cannot follow {site.url}/gone.xml: HTTP 404 Not Found; nothing was added\n"
    assert cli.invoke(main, ["source", "ls"]).stdout == "no sources; add one with `syndicate source add URL`\n"


def test_a_source_that_is_down_when_added_is_added_with_a_warning(cli: CliRunner, site: Site) -> None:
    site.pages["/down.xml"] = (503, "text/plain", b"later")
    result = cli.invoke(main, ["source", "add", site.url + "/down.xml"])
    assert result.exit_code == 0
    assert result.stderr == (f"warning: could not check {site.url}/down.xml now (HTTP 503 Service Unavailable); "
                             "added it anyway: `syndicate fetch` will try it\n")
    assert result.stdout.startswith(f"source 1: feed {site.url}/down.xml, every 30m")


def test_the_same_url_twice_is_one_source_whatever_its_case(cli: CliRunner, site: Site) -> None:
    site.pages["/feed.xml"] = (200, "application/rss+xml", rss([("d1", "Tin", "x")]))
    assert cli.invoke(main, ["source", "add", site.url + "/feed.xml"]).exit_code == 0
    shouted = site.url.replace("http://", "HTTP://") + "/feed.xml"
    result = cli.invoke(main, ["source", "add", shouted, "--no-check"])
    assert result.exit_code == 65
    assert result.stderr == f"error: {site.url}/feed.xml is followed already (source 1); see `syndicate source show 1`\n"


def test_fetch_of_an_unknown_source_id(cli: CliRunner) -> None:
    result = cli.invoke(main, ["fetch", "--source", "42"])
    assert result.exit_code == 1
    assert result.stderr == "error: no source 42 (see `syndicate source ls`)\n"
    assert result.stdout == ""


def test_a_page_that_redirects_to_a_login_form_is_a_failing_source(store: Store, cfg: Settings,
                                                                    site: Site) -> None:
    site.redirects["/tin/bai-1.html"] = "/dang-nhap?next=/tin/bai-1.html"
    site.pages["/dang-nhap"] = (200, HTML, LOGIN.encode())
    s = add_source(store, site.url + "/tin/bai-1.html", kind="page", now=T0)
    run = run_fetch(store, cfg, now=T0)
    assert [r.error for r in run.results] == [
        f"redirected to {site.url}/dang-nhap?next=/tin/bai-1.html: the page is a login form "
        "(it asks for a password), not an article"]
    assert store.get_source(s.id).failures == 1
    assert list(store.query("SELECT guid FROM articles")) == []  # nothing of the login page was imported
