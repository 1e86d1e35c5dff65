"""``syndicate token create/ls/revoke`` on a real store file, and the token rules in the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicate.cli import main
from syndicate.errors import InputError
from syndicate.store import Store, open_store


def run(cli: CliRunner, *args: str) -> tuple[int, str, str]:
    r = cli.invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_create_prints_the_token_once_and_stores_only_its_hash(cli: CliRunner, tmp_path: Path) -> None:
    code, out, err = run(cli, "token", "create", "--name", "cms", "--scope", "write")
    assert code == 0
    token = out.strip()
    assert token.startswith("syn_") and len(token) == 4 + 8 + 1 + 43
    public_id = token.split("_")[1]
    assert err == f"created token {public_id} 'cms' with scope write; it is shown only this once\n"
    code, out, _ = run(cli, "token", "ls")
    assert token not in out and out.startswith(f"{public_id}  write  cms ") and "never used" in out
    listed = json.loads(run(cli, "token", "ls", "--json")[1])
    assert [(t["public_id"], t["name"], t["scope"], t["revoked"]) for t in listed] == [(public_id, "cms", "write", None)]
    with open_store(tmp_path / "syndicate.db") as store:
        assert isinstance(store, Store)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert store.token_for(public_id, token) is not None
        assert store.token_for(public_id, token[:-1] + "x") is None
    assert token.encode() not in (tmp_path / "syndicate.db").read_bytes()


def test_names_are_unique_among_live_tokens_and_revoke_takes_id_or_name(cli: CliRunner) -> None:
    first = run(cli, "token", "create", "--name", "cms", "--scope", "read")[1].strip()
    code, _, err = run(cli, "token", "create", "--name", "cms", "--scope", "admin")
    assert (code, err) == (65, "error: a token named 'cms' already exists; revoke it first or choose another --name\n")
    code, out, err = run(cli, "token", "revoke", "cms")
    assert (code, out) == (0, f"revoked token {first.split('_')[1]} 'cms'\n")
    assert err == "no live tokens left: the API is off\n"
    second = run(cli, "token", "create", "--name", "cms", "--scope", "admin")[1].strip()
    assert second != first
    code, _, err = run(cli, "token", "revoke", "cms-nope")
    assert (code, err) == (1, "error: no live token with id or name 'cms-nope' (see `syndicate token ls`)\n")
    assert run(cli, "token", "revoke", second.split("_")[1])[0] == 0
    assert run(cli, "token", "ls")[2] == "no tokens: the API is off (syndicate token create --name N --scope read|write|admin)\n"
    assert len(json.loads(run(cli, "token", "ls", "--all", "--json")[1])) == 2


def test_bad_names_and_scopes_are_refused(cli: CliRunner, store: Store) -> None:
    code, _, err = run(cli, "token", "create", "--name", "x", "--scope", "root")
    assert code == 2 and "'root' is not one of 'read', 'write', 'admin'" in err
    code, _, err = run(cli, "token", "create", "--name", "  ", "--scope", "read")
    assert (code, err) == (65, "error: a token needs a --name, e.g. --name cms\n")
    with pytest.raises(InputError, match="scope 'root' is not one of read, write, admin"):
        store.add_token("abcdef01", "x", "root", "syn_x")
