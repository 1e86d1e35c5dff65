"""deploy/nginx.conf and deploy/Caddyfile in front of a real `serve`: the same URLs, types, bytes, 304
and gzip as serve alone.

Each runs only where its server is installed (`apt-get install nginx caddy`);
the config is the shipped file with TLS, the port and the paths swapped for a
loopback test instance.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import feedparser
import httpx
import pytest
from loopback import free_port

from syndicate.config import Settings
from syndicate.models import Article, utcnow
from syndicate.publish import publish_all
from syndicate.store import Store
from syndicate.web import create_app

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
CADDY = shutil.which("caddy")


def _test_config(tmp_path: Path, site: Path, app_port: int, port: int) -> Path:
    server = (ROOT / "deploy" / "nginx.conf").read_text()
    server = re.sub(r"server \{\n    listen 80;.*?\n\}\n", "", server, count=1, flags=re.S)  # the http->https redirect
    server = re.sub(r"^\s*(ssl_\w+|http2).*\n", "", server, flags=re.M)
    server = server.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};").replace("listen [::]:443 ssl;\n", "")
    server = server.replace("127.0.0.1:8080", f"127.0.0.1:{app_port}").replace("/var/lib/syndicate/site", str(site))
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "user root;\ndaemon off;\nworker_processes 1;\n"
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n proxy_temp_path {tmp_path}/proxy;\n"
        f" fastcgi_temp_path {tmp_path}/fcgi;\n uwsgi_temp_path {tmp_path}/uwsgi;\n scgi_temp_path {tmp_path}/scgi;\n"
        f" default_type application/octet-stream;\n{server}\n}}\n"
    )
    return conf


def _caddy_config(tmp_path: Path, site: Path, app_port: int, port: int) -> Path:
    text = (ROOT / "deploy" / "Caddyfile").read_text()
    text = text.replace("news.example.org {", "{\n\tadmin off\n\tauto_https off\n\tstorage file_system " + str(tmp_path / "caddy")
                        + "\n}\n\nhttp://127.0.0.1:" + str(port) + " {", 1)
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{app_port}").replace("/var/lib/syndicate/site", str(site))
    conf = tmp_path / "Caddyfile"
    conf.write_text(text)
    return conf


def _nginx(tmp_path: Path, conf: Path) -> subprocess.Popen[bytes]:
    assert NGINX is not None
    check = subprocess.run([NGINX, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    return subprocess.Popen([NGINX, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _caddy(tmp_path: Path, conf: Path) -> subprocess.Popen[bytes]:
    assert CADDY is not None
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "PATH": "/usr/bin:/bin"}
    check = subprocess.run([CADDY, "validate", "--adapter", "caddyfile", "--config", str(conf)],
                           capture_output=True, text=True, timeout=120, env=env)
    assert check.returncode == 0, check.stderr
    return subprocess.Popen([CADDY, "run", "--adapter", "caddyfile", "--config", str(conf)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


FRONTS = [
    pytest.param((_test_config, _nginx), id="nginx", marks=pytest.mark.skipif(NGINX is None, reason="nginx is not installed")),
    pytest.param((_caddy_config, _caddy), id="caddy", marks=pytest.mark.skipif(CADDY is None, reason="caddy is not installed")),
]


@pytest.fixture(params=FRONTS)
def fronted(request: pytest.FixtureRequest, store: Store, settings: Settings, live_server, tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:  # type: ignore[no-untyped-def]
    last_month = (utcnow().replace(day=1) - timedelta(days=1)).replace(day=10)  # a finished month has archives
    store.upsert_articles([
        Article(guid=f"g{i}", title=f"Tin số {i}: Hải Phòng", slug=f"tin-{i}", published=last_month.replace(hour=1 + i),
                body_html=f"<p>Nội dung {i}</p>", category="Kinh tế")
        for i in range(3)
    ])
    site = Path(settings.feeds_out)
    publish_all(store, settings, site)
    app_server = live_server()
    app_server.start(create_app(settings))
    port = free_port()
    make_config, start = request.param
    proc = start(tmp_path, make_config(tmp_path, site, app_server.port, port))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as front, \
                httpx.Client(base_url=app_server.url, timeout=30) as direct:
            deadline = time.monotonic() + 120
            while True:  # wait for nginx to listen (a condition, not a fixed sleep)
                try:
                    front.get("/atom.xml")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, "the front end did not start"
                    time.sleep(0.05)
            yield front, direct
    finally:
        proc.terminate()
        proc.communicate(timeout=120)


def test_front_end_serves_the_built_feeds_like_serve(fronted: tuple[httpx.Client, httpx.Client]) -> None:
    front, direct = fronted
    month = (utcnow().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    paths = ["/rss.xml", "/atom.xml", "/feed.json", "/category/kinh-te/atom.xml", f"/feeds/rss/{month}.xml"]
    for path in paths:
        a = front.get(path, headers={"accept-encoding": "identity"})
        b = direct.get(path, headers={"accept-encoding": "identity"})
        assert a.status_code == b.status_code == 200, path
        assert a.headers["content-type"] == b.headers["content-type"], path
        assert a.headers["x-content-type-options"] == "nosniff"
        assert a.content == b.content, path  # the built file is what serve builds
        if path.endswith(".xml"):
            assert not feedparser.parse(a.content).bozo
        again = front.get(path, headers={"if-none-match": a.headers["etag"], "accept-encoding": "identity"})
        assert again.status_code == 304 and again.content == b""
        since = front.get(path, headers={"if-modified-since": a.headers["last-modified"], "accept-encoding": "identity"})
        assert since.status_code == 304
    zipped = front.get("/atom.xml", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.content == direct.get("/atom.xml").content


def test_front_end_hands_pages_and_missing_feeds_to_serve(fronted: tuple[httpx.Client, httpx.Client]) -> None:
    front, direct = fronted
    for path in ("/", "/articles/tin-1/", "/category/nope/rss.xml"):
        a, b = front.get(path), direct.get(path)
        assert a.status_code == b.status_code, path
        assert a.headers["content-type"] == b.headers["content-type"], path
    assert front.get("/").status_code == 200


SECURITY = ("x-content-type-options", "content-security-policy", "referrer-policy", "strict-transport-security")


def test_front_end_sends_serves_security_headers_once(fronted: tuple[httpx.Client, httpx.Client]) -> None:
    """Built feeds (200 and 304) carry the headers serve sends with a feed; proxied pages keep the app's, once."""
    front, direct = fronted
    for path in ("/atom.xml", "/category/kinh-te/rss.xml", "/feed.json", "/", "/articles/tin-1/", "/no/such/page"):
        a, b = front.get(path), direct.get(path)
        again = front.get(path, headers={"if-none-match": a.headers.get("etag", '"none"')})
        for r in (a, again) if a.headers.get("etag") else (a,):
            for name in SECURITY:
                assert r.headers.get_list(name) == [b.headers[name]], (path, r.status_code, name)
