"""``syndicate bounces`` commands."""

from __future__ import annotations

import click

from . import App, emit_json, json_option, main, pass_app


@main.group()
def bounces() -> None:
    """Read bounce messages (DSNs) and emailed unsubscribe requests, and apply them.

    \b
    Example:
        syndicate bounces process /var/mail/bounces
    """


@bounces.command("process")
@click.argument("path", type=click.Path(path_type=str))
@json_option()
@pass_app
def process(app: App, path: str, as_json: bool) -> None:
    """Apply the bounces in a Maildir (its new/ messages) or one .eml file.

    Hard bounces (5.x.x) count against the subscription, once per delivery
    however often its DSN arrives; after the limit it is set bounced.
    Complaints (RFC 5965 feedback reports from a provider's feedback loop)
    set the subscription complained and suppress the address on every list.
    Autoreplies are ignored. A message whose subject is "unsubscribe <token>" (the mailto:
    in every digest's List-Unsubscribe) unsubscribes at once. Processed Maildir
    messages move to cur/ so they count once.
    Exits 1 if a message could not be read.

    \b
    Example:
        syndicate bounces process ~/Maildir/.bounces
        syndicate bounces process dsn.eml --json
    """
    from ..bounces import process_bounces

    report = process_bounces(app.store, app.settings, path)
    if as_json:
        emit_json({
            "messages": report.messages, "hard": report.hard, "soft": report.soft, "ignored": report.ignored,
            "unmatched": report.unmatched, "newly_bounced": report.newly_bounced,
            "unsubscribed": report.unsubscribed, "complaints": report.complaints,
            "newly_complained": report.newly_complained, "duplicates": report.duplicates, "errors": report.errors,
            "bounces": [
                {"source": b.source, "delivery_id": b.delivery_id, "recipient": b.recipient, "hard": b.hard,
                 "action": b.action, "status": b.status, "diagnostic": b.diagnostic}
                for b in report.bounces
            ],
            "complaint_reports": [
                {"source": c.source, "delivery_id": c.delivery_id, "message_id": c.message_id,
                 "feedback_type": c.feedback_type, "reporter": c.reporter}
                for c in report.complaint_list
            ],
        })
    else:
        for b in report.bounces:
            kind = "hard" if b.hard else "soft"
            target = f"delivery {b.delivery_id}" if b.delivery_id is not None else "unmatched"
            click.echo(f"{kind:<4}  {b.status or '-':<7}  {target:<16}  {b.recipient}")
        for c in report.complaint_list:
            target = f"delivery {c.delivery_id}" if c.delivery_id is not None else "unmatched"
            click.echo(f"complaint  {c.feedback_type:<7}  {target:<16}  {c.reporter}")
        for err in report.errors:
            click.echo(f"error: {err}", err=True)
        click.echo(report.summary())
    if report.errors:
        click.get_current_context().exit(1)
