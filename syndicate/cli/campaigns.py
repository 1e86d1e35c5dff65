"""``syndicate campaign ...``: one-off announcements to a list (create, test, send, report)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from .. import campaigns as lib
from ..errors import InputError
from ..models import to_iso
from . import App, emit_json, json_option, main, pass_app

SEND_AT_HELP = ("When the send tick (`syndicate send`) plans it: ISO 8601, e.g. 2026-12-05T08:00+07:00; "
                "without an offset, the site's time zone.")


def _send_at(app: App, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--send-at {value!r} is not an ISO 8601 time such as 2026-12-05T08:00+07:00") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=app.settings.tz)


def _body(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); save the Markdown as UTF-8") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror}") from None


@main.group("campaign")
def campaign_group() -> None:
    """One-off announcements to a list, sent through the same outbox as digests.

    Write the body in Markdown, test it on yourself, then send it now or at a time.

    \b
    Example:
        syndicate campaign create --list tin-sang --subject "Hội thảo 5/12" --body event.md
        syndicate campaign test 1 --to editor@example.org
        syndicate campaign send 1
    """


@campaign_group.command("create")
@click.option("--list", "list_slug", required=True, help="The list's slug.")
@click.option("--subject", required=True, help="The subject line.")
@click.option("--body", "body", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A Markdown file (UTF-8).")
@click.option("--send-at", metavar="ISO-TIME", help=SEND_AT_HELP)
@click.option("--category", "categories", multiple=True, help="Only subscribers of this category (repeat).")
@pass_app
def campaign_create(app: App, list_slug: str, subject: str, body: Path, send_at: str | None,
                    categories: tuple[str, ...]) -> None:
    """Create a campaign (a draft, or scheduled with --send-at) and print its id.

    \b
    Example:
        syndicate campaign create --list tin-sang --subject "Hội thảo 5/12" --body event.md --send-at 2026-12-05T08:00
    """
    c = lib.create_campaign(app.store, app.settings, list_slug=list_slug, subject=subject, body_markdown=_body(body),
                            send_at=_send_at(app, send_at), categories=categories)
    click.echo(c.id)


@campaign_group.command("ls")
@click.option("--list", "list_slug", help="Only this list's campaigns.")
@json_option()
@pass_app
def campaign_ls(app: App, list_slug: str | None, as_json: bool) -> None:
    """List campaigns, newest first.

    \b
    Example:
        syndicate campaign ls --list tin-sang --json
    """
    list_id = app.store.get_list(list_slug).id if list_slug else None
    rows = app.store.list_campaigns(list_id)
    if as_json:
        emit_json([lib.campaign_dict(c) for c in rows])
        return
    for c in rows:
        when = to_iso(c.sent_at or c.send_at or c.created)
        click.echo(f"{c.id:>5}  {c.status:<9}  {c.list_slug:<16} {when:<26} {c.subject}")
    if not rows:
        click.echo("no campaigns yet; create one with `syndicate campaign create`", err=True)


@campaign_group.command("show")
@click.argument("campaign_id", type=int)
@json_option()
@pass_app
def campaign_show(app: App, campaign_id: int, as_json: bool) -> None:
    """Show one campaign with its Markdown body.

    \b
    Example:
        syndicate campaign show 1
    """
    c = app.store.get_campaign(campaign_id)
    if as_json:
        emit_json(lib.campaign_dict(c, with_body=True))
        return
    for key, value in lib.campaign_dict(c).items():
        if value not in (None, []):
            click.echo(f"{key + ':':<12} {', '.join(value) if isinstance(value, list) else value}")
    click.echo("")
    click.echo(c.body_md.rstrip("\n"))


@campaign_group.command("edit")
@click.argument("campaign_id", type=int)
@click.option("--subject", help="A new subject line.")
@click.option("--body", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A new Markdown file.")
@click.option("--send-at", metavar="ISO-TIME", help=SEND_AT_HELP)
@click.option("--draft", is_flag=True, help="Unschedule: back to a draft (no send time).")
@pass_app
def campaign_edit(app: App, campaign_id: int, subject: str | None, body: Path | None, send_at: str | None,
                  draft: bool) -> None:
    """Change a draft or scheduled campaign; options not given stay as they are.

    \b
    Example:
        syndicate campaign edit 1 --subject "Hội thảo dời sang 6/12" --send-at 2026-12-06T08:00
    """
    if draft and send_at:
        raise InputError("give --send-at or --draft, not both")
    c = lib.edit_campaign(app.store, campaign_id, subject=subject, body_markdown=_body(body) if body else None,
                          send_at=_send_at(app, send_at), clear_send_at=draft)
    click.echo(f"campaign {c.id} is {c.status}" + (f" for {to_iso(c.send_at)}" if c.send_at else ""))


@campaign_group.command("cancel")
@click.argument("campaign_id", type=int)
@pass_app
def campaign_cancel(app: App, campaign_id: int) -> None:
    """Cancel a draft or scheduled campaign; nothing of it is sent.

    \b
    Example:
        syndicate campaign cancel 1
    """
    c = lib.cancel_campaign(app.store, campaign_id)
    click.echo(f"campaign {c.id} cancelled")


@campaign_group.command("test")
@click.argument("campaign_id", type=int)
@click.option("--to", "to", required=True, help="The one address to send it to.")
@pass_app
def campaign_test(app: App, campaign_id: int, to: str) -> None:
    """Send one real message of it to one address now, subject marked [TEST]; the real send is untouched.

    \b
    Example:
        syndicate campaign test 1 --to editor@example.org
    """
    mid = lib.test_campaign(app.store, app.settings, campaign_id, to)
    click.echo(f"sent a test of campaign {campaign_id} to {to.strip()} ({mid})")


@campaign_group.command("send")
@click.argument("campaign_id", type=int)
@pass_app
def campaign_send(app: App, campaign_id: int) -> None:
    """Queue it now for every active subscriber of its list; `syndicate send` delivers them.

    \b
    Example:
        syndicate campaign send 1 && syndicate send
    """
    n = lib.send_campaign(app.store, app.settings, campaign_id)
    click.echo(f"campaign {campaign_id}: {n:,} message(s) queued; `syndicate send` (cron) delivers them")


@campaign_group.command("report")
@click.argument("campaign_id", type=int)
@json_option()
@pass_app
def campaign_report(app: App, campaign_id: int, as_json: bool) -> None:
    """What became of a campaign: planned, sent, failed, bounced, complaints, unsubscribes after it, clicks.

    \b
    Example:
        syndicate campaign report 1 --json
    """
    r = lib.campaign_report(app.store, campaign_id)
    if as_json:
        emit_json(lib.report_dict(r))
        return
    click.echo(f"campaign {r.campaign_id} ({r.status})")
    for key in ("planned", "sent", "failed", "bounced", "complained", "unsubscribed", "queued", "sending",
                "unknown", "cancelled"):
        click.echo(f"  {key + ':':<14}{getattr(r, key):>8,}")
    if r.links:
        click.echo("  clicks:")
        for k in r.links:
            who = f" ({k.people:,} people)" if k.people is not None else ""
            click.echo(f"  {k.clicks:>8,}{who}  {k.url}")
