"""``syndicate check`` and ``syndicate dkim``: preflight for a real domain, and its DKIM keys."""

from __future__ import annotations

import os
from pathlib import Path

import click

from . import App, emit_json, json_option, main, pass_app


@main.command()
@click.option("--port", "serve_port", default=8080, show_default=True, type=int,
              help="The port `syndicate serve` listens on (compared with base_url).")
@json_option()
@pass_app
def check(app: App, serve_port: int, as_json: bool) -> None:
    """Check the settings before sending real mail: one line per finding, each with its fix.

    Looks at base_url, the sender and return-path domains, DKIM (key present,
    readable, long enough, aligned with every list's From domain), the postal
    address, the secret key, file permissions and the templates of each
    list's language. Exits 1 when any finding is an error.

    \b
    Example:
        syndicate check
        syndicate check --port 8080 --json
    """
    from ..config import config_path
    from ..preflight import Finding, run_checks
    from ..store import open_store

    cfg, _ = config_path(app.config, os.environ)
    settings = app.settings
    found: list[Finding] = []
    if not cfg.exists():
        found.append(Finding("warning", "no-config", f"no config file {cfg}: only defaults and SYNDICATE_* variables apply",
                             "run `syndicate init` to write one"))
    db = Path(settings.db)
    lists = []
    if db.exists():
        store = open_store(db, migrate=False)
        try:
            lists = store.all_lists()
        finally:
            store.close()
    else:
        found.append(Finding("error", "no-database", f"database {db} does not exist", "run `syndicate init`"))
    found += run_checks(settings, lists, config_file=cfg if cfg.exists() else None,
                        db_file=db if db.exists() else None, serve_port=serve_port)
    found.sort(key=lambda f: f.level != "error")
    errors = sum(f.level == "error" for f in found)
    if as_json:
        emit_json({"ok": errors == 0, "findings": [f.as_dict() for f in found]})
    else:
        for f in found:
            click.echo(f.line())
        warnings = len(found) - errors
        click.echo(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
                   + ("" if found else ": ready for a real domain"))
    if errors:
        raise click.exceptions.Exit(1)


@main.group()
def dkim() -> None:
    """Make a DKIM key and print the DNS records (DKIM, SPF, DMARC) to publish.

    \b
    Example:
        syndicate dkim keygen --domain example.org
        syndicate dkim dns
    """


@dkim.command()
@click.option("--type", "kind", type=click.Choice(["rsa", "ed25519"]), default="rsa", show_default=True,
              help="RSA-2048 (every receiver) or Ed25519 (RFC 8463, smaller; receivers that lack it ignore it).")
@click.option("--domain", help="Signing domain d= [default: [dkim] domain, else the sender address's domain].")
@click.option("--selector", help="Selector s= [default: [dkim] selector, else 'syndicate'; "
                                 "'syndicate-<type>' for a second key of a domain].")
@click.option("--out", "out", help="Key file [default: the configured one, else dkim-<type>.pem beside the config].")
@click.option("--force", is_flag=True, help="Replace an existing key file (publish the new DNS record first).")
@pass_app
def keygen(app: App, kind: str, domain: str | None, selector: str | None, out: str | None, force: bool) -> None:
    """Write a new DKIM private key (mode 0600) and record it in the config.

    The first key goes in [dkim]. A key of the other type for the same domain
    (both sign: RSA for every receiver, Ed25519 for RFC 8463 ones), or a key
    for another domain (a list whose From address is there), is added as a
    [[dkim.keys]] entry; a configured key whose file is missing is written.

    \b
    Example:
        syndicate dkim keygen --domain example.org --selector news2026
        syndicate dkim keygen --type ed25519
        syndicate dkim keygen --domain other.example.net
    """
    from ..config import add_config_table, config_path, set_config_keys
    from ..mailer.dkimkeys import generate_key, keygen_target, write_key

    cfg, _ = config_path(app.config, os.environ)
    target = keygen_target(app.settings, kind, cfg.parent, domain=domain, selector=selector, out=out)
    key = target.config
    path = Path(key.key_file)
    write_key(path, generate_key(kind), overwrite=force)
    click.echo(f"wrote {path} ({'RSA-2048' if kind == 'rsa' else 'Ed25519'}, mode 0600) for "
               f"{key.selector}._domainkey.{key.domain}")
    entry = {"domain": key.domain, "selector": key.selector, "key_file": key.key_file}
    if target.new_entry and cfg.exists():
        add_config_table(cfg, "dkim.keys", entry)
        click.echo(f"added [[dkim.keys]] {', '.join(f'{k} = {v!r}' for k, v in entry.items())} to {cfg}")
    elif target.new_entry:
        click.echo(f"no config file {cfg}: set SYNDICATE_DKIM_KEYS='[{{"
                   + ", ".join(f'{k} = "{v}"' for k, v in entry.items()) + "}]' (or add a [[dkim.keys]] table to a config)")
    elif target.dkim_changes and cfg.exists():
        set_config_keys(cfg, "dkim", target.dkim_changes)
        click.echo(f"set [dkim] {', '.join(f'{k} = {v!r}' for k, v in target.dkim_changes.items())} in {cfg}")
    elif target.dkim_changes:
        click.echo(f"no config file {cfg}: set SYNDICATE_DKIM_KEY_FILE={path} SYNDICATE_DKIM_DOMAIN={key.domain} "
                   f"SYNDICATE_DKIM_SELECTOR={key.selector}")
    click.echo("next: publish the records `syndicate dkim dns` prints, then run `syndicate check`")


@dkim.command()
@click.option("--report-to", default="", help="Address for DMARC aggregate reports (rua=).")
@json_option()
@pass_app
def dns(app: App, report_to: str, as_json: bool) -> None:
    """Print the TXT records to publish: DKIM at selector._domainkey.domain for every key, SPF and DMARC.

    \b
    Example:
        syndicate dkim dns
        syndicate dkim dns --report-to dmarc@example.org --json
    """
    from ..mailer.dkimkeys import configured_dns_records

    records = configured_dns_records(app.settings, report_to=report_to)
    if as_json:
        emit_json([{"name": r.name, "type": r.type, "value": r.value, "purpose": r.purpose} for r in records])
        return
    for r in records:
        click.echo(f"; {r.purpose}")
        click.echo(r.zone_line())
    click.echo("; SPF: add include:<your relay> if mail leaves through a provider; "
               "DMARC: move to p=quarantine once reports show everything aligned")
