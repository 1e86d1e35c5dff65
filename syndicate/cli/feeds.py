"""``syndicate feed build`` and ``syndicate serve``: publish feeds as files, or serve them."""

from __future__ import annotations

import sys

import click

from . import App, emit_json, json_option, main, pass_app, step_bar


@main.group()
def feed() -> None:
    """Build RSS, Atom and JSON feeds (site, categories, monthly archives).

    \b
    Example:
        syndicate feed build --out site
    """


@feed.command()
@click.option("--out", "out_dir", help="Output directory [default: [feeds] out, 'site'].")
@click.option("-v", "--verbose", is_flag=True, help="Name every file written.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), metavar="N",
              help="Processes to build with; 1 builds in this one [default: every core once the store holds "
                   "5,000 published articles, else 1].")
@json_option()
@pass_app
def build(app: App, out_dir: str | None, verbose: bool, jobs: int | None, as_json: bool) -> None:
    """Write every feed and index page atomically; unchanged files are left alone.

    Every file is written before any is moved into place, all from one
    state of the store: if anything fails, the site is left as it was.

    \b
    Example:
        syndicate feed build
        syndicate feed build --out /var/www/news --json
        syndicate feed build --jobs 2
    """
    from ..publish import publish_all

    settings = app.settings
    with step_bar("building feeds") as bar:
        report = publish_all(app.store, settings, out_dir or settings.feeds_out, progress=bar, jobs=jobs)
    if as_json:
        emit_json(report.as_dict())
        return
    if verbose:
        for path in report.written:
            click.echo(f"wrote {report.out_dir}/{path}")
    for problem in report.errors + report.warnings:  # feeds are written; only the WebSub ping failed
        click.echo(f"warning: {problem}", err=True)
    click.echo(
        f"{len(report.written):,} written, {len(report.unchanged):,} unchanged in {report.out_dir}/; "
        f"subscribe at {settings.base_url.rstrip('/')}/atom.xml"
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--access-log", type=click.Choice(["clf", "json", "off"]),
              help="One line per request: Common Log Format, JSON lines, or none [default: [serve] access_log, clf].")
@click.option("--access-log-file", type=click.Path(dir_okay=False),
              help="Append the access log to this file instead of stderr.")
@click.option("--proxy-headers/--no-proxy-headers", default=None,
              help="Believe X-Forwarded-For/-Proto from trusted proxies [default: [serve] proxy_headers, off].")
@click.option("--forwarded-allow-ips", metavar="IPS",
              help="Comma-separated proxy addresses or networks to trust [default: [serve] forwarded_allow_ips, "
                   "127.0.0.1].")
@pass_app
def serve(app: App, host: str, port: int, access_log: str | None, access_log_file: str | None,
          proxy_headers: bool | None, forwarded_allow_ips: str | None) -> None:
    """Serve feeds (with ETag/304 and gzip) and the public pages over HTTP.

    Logs one line per request (tokens in links are written as [redacted]).
    Behind nginx or Caddy on the same machine, add --proxy-headers so the log
    and the rate limits see each visitor's address, not the proxy's.

    \b
    Example:
        syndicate serve --port 8080
        syndicate serve --proxy-headers --access-log json --access-log-file /var/log/syndicate/access.log
        curl -I http://127.0.0.1:8080/atom.xml
    """
    import contextlib
    from typing import TextIO

    import uvicorn

    from ..errors import InputError
    from ..web.serving import ServeOptions, uvicorn_config

    settings = app.settings
    options = ServeOptions.from_settings(settings, host=host, port=port, access_log=access_log,
                                         proxy_headers=proxy_headers, forwarded_allow_ips=forwarded_allow_ips)
    app.store  # noqa: B018 - open (and migrate) the database before the first request
    with contextlib.ExitStack() as stack:
        log_file: TextIO
        if access_log_file:
            try:
                log_file = stack.enter_context(open(access_log_file, "a", encoding="utf-8", buffering=1))
            except OSError as exc:
                raise InputError(
                    f"cannot open the access log {access_log_file}: {exc.strerror or exc} (nothing was started)"
                ) from None
        else:
            log_file = sys.stderr

        def write(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()

        click.echo(f"serving http://{host}:{port}/ — paste http://{host}:{port}/atom.xml into a feed reader", err=True)
        uvicorn.Server(uvicorn_config(settings, options, write)).run()
