"""``syndicate send``, ``syndicate outbox ...`` and ``syndicate digest preview``."""

from __future__ import annotations

import dataclasses
import itertools
import json
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
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Drain processes after planning (default: the usable cores, at most one per "
                   "200 due messages).")
@json_option("Print the run's figures as JSON.")
@pass_app
def send(app: App, at: str | None, dry_run: bool, limit: int | None, workers: int | None, as_json: bool) -> None:
    """Plan due digests into the outbox and send them (run it from cron).

    Prints one summary line. SIGTERM (systemd's stop) stops claiming, lets
    messages on the wire finish within [send] grace_seconds, gives the rest
    back to the queue and prints the summary.

    After planning, --workers N drain processes send side by side (default:
    the cores this process may use, at most one per 200 due messages, so a
    small run stays in one process). SIGTERM reaches every worker; a worker
    that dies has its messages recorded from its journal and the run exits 1.

    \b
    Exit codes:
      0   every due message was sent (or nothing was due)
      1   a message failed for good, or the run stopped on an error
          (a full disk, a read-only database: the line names the path)
      3   nothing failed, but some messages wait for a later run
          (a temporary failure, SIGTERM, the relay unreachable)
      4   nothing failed, but some are `unknown`: the relay may have them
          (see `syndicate outbox ls --status unknown`)
      75  another run holds the lock; the next cron run carries on

    \b
    Example:
        syndicate send
        syndicate send --dry-run --at 2026-11-24T07:00:00+07:00
        syndicate send --workers 4
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
                          on_planned=planned, on_progress=step, workers=workers)
    from ..publish import publish_due_note  # the same cron tick publishes what came out of embargo

    feeds_note = "" if dry_run else publish_due_note(app.store, settings, parse_at(at))
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(report.summary())
        for line in report.errors[:10]:
            click.echo(f"  {line}", err=True)
        if feeds_note:
            click.echo(feeds_note, err=True)
    if report.fatal:
        click.echo(f"error: {report.fatal}; the next `syndicate send` recovers", err=True)
    if report.exit_code:
        sys.exit(report.exit_code)


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
    """How many deliveries are in each state (then per kind: digest, confirm, welcome), and what waits to be retried.

    `deferred` rows are queued after a temporary failure (a relay outage, a
    4xx reply) and wait for their retry time; they give up after
    [send] queue_lifetime_hours, or sooner when the next period's digest
    supersedes them (they become `skipped`, and the new digest carries their
    articles).

    \b
    Example:
        syndicate outbox status --json
    """
    status = app.store.outbox_status(utcnow())
    if as_json:
        emit_json({**status.counts, "due_now": status.due_now, "deferred": status.deferred,
                   "next_retry": status.next_retry, "oldest_deferred": status.oldest_deferred,
                   "total": status.total, "by_kind": status.by_kind})
        return
    for name, n in status.counts.items():
        click.echo(f"{name:<10}{n:>10,}")
    click.echo(f"{'due now':<10}{status.due_now:>10,}")
    if status.deferred:
        click.echo(f"{'deferred':<10}{status.deferred:>10,}  next retry {_when(status.next_retry)}, "
                   f"oldest planned {_when(status.oldest_deferred)}")

    if status.by_kind:
        click.echo("by kind:")
    for kind, counts in status.by_kind.items():
        click.echo(f"  {kind:<8}" + ", ".join(f"{n:,} {name}" for name, n in counts.items() if n))

def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


LS_STATUSES = ("queued", "deferred", "sending", "sent", "failed", "bounced", "unknown", "skipped", "cancelled")


@outbox.command("ls")
@click.option("--status", type=click.Choice(LS_STATUSES), help="Only rows in this state.")
@click.option("--list", "list_slug", metavar="SLUG", help="Only this list.")
@click.option("--period", metavar="PERIOD", help="Only this period, e.g. 2026-11-24 or 2026-W48.")
@click.option("--email", metavar="ADDRESS", help="Only this subscriber.")
@json_option("Print one JSON object per delivery (a JSON array).")
@pass_app
def outbox_ls(app: App, status: str | None, list_slug: str | None, period: str | None, email: str | None,
              as_json: bool) -> None:
    """The send log: each delivery with its status, attempts, last SMTP reply, Message-ID and times.

    \b
    Example:
        syndicate outbox ls --status unknown
        syndicate outbox ls --email lan@example.org --json
    """
    from ..subscribers import normalize_address

    rows = app.store.list_deliveries(status=status, list_slug=list_slug, period=period,
                                     email=normalize_address(email) if email else None)
    if as_json:
        click.echo("[", nl=False)
        for i, r in enumerate(rows):
            click.echo(("," if i else "") + "\n  " + json.dumps(dataclasses.asdict(r), ensure_ascii=False,
                                                             default=str), nl=False)
        click.echo("\n]")
        return
    n = 0
    for r in rows:
        when = r.sent_at or r.last_attempt or r.created
        what = r.message_id if r.status == "sent" else r.last_reply
        if r.status == "queued" and r.next_attempt is not None:
            what = f"retry at {_when(r.next_attempt)}: {what}"
        click.echo(f"{r.id:>7}  {r.status:<9} {r.attempts:>3}  {r.list_slug}  {r.period}  {r.email}  "
                   f"{_when(when)}  {what}".rstrip())
        n += 1
    if not n:
        click.echo("no deliveries match", err=True)


@outbox.command("retry")
@click.option("--unknown", is_flag=True,
              help="Also resend rows whose fate is unknown (the relay may have them): may duplicate.")
@click.option("--yes", is_flag=True, help="With --unknown: do not ask first.")
@pass_app
def outbox_retry(app: App, unknown: bool, yes: bool) -> None:
    """Requeue failed deliveries (not hard bounces) for the next `send`.

    With --unknown it first lists the `unknown` rows (the relay may already
    have delivered them) and asks before requeueing them too.

    \b
    Example:
        syndicate outbox retry
        syndicate outbox retry --unknown --yes && syndicate send
    """
    if unknown:
        rows = list(itertools.islice(app.store.list_deliveries(status="unknown"), 21))
        total = app.store.outbox_status(utcnow()).counts["unknown"]
        if total:
            click.echo(f"{total:,} deliveries are unknown: the relay may already have delivered them, so "
                       "resending may deliver them twice:")
            for r in rows[:20]:
                click.echo(f"  {r.email}  {r.list_slug} {r.period}  {r.last_reply}")
            if total > 20:
                click.echo(f"  ... and {total - 20:,} more (see `syndicate outbox ls --status unknown`)")
            if not yes and not click.confirm(f"Resend these {total:,}?", default=False, err=True):
                click.echo("nothing requeued", err=True)
                sys.exit(1)
    n = app.store.retry_failed(unknown=unknown)
    click.echo(f"requeued {n:,} deliveries; the next `syndicate send` sends them")


@outbox.command("report")
@click.option("--list", "list_slug", metavar="SLUG", help="Only this list.")
@click.option("--period", metavar="PERIOD", help="Only this period, e.g. 2026-11-24 or 2026-W48.")
@json_option()
@pass_app
def outbox_report(app: App, list_slug: str | None, period: str | None, as_json: bool) -> None:
    """Per list and period: planned, sent, skipped, deferred, failed, bounced, complained, unsubscribed since.

    `complained` and `unsubscribed` count recipients of a sent digest who
    complained or left the list at or after it was sent.

    \b
    Example:
        syndicate outbox report --list tin-sang --period 2026-11-24
    """
    reports = app.store.digest_reports(list_slug=list_slug, period=period)
    if as_json:
        emit_json([dataclasses.asdict(r) for r in reports])
        return
    cols = ("planned", "sent", "skipped", "queued", "deferred", "failed", "bounced", "unknown", "complained",
            "unsubscribed")
    click.echo(f"{'list':<14}{'period':<12}" + "".join(f"{c:>13}" for c in cols))
    for r in reports:
        click.echo(f"{r.list_slug:<14}{r.period:<12}" + "".join(f"{getattr(r, c):>13,}" for c in cols))
    if not reports:
        click.echo("no digests planned yet", err=True)


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

    When `send` would send nothing, says so: for a period already sent, on
    stderr above the digest that went out; when it is not due yet or nothing
    new arrived, instead of a digest.

    \b
    Example:
        syndicate digest preview lan@example.org --list tin-sang --at 2026-11-24T07:00:00+07:00 --format eml --out d.eml
    """
    from ..sender import preview

    p = preview(app.store, app.settings, email, list_slug, parse_at(at))
    if p.note:
        click.echo(p.note, err=out is not None or p.shown)
        if not p.shown:
            return
    data = p.eml if fmt == "eml" else (p.html if fmt == "html" else p.text).encode("utf-8")
    if out is not None:
        out.write_bytes(data)
        click.echo(f"wrote {out} ({p.period}, {p.article_count} articles{'' if p.due else ', not due yet'})", err=True)
    else:
        click.echo(data, nl=False)
