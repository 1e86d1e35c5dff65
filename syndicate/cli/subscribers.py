"""``syndicate list ...``, ``syndicate subscriber ...`` and ``syndicate stats``."""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any

import click

from .. import subscribers as lib
from ..models import CADENCES, SUBSCRIPTION_STATUSES, Event, NewsList, Subscriber, Subscription, to_iso
from ..subscriber_csv import CONSENT_FORMATS, CsvImport, consent_row, export_consent, export_csv
from . import App, emit_json, json_option, main, pass_app, progress


def _actor() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # pragma: no cover - no user name in this environment
        return ""


def _iso(value: Any) -> str | None:
    return to_iso(value) if value is not None else None


def list_dict(nl: NewsList) -> dict[str, object]:
    out = asdict(nl)
    out["created"] = _iso(nl.created)
    return out


def subscriber_dict(s: Subscriber) -> dict[str, object]:
    return {"id": s.id, "email": s.email, "name": s.name, "timezone": s.timezone, "locale": s.locale,
            "created": _iso(s.created)}


def subscription_dict(s: Subscription, slug: str = "") -> dict[str, object]:
    out = asdict(s)
    for key in ("created", "confirmed", "unsubscribed", "last_sent_at"):
        out[key] = _iso(out[key])
    if slug:
        out["list"] = slug
    return out


def event_dict(e: Event) -> dict[str, object]:
    out = asdict(e)
    out["at"] = _iso(e.at)
    return out


# -- lists -----------------------------------------------------------------------


def _list_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--name", help="Display name, e.g. 'Tin sáng'."),
        click.option("--description", help="One line shown on the subscribe page."),
        click.option("--sender-name", help="From: display name [default: mail.sender_name]."),
        click.option("--sender-address", help="From: address [default: mail.sender_address]."),
        click.option("--category", "categories", multiple=True, help="A category it covers (repeat); none = all."),
        click.option("--cadence", type=click.Choice(CADENCES), help="Default cadence."),
        click.option("--weekday", type=click.IntRange(0, 6), help="Weekday for weekly lists, 0 = Monday."),
        click.option("--send-hour", type=click.IntRange(0, 23), help="Default local hour to send."),
        click.option("--language", help="Language of its templates, e.g. vi or en."),
        click.option("--max-age-days", type=click.IntRange(1, 36500),
                     help="A digest never carries an article published longer ago than this [default: 7]."),
        click.option("--welcome/--no-welcome", default=None,
                     help="Send (or not) a welcome email once a subscription is confirmed [default: send]."),
    ]):
        f = opt(f)
    return f


@main.group("list")
def list_group() -> None:
    """Create, change, show and remove newsletters (lists).

    \b
    Example:
        syndicate list create tin-sang --name "Tin sáng" --cadence daily --send-hour 7
        syndicate list ls
    """


@list_group.command("create")
@click.argument("slug", required=False)
@_list_options
@click.option("--from", "from_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Create (or update) every [[list]] in a TOML file instead.")
@pass_app
def list_create(app: App, /, slug: str | None, from_file: Path | None, name: str | None, categories: tuple[str, ...],
                **options: Any) -> None:
    """Create a list, or every list described in a TOML file.

    \b
    Example:
        syndicate list create weekly-tech --name "Weekly tech" --cadence weekly --weekday 4 --language en
        syndicate list create --from data/lists.toml
    """
    if from_file is not None:
        for nl in lib.load_lists(app.store, from_file):
            click.echo(f"list {nl.slug}: {nl.name}")
        return
    if not slug:
        raise click.UsageError("give a SLUG (or --from FILE)")
    fields = {k: v for k, v in options.items() if v is not None}
    nl = lib.create_list(app.store, NewsList(slug=slug, name=name or "", categories=list(categories), **fields))
    click.echo(f"created list {nl.slug} ({nl.name}, {nl.cadence} at {nl.send_hour:02d}:00)")


@list_group.command("update")
@click.argument("slug")
@_list_options
@click.option("--track-clicks/--no-track-clicks", default=None,
              help="Count clicks per campaign link through a signed redirect on serve (no pixel; the footer says so).")
@click.option("--per-person-stats/--no-per-person-stats", default=None,
              help="With --track-clicks: also record who clicked.")
