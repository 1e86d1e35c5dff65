"""``syndicate token ...``: the bearer tokens of the admin HTTP API."""

from __future__ import annotations

import click

from ..models import to_iso
from ..store.tokens import SCOPES, ApiToken
from . import App, emit_json, json_option, main, pass_app


def token_dict(t: ApiToken) -> dict[str, object]:
    return {"id": t.id, "public_id": t.public_id, "name": t.name, "scope": t.scope, "created": to_iso(t.created),
            "last_used": to_iso(t.last_used) if t.last_used else None,
            "revoked": to_iso(t.revoked) if t.revoked else None}


@main.group("token")
def token_group() -> None:
    """Make, list and revoke the tokens of the admin HTTP API (/api/v1).

    The API answers 404 until a token exists. Scopes: read (GET), write
    (create and change subscribers and articles), admin (also assert consent,
    erase people).

    \b
    Example:
        syndicate token create --name cms --scope write
        syndicate token ls
    """


@token_group.command("create")
@click.option("--name", required=True, help="What uses it, e.g. cms or signup-form.")
@click.option("--scope", type=click.Choice(SCOPES), required=True, help="read < write < admin.")
@json_option()
@pass_app
def token_create(app: App, name: str, scope: str, as_json: bool) -> None:
    """Make a token and print it once (only its sha256 is stored: copy it now).

    \b
    Example:
        syndicate token create --name cms --scope write
    """
    from ..api.auth import create_token

    token, secret = create_token(app.store, name, scope)
    if as_json:
        emit_json({**token_dict(token), "token": secret})
        return
    click.echo(secret)
    click.echo(f"created token {token.public_id} {token.name!r} with scope {token.scope}; it is shown only this once",
               err=True)


@token_group.command("ls")
@click.option("--all", "show_all", is_flag=True, help="Include revoked tokens.")
@json_option()
@pass_app
def token_ls(app: App, show_all: bool, as_json: bool) -> None:
    """List the tokens (never the secrets): id, name, scope, created, last used.

    \b
    Example:
        syndicate token ls --json
    """
    tokens = app.store.tokens(include_revoked=show_all)
    if as_json:
        emit_json([token_dict(t) for t in tokens])
        return
    for t in tokens:
        used = f"used {to_iso(t.last_used)}" if t.last_used else "never used"
        gone = f", revoked {to_iso(t.revoked)}" if t.revoked else ""
        click.echo(f"{t.public_id}  {t.scope:<6} {t.name:<24} created {to_iso(t.created)}, {used}{gone}")
    if not tokens:
        click.echo("no tokens: the API is off (syndicate token create --name N --scope read|write|admin)", err=True)


@token_group.command("revoke")
@click.argument("key")
@pass_app
def token_revoke(app: App, key: str) -> None:
    """Revoke a token by its id or name; it stops working at once.

    \b
    Example:
        syndicate token revoke cms
    """
    t = app.store.revoke_token(key)
    click.echo(f"revoked token {t.public_id} {t.name!r}")
    if not app.store.has_live_token():
        click.echo("no live tokens left: the API is off", err=True)
