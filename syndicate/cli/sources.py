"""``syndicate source ...`` and ``syndicate fetch``: follow feeds and news pages on a schedule."""

from __future__ import annotations

from datetime import datetime

import click

from ..store.sources import Source
from . import App, emit_json, json_option, main, pass_app, step_bar


def _source_dict(s: Source) -> dict[str, object]:
    from ..sources import format_every

    return {
        "id": s.id, "url": s.url, "name": s.name, "kind": s.kind, "category": s.category,
        "every": format_every(s.every_seconds), "paused": s.paused, "etag": s.etag, "last_modified": s.last_modified,
        "created": s.created.isoformat(), "next_due": s.next_due.isoformat(),
        "last_fetched": s.last_fetched.isoformat() if s.last_fetched else None,
        "last_success": s.last_success.isoformat() if s.last_success else None,
        "last_status": s.last_status, "last_error": s.last_error, "failures": s.failures, "items_seen": s.items_seen,
    }


def _when(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M}" if t else "never"


def _state(s: Source) -> str:
    if s.paused:
        return "paused"
    if s.failures:
        return f"failing x{s.failures}, backing off"
    return "ok" if s.last_success else "new"


@main.group()
def source() -> None:
    """Follow feeds and news pages: `syndicate fetch` (cron) reads what is due into the store.

    \b
    Example:
        syndicate source add https://haiphong.gov.vn/rss/tin-tuc.rss --name "Hải Phòng" --every 30m
        syndicate source add https://haiphong.gov.vn/tin-tuc/cong-nghe --kind index --category "Công nghệ"
        syndicate source ls
    """


@source.command("add")
@click.argument("url")
@click.option("--name", default="", help="A name to show in `source ls`.")
@click.option("--category", default="", help="Category for articles that name none.")
@click.option("--kind", type=click.Choice(["feed", "page", "index"]), default="feed", show_default=True,
              help="feed: RSS/Atom/JSON Feed; page: one article; index: a section page whose article links are read.")
@click.option("--every", default="30m", show_default=True, help="How often: 30m, 2h, 1d.")
@click.option("--no-check", is_flag=True,
              help="Add a feed without fetching it first (by default it must answer as a feed, or as a page linking to one).")
@json_option()
@pass_app
def add(app: App, url: str, name: str, category: str, kind: str, every: str, no_check: bool, as_json: bool) -> None:
    """Follow URL; the next `syndicate fetch` reads it.

    A feed URL is fetched once first: a page that advertises its feed
    (<link rel="alternate">) follows that feed; anything else that is not a
    feed is refused with what it is.

    \b
    Example:
        syndicate source add https://example.org/feed.xml --every 1h
        syndicate source add https://example.org/tin/123.html --kind page
    """
    from ..fetcher import FetchPolicy
    from ..sources import Checked, add_source, check_source, format_every

    checked = Checked(url) if no_check else check_source(url, kind, FetchPolicy.from_settings(app.settings))
    s = add_source(app.store, checked.url, kind=kind, every=every, name=name, category=category)
    if checked.warning:
        click.echo(f"warning: {checked.warning}", err=True)
    if as_json:
        emit_json({**_source_dict(s), "found_on": checked.found_on or None})
        return
    via = f" (the feed {checked.found_on} links to)" if checked.found_on else ""
    click.echo(f"source {s.id}: {s.kind} {s.url}{via}, every {format_every(s.every_seconds)}; "
               "run `syndicate fetch` to read it now")


@source.command("ls")
@json_option()
@pass_app
def ls(app: App, as_json: bool) -> None:
    """List followed sources with their state and when each is next due.

    \b
    Example:
        syndicate source ls
        syndicate source ls --json
    """
    from ..sources import format_every

    sources = app.store.all_sources()
    if as_json:
        emit_json([_source_dict(s) for s in sources])
        return
    if not sources:
        click.echo("no sources; add one with `syndicate source add URL`")
        return
    click.echo(f"{'id':>4}  {'kind':<5}  {'every':>5}  {'state':<26}  {'next due (UTC)':<16}  {'items':>5}  url")
    for s in sources:
        click.echo(f"{s.id:>4}  {s.kind:<5}  {format_every(s.every_seconds):>5}  {_state(s):<26}  "
                   f"{_when(s.next_due):<16}  {s.items_seen:>5}  {s.url}")
        if s.last_error:
            click.echo(f"{'':>6}last error: {s.last_error}")


@source.command("show")
@click.argument("source_id", type=int)
@json_option()
@pass_app
def show(app: App, source_id: int, as_json: bool) -> None:
    """Everything known about one source.

    \b
    Example:
        syndicate source show 1
    """
    s = app.store.get_source(source_id)
    d = _source_dict(s)
    if as_json:
        emit_json(d)
        return
    for key, value in d.items():
        click.echo(f"{key + ':':<15}{'' if value is None else value}")


@source.command("remove")
@click.argument("source_id", type=int)
@pass_app
def remove(app: App, source_id: int) -> None:
    """Stop following a source; the articles it brought stay.

    \b
    Example:
        syndicate source remove 3
    """
    s = app.store.remove_source(source_id)
    click.echo(f"removed source {s.id} ({s.url}); its {s.items_seen} articles stay in the store")


@source.command("pause")
@click.argument("source_id", type=int)
@pass_app
def pause(app: App, source_id: int) -> None:
    """Stop fetching a source until `source resume`.

    \b
    Example:
        syndicate source pause 2
    """
    s = app.store.set_source_paused(source_id, True)
    click.echo(f"paused source {s.id} ({s.url})")


@source.command("resume")
@click.argument("source_id", type=int)
@pass_app
def resume(app: App, source_id: int) -> None:
    """Fetch a paused or backing-off source again at the next `syndicate fetch`.

    \b
    Example:
        syndicate source resume 2
    """
    s = app.store.set_source_paused(source_id, False)
    click.echo(f"resumed source {s.id} ({s.url}); due now")


@main.command()
@click.option("--source", "source_id", type=int, help="Fetch only this source, due or not.")
@click.option("--at", "at", help="Act as if it were this time (ISO 8601), e.g. to replay a schedule.")
@click.option("--no-publish", is_flag=True, help="Do not refresh the published feeds afterwards.")
@json_option()
@pass_app
def fetch(app: App, source_id: int | None, at: str | None, no_publish: bool, as_json: bool) -> None:
    """Fetch every due source in parallel and import what is new or changed (run it from cron).

    Prints one summary line, and a line per failing source; exits 1 when any
    failed, 75 when another fetch holds the lock.

    \b
    Example:
        syndicate fetch
        syndicate fetch --source 2 --json
    """
    from ..ingest import parse_published
    from ..sources import run_fetch

    now = parse_published(at, app.settings.tz) if at else None
    with step_bar("fetching sources") as bar:
        run = run_fetch(app.store, app.settings, now=now, source_id=source_id, publish=not no_publish,
                        on_progress=bar)
    if as_json:
        emit_json(run.as_dict())
    else:
        for r in run.results:
            if r.ok and (r.new or r.updated):
                click.echo(r.line())
            for note in r.notes:
                click.echo(f"note: source {r.source.id}: {note}")
        click.echo(run.summary())
    for r in run.failed:
        click.echo(f"error: {r.line()}", err=True)
    for e in run.publish_errors:
        click.echo(f"warning: {e}", err=True)
    if run.failed:
        click.get_current_context().exit(1)