@pass_app
def list_update(app: App, /, slug: str, categories: tuple[str, ...], track_clicks: bool | None,
                per_person_stats: bool | None, **options: Any) -> None:
    """Change some fields of a list; options not given stay as they are.

    \b
    Example:
        syndicate list update tin-sang --send-hour 6 --category thoi-su --category kinh-te
        syndicate list update tin-sang --track-clicks
    """
    tracking = track_clicks is not None or per_person_stats is not None
    if tracking:  # checked before anything is written, set after the list's own checked update
        from .. import campaigns

        campaigns.check_tracking(app.store, slug, track_clicks=track_clicks, per_person_stats=per_person_stats)
    nl = lib.update_list(app.store, slug, categories=list(categories) if categories else None, **options)
    if tracking:
        campaigns.set_tracking(app.store, slug, track_clicks=track_clicks, per_person_stats=per_person_stats)
    click.echo(f"updated list {nl.slug}")


@list_group.command("show")
@click.argument("slug")
@json_option()
@pass_app
def list_show(app: App, slug: str, as_json: bool) -> None:
    """Show one list and how many subscribers it has.

    \b
    Example:
        syndicate list show tin-sang
    """
    nl = app.store.get_list(slug)
    assert nl.id is not None
    counts = {s: app.store.count_subscriptions(nl.id, s) for s in SUBSCRIPTION_STATUSES}
    if as_json:
        emit_json({**list_dict(nl), "subscriptions": counts})
        return
    for key, value in list_dict(nl).items():
        if key == "categories":
            value = ", ".join(nl.categories) or "(all)"
        click.echo(f"{key + ':':<16}{value}")
    click.echo(f"{'subscriptions:':<16}" + ", ".join(f"{n:,} {s}" for s, n in counts.items()))


@list_group.command("remove")
@click.argument("slug")
@click.option("--force", is_flag=True, help="Remove even if it still has active or pending subscribers.")
@pass_app
def list_remove(app: App, slug: str, force: bool) -> None:
    """Remove a list and its subscriptions (the subscribers stay).

    \b
    Example:
        syndicate list remove old-list --force
    """
    nl = lib.remove_list(app.store, slug, force=force)
    click.echo(f"removed list {nl.slug}")


@list_group.command("ls")
@json_option()
@pass_app
def list_ls(app: App, as_json: bool) -> None:
    """List every list.

    \b
    Example:
        syndicate list ls --json
    """
    lists = app.store.all_lists()
    if as_json:
        emit_json([list_dict(nl) for nl in lists])
        return
    for nl in lists:
        when = nl.cadence if nl.cadence == "daily" else f"weekly/{nl.weekday}"
        click.echo(f"{nl.slug:<20} {when:<9} {nl.send_hour:02d}:00  {nl.language:<3} {nl.name}")
    if not lists:
        click.echo("no lists yet (syndicate list create SLUG --name NAME)", err=True)


# -- subscribers -----------------------------------------------------------------


@main.group("subscriber")
def subscriber_group() -> None:
    """Add, show, unsubscribe, erase, import and export subscribers.

    \b
    Example:
        syndicate subscriber add an@example.org --list tin-sang --confirmed
        syndicate subscriber import data/subscribers.csv --list tin-sang --confirmed
    """


