"""``syndicate feed build`` and ``syndicate serve``: publish feeds as files, or serve them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import click

from . import App, emit_json, is_tty, json_option, main, pass_app


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
@json_option()
@pass_app
def build(app: App, out_dir: str | None, verbose: bool, as_json: bool) -> None:
    """Write every feed and index page atomically; unchanged files are left alone.

    \b
    Example:
        syndicate feed build
        syndicate feed build --out /var/www/news --json
    """
    from ..publish import publish_all

    settings = app.settings
    with _build_bar() as bar:
        report = publish_all(app.store, settings, out_dir or settings.feeds_out, progress=bar)
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


@contextmanager
def _build_bar() -> Iterator[Callable[[int, int], None] | None]:
    """On a terminal, a bar of articles done as the build goes month by month (its total comes
    with the first month); otherwise nothing, and the command's summary line is all."""
    if not is_tty():
        yield None
        return
    with ExitStack() as stack:
        bars: list[Any] = []

        def advance(done: int, total: int) -> None:
            if not bars:
                bars.append(stack.enter_context(
                    click.progressbar(length=max(total, 1), label="building feeds", file=sys.stderr, show_pos=True)
                ))
            bars[0].update(done - bars[0].pos)

        yield advance


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@pass_app
def serve(app: App, host: str, port: int) -> None:
    """Serve feeds (with ETag/304 and gzip) and the public pages over HTTP.

    \b
    Example:
        syndicate serve --port 8080
        curl -I http://127.0.0.1:8080/atom.xml
    """
    import uvicorn

    from ..web import create_app
    from ..web.feeds import with_clock

    settings = app.settings
    app.store  # noqa: B018 - open (and migrate) the database before the first request
    click.echo(f"serving http://{host}:{port}/ — paste http://{host}:{port}/atom.xml into a feed reader", err=True)
    # Date comes from the clock that dates Last-Modified (uvicorn's own lags by up to a second).
    uvicorn.run(with_clock(create_app(settings)), host=host, port=port, log_level="warning", proxy_headers=False,
                date_header=False)
