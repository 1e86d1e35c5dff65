"""``syndicate send``, ``syndicate outbox ...`` and ``syndicate digest preview``."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..models import from_iso, utcnow
from . import App, emit_json, json_option, main, pass_app, progress


def parse_at(value: str | None) -> datetime | None:
    """``--at``: ISO 8601; a time without an offset is taken as UTC."""
    if not value:
        return None
    try:
        return from_iso(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--at {value!r} is not an ISO 8601 time such as 2026-11-24T07:00:00+07:00") from None


AT_HELP = "Act as if it were this ISO 8601 time (UTC unless it has an offset), to replay or test a run."


@main.command()
@click.option("--at", "at", metavar="ISO-TIME", help=AT_HELP)
@click.option("--dry-run", is_flag=True, help="Show what would be sent; write and send nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N messages this run (the rest wait).")
@json_option("Print the run's figures as JSON.")
@pass_app
def send(app: App, at: str | None, dry_run: bool, limit: int | None, as_json: bool) -> None:
    """Plan due digests into the outbox and send them (run it from cron).

    Prints one summary line; exits 1 if any message failed, 75 if another
    run holds the lock (the next cron run carries on).

    \b
    Example:
        syndicate send
        syndicate send --dry-run --at 2026-11-24T07:00:00+07:00
        */5 * * * *  syndicate --config /etc/syndicate.toml send
    """
    from ..mailer import make_transport
    from ..sender import run_send

    settings = app.settings
    transport = make_transport(settings, "memory" if dry_run else None)
    with ExitStack() as stack:
        bar: list[Any] = []

        def planned(n: int) -> None:
            if n:
                bar.append(stack.enter_context(progress(range(n), n, "sending")))

        def step(n: int) -> None:
            if bar and hasattr(bar[0], "update"):
                bar[0].update(n)

        report = run_send(app.store, settings, transport, now=parse_at(at), limit=limit, dry_run=dry_run,
                          on_planned=planned, on_progress=step)
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(report.summary())
        for line in report.errors[:10]:
            click.echo(f"  {line}", err=True)
    if report.failed:
        sys.exit(1)


@main.group()
def outbox() -> None:
    """Look at and requeue the outbox of planned digests.

    \b
    Example:
        syndicate outbox status
        syndicate outbox retry
    """


@outbox.command("status")
@json_option()
@pass_app
def outbox_status(app: App, as_json: bool) -> None:
    """How many deliveries are in each state, then per kind (digest, confirm, welcome).

    \b
    Example:
        syndicate outbox status --json
    """
    status = app.store.outbox_status(utcnow())
    if as_json:
        emit_json({**status.counts, "due_now": status.due_now, "total": status.total, "by_kind": status.by_kind})
        return
    for name, n in status.counts.items():
        click.echo(f"{name:<10}{n:>10,}")
    click.echo(f"{'due now':<10}{status.due_now:>10,}")
    if status.by_kind:
        click.echo("by kind:")
    for kind, counts in status.by_kind.items():
        click.echo(f"  {kind:<8}" + ", ".join(f"{n:,} {name}" for name, n in counts.items() if n))


@outbox.command("retry")
@click.option("--unknown", is_flag=True,
              help="Also resend rows whose fate is unknown (a run died while sending): may duplicate.")
@pass_app
def outbox_retry(app: App, unknown: bool) -> None:
    """Requeue failed deliveries (not hard bounces) for the next `send`.

    \b
    Example:
        syndicate outbox retry
        syndicate outbox retry --unknown && syndicate send
    """
    n = app.store.retry_failed(unknown=unknown)
    click.echo(f"requeued {n:,} deliveries; the next `syndicate send` sends them")


@main.group()
def digest() -> None:
    """Preview the digests subscribers get.

    \b
    Example:
        syndicate digest preview lan@example.org --list tin-sang --format text
    """


@digest.command("preview")
@click.argument("email")
@click.option("--list", "list_slug", required=True, help="The list's slug.")
@click.option("--at", "at", metavar="ISO-TIME", help=AT_HELP)
@click.option("--format", "fmt", type=click.Choice(["html", "text", "eml"]), default="text", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout.")
@pass_app
def digest_preview(app: App, email: str, list_slug: str, at: str | None, fmt: str, out: Path | None) -> None:
    """Write exactly the digest `send` would send this subscriber (nothing is sent).

    \b
    Example:
        syndicate digest preview lan@example.org --list tin-sang --at 2026-11-24T07:00:00+07:00 --format eml --out d.eml
    """
    from ..sender import preview

    p = preview(app.store, app.settings, email, list_slug, parse_at(at))
    data = p.eml if fmt == "eml" else (p.html if fmt == "html" else p.text).encode("utf-8")
    if out is not None:
        out.write_bytes(data)
        click.echo(f"wrote {out} ({p.period}, {p.article_count} articles{'' if p.due else ', not due yet'})", err=True)
    else:
        click.echo(data, nl=False)