@subscriber_group.command("add")
@click.argument("email")
@click.option("--list", "list_slug", required=True, help="The list's slug.")
@click.option("--name", default="", help="Display name.")
@click.option("--timezone", help="IANA time zone, e.g. Asia/Ho_Chi_Minh [default: site timezone].")
@click.option("--category", "categories", multiple=True, help="Only these categories of the list (repeat).")
@click.option("--confirmed", is_flag=True, help="Consent already given: active now, no confirmation mail.")
@click.option("--resubscribe", is_flag=True, help="Bring back an address that left or was suppressed (recorded).")
@click.option("--no-email", is_flag=True, help="Do not send the confirmation email; just print its link.")
@json_option()
@pass_app
def subscriber_add(app: App, email: str, list_slug: str, name: str, timezone: str | None,
                   categories: tuple[str, ...], confirmed: bool, resubscribe: bool, no_email: bool,
                   as_json: bool) -> None:
    """Subscribe an address to a list: pending (double opt-in) unless --confirmed.

    A pending subscriber's confirmation email is queued in the outbox and sent
    at once (through SMTP, or the Maildir when no SMTP host is set); if the
    relay fails it stays queued and the next `syndicate send` retries it. The
    subscription turns active when its link is followed. Confirming a pending
    subscriber (--confirmed) sends the list's welcome email.

    \b
    Example:
        syndicate subscriber add lan@example.org --list tin-sang --name "Lan" --timezone Asia/Ho_Chi_Minh
    """
    r = lib.subscribe(app.store, app.settings, email, list_slug, name=name, timezone=timezone,
                      categories=list(categories) or None, confirmed=confirmed, resubscribe=resubscribe,
                      source="cli", actor=_actor())
    from ..sender import NoticeOutcome, deliver_notices, notify

    link = ""
    notices: list[NoticeOutcome] = []
    assert r.subscriber.id is not None and r.newslist.id is not None and r.subscription.id is not None
    if r.subscription.status == "pending":
        issued = None  # the email's link is dated when its row was queued: print that very link
        if not no_email:
            notices.append(notify(app.store, app.settings, "confirm", r.subscription.id))
            if notices[-1].delivery_id is not None:
                issued = app.store.get_delivery(notices[-1].delivery_id).created
        link = lib.confirm_url(app.settings, r.subscriber.id, r.newslist.id, r.subscriber.email, issued=issued)
    else:  # a welcome email the confirmation queued
        notices = deliver_notices(app.store, app.settings, [r.subscription.id])
    if as_json:
        emit_json({"subscriber": subscriber_dict(r.subscriber), "subscription": subscription_dict(r.subscription),
                   "created": r.created, "confirm_url": link,
                   "confirmation_message_id": next((n.message_id for n in notices if n.kind == "confirm"), ""),
                   "notices": [asdict(n) for n in notices]})
        return
    state = "added" if r.created else "already"
    click.echo(f"{state} {r.subscriber.email} on {r.newslist.slug}: {r.subscription.status}")
    for n in notices:
        click.echo(n.describe(via=app.settings.transport))
    if link:
        click.echo(f"confirm link: {link}")


@subscriber_group.command("show")
@click.argument("email")
@json_option()
@pass_app
def subscriber_show(app: App, email: str, as_json: bool) -> None:
    """Show a subscriber, their subscriptions, their proof of consent and their history.

    For each subscription: when and how it was asked (form, import or admin;
    the IP and browser for the web form; the list's wording version), when
    and how it was confirmed, and the confirmation email's Message-ID.

    \b
    Example:
        syndicate subscriber show an@example.org
    """
    rep = lib.describe(app.store, email)
    status = {slug: sub.status for sub, slug in rep.subscriptions}
    if as_json:
        emit_json({"subscriber": subscriber_dict(rep.subscriber),
                   "subscriptions": [subscription_dict(s, slug) for s, slug in rep.subscriptions],
                   "consent": [consent_row(rep.subscriber.email, slug, status.get(slug, ""), rec)
                               for slug, rec in rep.consent],
                   "events": [event_dict(e) for e in rep.events]})
        return
    s = rep.subscriber
    click.echo(f"{s.email}  {s.name}".rstrip())
    click.echo(f"  id {s.id}, timezone {s.timezone}, locale {s.locale}, since {_iso(s.created)}")
    click.echo("subscriptions:")
    for sub, slug in rep.subscriptions:
        cats = ",".join(sub.categories) or "all"
        click.echo(f"  {slug:<20} {sub.status:<12} {sub.cadence} at {sub.send_hour:02d}:00, topics {cats}")
    click.echo("consent:")
    for slug, rec in rep.consent:
        click.echo(f"  {slug:<20} asked {_iso(rec.asked_at)} {_how(rec.asked_via, rec.asked_source, rec.asked_ip, rec.asked_user_agent)}"
                   f"{', wording ' + rec.wording if rec.wording else ''}")
        pad = " " * 23
        if rec.confirmed_at is None:
            click.echo(f"{pad}not confirmed yet")
        else:
            click.echo(f"{pad}confirmed {_iso(rec.confirmed_at)} "
                       f"{_how(rec.confirmed_via, '', rec.confirmed_ip, rec.confirmed_user_agent)}")
        if rec.confirmation_message_id:
            click.echo(f"{pad}confirmation email {rec.confirmation_message_id}")
    click.echo("history:")
    for e in rep.events:
        who = f" by {e.actor}" if e.actor else ""
        detail = f" ({e.detail})" if e.detail else ""
        click.echo(f"  {_iso(e.at)}  {e.kind:<12} via {e.source}{who}{detail}")


def _how(via: str, source: str, ip: str, user_agent: str) -> str:
    text = f"via {via or 'unknown'}" + (f" ({source})" if source and source != via else "")
    if ip:
        text += f" from {ip}"
    if user_agent:
        text += ", " + json.dumps(user_agent, ensure_ascii=False)
    return text


