"""Lists (newsletters): create, update, show, remove, ls; checks on their fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicate import subscribers as lib
from syndicate.cli import main
from syndicate.config import Settings
from syndicate.errors import InputError, NotFound
from syndicate.models import NewsList
from syndicate.store import Store

DATA = Path(__file__).resolve().parent.parent / "data"


def test_create_and_read_back(store: Store) -> None:
    made = lib.create_list(store, NewsList(
        slug="weekly-tech", name="  Weekly   tech ", sender_address="News@Example.ORG",
        categories=["Công nghệ", "khoi-nghiep", "Công nghệ"], cadence="weekly", weekday=4, send_hour=9, language="en",
    ))
    got = store.get_list("weekly-tech")
    assert got == made
    assert (got.name, got.sender_address, got.categories) == ("Weekly tech", "News@example.org",
                                                              ["cong-nghe", "khoi-nghiep"])
    assert [nl.slug for nl in store.all_lists()] == ["weekly-tech"]
    assert store.get_list_by_id(got.id or 0).slug == "weekly-tech"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"slug": "Tin Sáng"}, "list slug 'Tin Sáng' must be lower-case ASCII words joined by '-', e.g. 'tin-sang'"),
        ({"name": " "}, "list 'tin-sang' needs a --name"),
        ({"cadence": "hourly"}, "cadence 'hourly' is not one of daily, weekly"),
        ({"send_hour": 24}, "send hour 24 is not between 0 and 23"),
        ({"weekday": 7}, "weekday 7 is not between 0 (Monday) and 6 (Sunday)"),
        ({"sender_address": "news@"}, "'news@' is not an email address: there must be something after the @-sign"),
    ],
)
def test_bad_fields_are_named(store: Store, fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"slug": "tin-sang", "name": "Tin sáng", **fields}
    with pytest.raises(InputError) as info:
        lib.create_list(store, NewsList(**base))  # type: ignore[arg-type]
    assert str(info.value) == message
    assert store.all_lists() == []


def test_duplicate_slug(store: Store) -> None:
    lib.create_list(store, NewsList(slug="tin-sang", name="Tin sáng"))
    with pytest.raises(InputError, match="a list with slug 'tin-sang' already exists"):
        lib.create_list(store, NewsList(slug="tin-sang", name="Again"))


def test_update_and_remove(store: Store, settings: Settings) -> None:
    lib.create_list(store, NewsList(slug="tin-sang", name="Tin sáng"))
    nl = lib.update_list(store, "tin-sang", send_hour=6, categories=["Thời sự"], name=None)
    assert (nl.send_hour, nl.categories, nl.name) == (6, ["thoi-su"], "Tin sáng")
    assert store.get_list("tin-sang").send_hour == 6
    lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    with pytest.raises(InputError, match="still has 1 active or pending subscribers; add --force"):
        lib.remove_list(store, "tin-sang")
    lib.remove_list(store, "tin-sang", force=True)
    with pytest.raises(NotFound, match="no list with slug 'tin-sang' \\(see `syndicate list ls`\\)"):
        store.get_list("tin-sang")
    assert store.subscriptions_of(store.get_subscriber("an@example.org").id or 0) == []


def test_sample_lists_load(store: Store) -> None:
    lists = lib.load_lists(store, DATA / "lists.toml")
    assert {nl.slug for nl in lists} == {"tin-sang", "weekly-tech"}
    assert store.get_list("tin-sang").name == "Tin sáng"
    assert store.get_list("weekly-tech").cadence == "weekly"
    # loading again updates instead of failing
    assert len(lib.load_lists(store, DATA / "lists.toml")) == 2


def test_cli_list_commands(cli: CliRunner) -> None:
    made = cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng", "--send-hour", "6",
                             "--category", "Thời sự"])
    assert made.output == "created list tin-sang (Tin sáng, daily at 06:00)\n"
    assert cli.invoke(main, ["list", "create", "--from", str(DATA / "lists.toml")]).exit_code == 0
    listed = json.loads(cli.invoke(main, ["list", "ls", "--json"]).output)
    assert [x["slug"] for x in listed] == ["tin-sang", "weekly-tech"]
    assert cli.invoke(main, ["list", "update", "weekly-tech", "--weekday", "0"]).exit_code == 0
    shown = json.loads(cli.invoke(main, ["list", "show", "weekly-tech", "--json"]).output)
    assert shown["weekday"] == 0 and shown["subscriptions"]["active"] == 0
    assert "Weekly tech" in cli.invoke(main, ["list", "show", "weekly-tech"]).output
    bad = cli.invoke(main, ["list", "create", "x", "--name", "X", "--sender-address", "nope"])
    assert bad.exit_code == 65 and bad.stderr.startswith("error: 'nope' is not an email address")
    assert cli.invoke(main, ["list", "remove", "weekly-tech"]).output == "removed list weekly-tech\n"
    missing = cli.invoke(main, ["list", "show", "weekly-tech"])
    assert missing.exit_code == 1
    assert missing.stderr == "error: no list with slug 'weekly-tech' (see `syndicate list ls`)\n"
