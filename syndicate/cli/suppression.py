"""``syndicate suppression ...``: see, add, lift and import suppressions."""

from __future__ import annotations

import getpass
from pathlib import Path

import click

from .. import suppressions as lib
from ..errors import InputError
from ..models import to_iso
from . import App, emit_json, json_option, main, pass_app, progress


def _actor() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # pragma: no cover - no user name in this environment
        return ""


@main.group("suppression")
def suppression_group() -> None:
    """Addresses that no list may mail: bounced, complained, unsubscribed everywhere, erased.

    \b
    Example:
        syndicate suppression ls --reason complained
        syndicate suppression add spam-trap@example.org --reason complained
    """


@suppression_group.command("ls")
@click.option("--reason", help="Only this reason (bounced, complained, unsubscribed, erased).")
@json_option()
@pass_app
def suppression_ls(app: App, reason: str | None, as_json: bool) -> None:
    """List suppressions, newest first; erased people show only their address hash.

    \b
    Example:
        syndicate suppression ls --reason bounced --json
    """
    rows = lib.suppressions(app.store, reason)
    if as_json:
        emit_json([{"email": s.email or None, "email_hash": s.email_hash, "reason": s.reason,
                    "at": to_iso(s.at) if s.at else None} for s in rows])
        return
    n = 0
    for s in rows:
        n += 1
        who = s.email or f"(erased) sha256:{s.email_hash[:16]}"
        click.echo(f"{to_iso(s.at) if s.at else '-':<26} {s.reason:<13} {who}")
    if not n:
        click.echo("no suppressions" + (f" with reason {reason}" if reason else ""), err=True)


@suppression_group.command("add")
@click.argument("email")
@click.option("--reason", required=True, type=click.Choice(lib.REASONS), help="Why no list may mail it.")
@pass_app
def suppression_add(app: App, email: str, reason: str) -> None:
    """Suppress an address on every list at once; its active subscriptions end (recorded).

    \b
    Example:
        syndicate suppression add an@example.org --reason complained
    """
    n = lib.suppress(app.store, app.settings, email, reason, source="cli", actor=_actor())
    click.echo(f"suppressed {email.strip()} ({reason}); {n} active subscription(s) stopped")


@suppression_group.command("remove")
@click.argument("email")
@pass_app
def suppression_remove(app: App, email: str) -> None:
    """Lift a suppression (an admin decision, recorded as an event).

    Nobody becomes active by this: the person confirms again, or
    `subscriber resubscribe` brings them back when they asked to.

    \b
    Example:
        syndicate suppression remove an@example.org
    """
    was = lib.unsuppress(app.store, app.settings, email, source="cli", actor=_actor())
    click.echo(f"lifted the suppression of {email.strip()} (was {was}); their subscriptions are unchanged")


@suppression_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option("Print the report as JSON.")
@pass_app
def suppression_import(app: App, file: Path, as_json: bool) -> None:
    """Import a provider's suppression list (CSV with an email column and an optional reason column).

    Headers are matched liberally (email, Email Address, recipient; reason,
    type, suppression reason); reasons such as bounce, hard bounce, spam
    complaint, abuse, unsubscribe map to bounced, complained, unsubscribed (no
    reason: unsubscribed).

    \b
    Example:
        syndicate suppression import ses-suppressions.csv
    """
    job = lib.SuppressionImport(app.store, app.settings, file, actor=_actor())
    with progress(job, job.estimated_batches(), "importing") as batches:
        for _ in batches:
            pass
    rep = job.report
    if as_json:
        emit_json({"file": rep.file, "rows": rep.rows, "added": rep.added, "already": rep.already,
                   "stopped": rep.stopped, "errors": rep.errors, "first_errors": rep.first_errors})
    else:
        click.echo(rep.summary())
    if rep.errors:
        raise InputError(rep.error_message())
