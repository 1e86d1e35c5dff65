"""``syndicate demo``: the whole pipeline on the sample data in ``data/``."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import click

from ..config import PACKAGE_ROOT, config_path, write_default_config
from ..errors import InputError
from . import App, main, pass_app
from .send import parse_at

DEMO_AT = "2026-11-24T16:00:00+00:00"


def data_dir() -> Path:
    """``./data`` when it holds the samples, else the checkout's ``data/``."""
    here = Path("data")
    if (here / "articles").is_dir():
        return here
    shipped = PACKAGE_ROOT / "data"
    if (shipped / "articles").is_dir():
        return shipped
    raise InputError("no sample data: run `syndicate demo` from the syndicate checkout (it reads data/)")


@main.command()
@click.option("--at", default=DEMO_AT, show_default=True, metavar="ISO-TIME",
              help="The moment the demo's send acts at (fixed, so every run shows the same digests).")
@pass_app
def demo(app: App, at: str) -> None:
    """Run everything once on the sample data: init, import, feeds, lists, subscribers, send.

    Safe to rerun: imports are idempotent and a digest is never sent twice.

    \b
    Example:
        syndicate demo
        syndicate serve        # then open http://127.0.0.1:8080/
    """
    from ..ingest import import_paths
    from ..mailer import make_transport
    from ..publish import publish_all
    from ..sender import run_send
    from ..subscriber_csv import import_csv
    from ..subscribers import load_lists

    data = data_dir()
    moment = parse_at(at)
    assert moment is not None
    joined = moment - timedelta(days=8)  # the sample readers signed up the week before
    path, _ = config_path(app.config, os.environ)
    if write_default_config(path):
        click.echo(f"wrote {path} (a fresh secret_key; edit it to set your site and SMTP relay)")
    app.creates = True
    settings, store = app.settings, app.store
    click.echo(f"database  {store.path}")

    imported = import_paths(store, [data / "articles"])
    click.echo(f"articles  {imported.summary()} from {data / 'articles'}")
    for line in imported.errors:
        click.echo(f"error: {line}", err=True)

    lists = load_lists(store, data / "lists.toml", now=joined)
    click.echo(f"lists     {', '.join(nl.slug for nl in lists)} (from {data / 'lists.toml'})")
    subs = import_csv(store, settings, data / "subscribers.csv", None, confirmed=True, now=joined)
    click.echo(f"people    {subs.summary()}")
    if subs.errors:
        click.echo(f"error: {subs.error_message()}", err=True)

    published = publish_all(store, settings, settings.feeds_out)
    click.echo(f"feeds     {len(published.written)} files written, {len(published.unchanged)} unchanged in {published.out_dir}/")
    for rel in ("rss.xml", "atom.xml", "feed.json", "index.html"):
        click.echo(f"          {Path(published.out_dir) / rel}")

    report = run_send(store, settings, make_transport(settings), now=moment)
    click.echo(f"send      at {at} via {settings.transport}: {report.summary()}")
    if settings.transport == "maildir":
        new = sorted(Path(settings.mail_maildir, "new").glob("*"))
        click.echo(f"mail      {len(new)} messages in {settings.mail_maildir}/new/")
        if new:
            click.echo(f"          open one in a mail client (mutt -f {settings.mail_maildir}), or read it as text:")
            click.echo(f"          syndicate digest preview an.nguyen@example.org --list tin-sang --at {at} --format text")
    click.echo("")
    click.echo("next      syndicate serve   then paste http://127.0.0.1:8080/atom.xml into a feed reader,")
    click.echo("          or open http://127.0.0.1:8080/ to subscribe")
    if not imported.ok or subs.errors or not report.ok:
        raise click.exceptions.Exit(1)
