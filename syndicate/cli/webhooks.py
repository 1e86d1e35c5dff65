"""``syndicate webhook ...``: endpoints that hear about subscriptions, bounces and campaigns."""

from __future__ import annotations

import sys

import click

from ..models import to_iso
from ..store.webhooks import EVENTS, Webhook, WebhookAttempt
from . import App, emit_json, json_option, main, pass_app


def _hook_dict(w: Webhook) -> dict[str, object]:
    return {"id": w.id, "url": w.url, "events": list(w.events), "enabled": w.enabled,
            "disabled_reason": w.disabled_reason, "created": to_iso(w.created),
            "queued": w.queued, "delivered": w.delivered, "failed": w.failed}


def _attempt_dict(a: WebhookAttempt) -> dict[str, object]:
    return {"at": to_iso(a.at), "webhook_id": a.webhook_id, "delivery_id": a.delivery_id, "event": a.event,
            "url": a.url, "attempt": a.attempt, "status_code": a.status_code, "error": a.error,
            "outcome": a.outcome, "duration_ms": a.duration_ms}


@main.group("webhook")
def webhook_group() -> None:
    """POST signed JSON to your own systems when people subscribe, confirm, leave, bounce or complain.

    Events are queued in the store as they happen and delivered by
    `syndicate webhook deliver` (cron) or by `syndicate serve` in the background.

    \b
    Example:
        syndicate webhook add https://crm.example.org/hooks/news --events confirm,unsubscribe
        syndicate webhook ls
        syndicate webhook log --limit 20
    """


@webhook_group.command("add")
@click.argument("url")
@click.option("--events", required=True, help=f"Comma-separated: {','.join(EVENTS)}.")
@click.option("--secret", default=None, help="Signing secret (at least 16 characters) [default: a new random one].")
@json_option()
@pass_app
def webhook_add(app: App, url: str, events: str, secret: str | None, as_json: bool) -> None:
    """Send the chosen events to URL; prints its id, and the signing secret once if it was generated.

    \b
    Example:
        syndicate webhook add https://crm.example.org/hooks/news --events subscribe,confirm,unsubscribe
        syndicate webhook add https://ops.example.org/mail --events bounce,complaint --secret "$HOOK_SECRET"
    """
    from ..webhooks import add_webhook, parse_events

    hook, generated = add_webhook(app.store, app.settings, url, parse_events(events), secret)
    if as_json:
        emit_json({**_hook_dict(hook), **({"secret": hook.secret} if generated else {})})
        return
    click.echo(f"webhook {hook.id}: {hook.url} gets {', '.join(hook.events)}")
    if generated:
        click.echo(f"signing secret (shown only now; receivers check Syndicate-Signature with it): {hook.secret}")


@webhook_group.command("ls")
@json_option()
@pass_app
def webhook_ls(app: App, as_json: bool) -> None:
    """List webhooks with their events and how many of their deliveries are queued, delivered or failed.

    \b
    Example:
        syndicate webhook ls
        syndicate webhook ls --json
    """
    hooks = app.store.all_webhooks()
    if as_json:
        emit_json([_hook_dict(w) for w in hooks])
        return
    if not hooks:
        click.echo("no webhooks; add one with `syndicate webhook add URL --events confirm,unsubscribe`")
        return
    click.echo(f"{'id':>4}  {'state':<8}  {'queued':>6}  {'done':>6}  {'failed':>6}  url  (events)")
    for w in hooks:
        state = "on" if w.enabled else "disabled"
        click.echo(f"{w.id:>4}  {state:<8}  {w.queued:>6}  {w.delivered:>6}  {w.failed:>6}  {w.url}  "
                   f"({','.join(w.events)})")
        if w.disabled_reason:
            click.echo(f"{'':>6}disabled: {w.disabled_reason}")


@webhook_group.command("remove")
@click.argument("webhook_id", type=int)
@pass_app
def webhook_remove(app: App, webhook_id: int) -> None:
    """Stop sending to a webhook; its queued events are dropped (the attempts log stays).

    \b
    Example:
        syndicate webhook remove 2
    """
    hook = app.store.remove_webhook(webhook_id)
    dropped = f"; dropped {hook.queued:,} queued event{'s' if hook.queued != 1 else ''}" if hook.queued else ""
    click.echo(f"removed webhook {hook.id} ({hook.url}){dropped}")


@webhook_group.command("enable")
@click.argument("webhook_id", type=int)
@pass_app
def webhook_enable(app: App, webhook_id: int) -> None:
    """Turn a webhook back on after its receiver answered 410 Gone; new events reach it again.

    \b
    Example:
        syndicate webhook enable 2
    """
    hook = app.store.set_webhook_enabled(webhook_id, True)
    click.echo(f"webhook {hook.id} is on again: {hook.url} gets {', '.join(hook.events)}")


@webhook_group.command("log")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="How many attempts.")
@click.option("--webhook", "webhook_id", type=int, default=None, help="Only this webhook's attempts.")
@json_option()
@pass_app
def webhook_log(app: App, limit: int, webhook_id: int | None, as_json: bool) -> None:
    """Recent delivery attempts, newest first: event, URL, HTTP status or error, attempt number, time.

    \b
    Example:
        syndicate webhook log --limit 20
        syndicate webhook log --webhook 1 --json
    """
    attempts = app.store.webhook_attempts(limit, webhook_id)
    if as_json:
        emit_json([_attempt_dict(a) for a in attempts])
        return
    if not attempts:
        click.echo("no delivery attempts yet", err=True)
        return
    for a in attempts:
        answer = str(a.status_code) if a.status_code is not None else "-"
        line = (f"{to_iso(a.at)}  #{a.webhook_id:<3} {a.event:<13} try {a.attempt:<2}  {answer:>3}  "
                f"{a.outcome:<9} {a.url}")
        click.echo(line + (f"  ({a.error})" if a.error and a.outcome != "delivered" else ""))


@webhook_group.command("deliver")
@pass_app
def webhook_deliver(app: App) -> None:
    """One delivery pass: POST every due event, record each answer, schedule retries (for cron).

    Exits 1 when an event was given up (its lifetime ran out, or the receiver
    answered 410 Gone); a receiver that is only down is retried later, exit 0.

    \b
    Example:
        syndicate webhook deliver
    """
    from ..webhooks import deliver

    report = deliver(app.store, app.settings)
    click.echo(report.summary())
    if report.exit_code:
        sys.exit(report.exit_code)