@subscriber_group.command("consent")
@click.option("--list", "list_slug", required=True, help="The list's slug.")
@click.option("--format", "fmt", type=click.Choice(CONSENT_FORMATS), default="csv", show_default=True,
              help="CSV (formula cells neutralised) or JSON Lines.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write [default: stdout].")
@pass_app
def subscriber_consent(app: App, list_slug: str, fmt: str, output: Path | None) -> None:
    """Export the proof of consent of every subscription of a list, for an auditor.

    One row per subscription: email, status, when and how it was asked
    (form/import/admin, IP and user agent, wording version), when and how it
    was confirmed, and the confirmation email's Message-ID.

    \b
    Example:
        syndicate subscriber consent --list tin-sang --format jsonl -o consent.jsonl
    """
    if output is None:
        export_consent(app.store, sys.stdout, list_slug, fmt=fmt)
        return
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        n = export_consent(app.store, fh, list_slug, fmt=fmt)
    tmp.replace(output)
    click.echo(f"wrote {n:,} consent records to {output}", err=True)


@subscriber_group.command("ls")
@click.option("--list", "list_slug", help="Only this list.")
@click.option("--status", type=click.Choice(SUBSCRIPTION_STATUSES), help="Only this status.")
@click.option("--limit", default=50, show_default=True, help="At most this many rows (0 = all).")
@json_option()
@pass_app
def subscriber_ls(app: App, list_slug: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List subscribers with their subscriptions, oldest first.

    Past ``--limit`` a last line (on stderr) says how many more rows there are;
    ``--json`` gives ``{"total": N, "rows": [...]}``.

    \b
    Example:
        syndicate subscriber ls --list tin-sang --status active --limit 20
    """
    list_id = app.store.get_list(list_slug).id if list_slug else None
    total = app.store.count_subscription_rows(list_id, status)
    rows = app.store.iter_subscriptions(list_id, status)
    if limit:
        rows = islice(rows, limit)
    if as_json:
        emit_json({"total": total, "rows": [
            {**subscriber_dict(p), "subscription": subscription_dict(s, slug) if s else None} for p, s, slug in rows
        ]})
        return
    shown = 0
    for p, s, slug in rows:
        shown += 1
        click.echo(f"{p.email:<40} {slug or '-':<18} {s.status if s else '-':<12} {p.timezone:<22} {p.name}")
    if total > shown:
        click.echo(f"… and {total - shown:,} more; use --limit N (0 = all) or --json", err=True)


@subscriber_group.command("unsubscribe")
@click.argument("email")
@click.option("--list", "list_slug", help="Only from this list [default: every list].")
@pass_app
def subscriber_unsubscribe(app: App, email: str, list_slug: str | None) -> None:
    """Unsubscribe an address at once; queued digests for it are cancelled.

    \b
    Example:
        syndicate subscriber unsubscribe an@example.org --list tin-sang
    """
    subs = lib.unsubscribe_address(app.store, app.settings, email, list_slug, source="cli", actor=_actor())
    click.echo(f"unsubscribed {email.strip()} from {len(subs)} list(s)")


@subscriber_group.command("resubscribe")
@click.argument("email")
@click.option("--list", "list_slug", required=True, help="The list's slug.")
@pass_app
def subscriber_resubscribe(app: App, email: str, list_slug: str) -> None:
    """Make an address that left (or was suppressed) active again; recorded as an event.

    Only do this when the person asked to come back.

    \b
    Example:
        syndicate subscriber resubscribe an@example.org --list tin-sang
    """
    r = lib.resubscribe(app.store, app.settings, email, list_slug, source="cli", actor=_actor())
    click.echo(f"{r.subscriber.email} is {r.subscription.status} on {r.newslist.slug}")


@subscriber_group.command("erase", short_help="Erase a person everywhere, keeping only a hashed suppression.")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def subscriber_erase(app: App, email: str, yes: bool) -> None:
    """Erase a person (GDPR art. 17): their subscriber row, subscriptions and queued
    mail are deleted; their history events are kept for counts but lose the
    actor, the detail and any link to them; only a sha256 hash of the address is
    kept, as a suppression, so a later import skips it. Freed bytes are
    overwritten and the write-ahead log is emptied; what the store cannot reach
    (copies in a Maildir, digests already with a relay) is named.

    \b
    Example:
        syndicate subscriber erase an@example.org --yes
    """
    if not yes:
        click.confirm(f"erase {email.strip()} everywhere? This cannot be undone", abort=True)
    rep = lib.erase(app.store, app.settings, email, source="cli", actor=_actor())
    click.echo(f"erased {email.strip()} ({rep.subscriptions} subscription(s)); kept only a hashed suppression entry")
    for line in rep.unreachable:
        click.echo(f"not reached: {line}")


@subscriber_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_slug", help="The list to add them to (or a 'list' column in the file).")
@click.option("--confirmed", is_flag=True, help="They already consented: make them active (else pending).")
@click.option("--resubscribe", is_flag=True, help="Also bring back addresses that left or are suppressed.")
@click.option("--dry-run", is_flag=True, help="Check every row and report, but write nothing.")
@click.option("--no-confirmation-email", is_flag=True,
              help="Do not queue the confirmation email for rows imported as pending.")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write rejected and skipped rows here, with a reason column.")
@json_option("Print the report as JSON.")
@pass_app
def subscriber_import(app: App, file: Path, list_slug: str | None, confirmed: bool, resubscribe: bool,
                      dry_run: bool, no_confirmation_email: bool, errors_path: Path | None, as_json: bool) -> None:
    """Import subscribers from CSV (streamed, in batches of 5,000, one transaction each).

    Headers understood: email / Email Address, name / First Name + Last Name,
    timezone, locale, cadence, send_hour, weekday, categories, status, and
    listmonk's attributes (JSON). Duplicates, addresses already on the list and
    suppressed addresses are skipped; bad rows are named by line number. Each
    row imported as pending gets the confirmation email, queued in the outbox
    batch by batch and sent by the next `syndicate send` (unless
    --no-confirmation-email).

    \b
    Example:
        syndicate subscriber import data/subscribers.csv --list tin-sang --confirmed --errors rejects.csv
    """
    job = CsvImport(app.store, app.settings, file, list_slug, confirmed=confirmed, resubscribe=resubscribe,
                        dry_run=dry_run, errors_path=errors_path, actor=_actor(),
                        confirmation_email=not no_confirmation_email)
    with progress(job, job.estimated_batches(), "importing") as batches:
        for _ in batches:
            pass
    rep = job.report
    if as_json:
        emit_json({**asdict(rep), "skipped": rep.skipped})
    else:
        click.echo(rep.summary())
    if rep.errors:
        from ..errors import InputError

        raise InputError(rep.error_message())


@subscriber_group.command("export")
@click.option("--list", "list_slug", help="Only this list.")
@click.option("--status", type=click.Choice(SUBSCRIPTION_STATUSES), help="Only this status.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write [default: stdout].")
@pass_app
def subscriber_export(app: App, list_slug: str | None, status: str | None, output: Path | None) -> None:
    """Export subscriptions as CSV that `subscriber import` reads back losslessly.

    \b
    Example:
        syndicate subscriber export --list tin-sang --status active -o tin-sang.csv
    """
    if output is None:
        n = export_csv(app.store, sys.stdout, list_slug=list_slug, status=status)
    else:
        tmp = output.with_name(output.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            n = export_csv(app.store, fh, list_slug=list_slug, status=status)
        tmp.replace(output)
        click.echo(f"wrote {n:,} rows to {output}", err=True)


@subscriber_group.command("purge-pending")
@click.option("--older-than", "days", type=int, help="Age in days [default: mail.pending_max_age_days].")
@pass_app
def subscriber_purge_pending(app: App, days: int | None) -> None:
    """Delete pending subscriptions never confirmed in time (an event is kept for each).

    \b
    Example:
        syndicate subscriber purge-pending --older-than 7
    """
    n = lib.purge_pending(app.store, app.settings, older_than_days=days, source="cli", actor=_actor())
    click.echo(f"purged {n:,} pending subscription(s)")


# -- stats -----------------------------------------------------------------------


@main.command("stats")
@click.option("--days", default=30, show_default=True, help="Growth over this many days.")
@json_option()
@pass_app
def stats(app: App, days: int, as_json: bool) -> None:
    """Subscribers per list by status, and growth (joined minus left) over recent days.

    \b
    Example:
        syndicate stats --days 30
    """
    rows = lib.stats(app.store, days=days)
    if as_json:
        emit_json([{**asdict(r), "growth": r.growth} for r in rows])
        return
    click.echo(f"{'list':<20} {'active':>9} {'pending':>9} {'unsub':>9} {'bounced':>9} {'complaint':>9} "
               f"{'growth ' + str(days) + 'd':>11}")
    for r in rows:
        click.echo(f"{r.slug:<20} {r.active:>9,} {r.pending:>9,} {r.unsubscribed:>9,} {r.bounced:>9,} "
                   f"{r.complained:>9,} {r.growth:>+11,}")
