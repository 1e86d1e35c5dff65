"""Suppressions made visible: ls, add, remove (recorded), and a provider's suppression CSV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicate import subscribers as lib
from syndicate import suppressions
from syndicate.cli import main
from syndicate.config import Settings
from syndicate.errors import InputError
from syndicate.models import NewsList
from syndicate.store import Store


@pytest.fixture
def lists(store: Store) -> tuple[NewsList, NewsList]:
    return (lib.create_list(store, NewsList(slug="tin-sang", name="Tin sáng")),
            lib.create_list(store, NewsList(slug="tuan", name="Tuần", cadence="weekly")))


def test_add_stops_every_list_and_remove_revives_nobody(store: Store, settings: Settings,
                                                       lists: tuple[NewsList, NewsList]) -> None:
    a = lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    b = lib.subscribe(store, settings, "an@example.org", "tuan", confirmed=True)
    assert suppressions.suppress(store, settings, "AN@example.org", "complained", actor="root") == 2
    assert {store.get_subscription_by_id(s.subscription.id or 0).status for s in (a, b)} == {"complained"}
    with pytest.raises(InputError, match="reason 'spam' is not one of bounced, complained, unsubscribed"):
        suppressions.suppress(store, settings, "an@example.org", "spam")
    with pytest.raises(InputError, match=r"an@example.org is suppressed \(complained\)"):
        lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)

    assert suppressions.unsuppress(store, settings, "an@example.org", actor="root") == "complained"
    assert {store.get_subscription_by_id(s.subscription.id or 0).status for s in (a, b)} == {"complained"}
    kinds = [(e.kind, e.actor, e.detail) for e in store.events_for(a.subscriber.id or 0)]
    assert kinds[-1] == ("unsuppress", "root", "suppression lifted by an admin (was complained)")
    assert ("complaint", "root", "suppressed by an admin (complained)") in kinds
    with pytest.raises(InputError, match=r"an@example.org is not suppressed \(see `syndicate suppression ls`\)"):
        suppressions.unsuppress(store, settings, "an@example.org")
    # back only by an explicit resubscribe
    assert lib.resubscribe(store, settings, "an@example.org", "tin-sang").subscription.status == "active"


def test_provider_csv_with_loose_headers(store: Store, settings: Settings, lists: tuple[NewsList, NewsList],
                                         tmp_path: Path) -> None:
    live = lib.subscribe(store, settings, "live@example.org", "tin-sang", confirmed=True)
    path = tmp_path / "sendgrid.csv"
    path.write_text(
        "\ufeffEmail Address,Suppression Type,created\n"
        "live@example.org,Spam Report,2026-11-01\n"
        "hard@example.net,Hard Bounce,2026-11-02\n"
        "quiet@example.net,,2026-11-03\n"
        "bob@,Bounce,2026-11-04\n"
        "odd@example.net,Weird²,2026-11-05\n"
        "HARD@example.net,bounce,2026-11-06\n",
        encoding="utf-8",
    )
    rep = suppressions.SuppressionImport(store, settings, path, batch_size=2).run()
    assert (rep.rows, rep.added, rep.already, rep.stopped, rep.errors) == (6, 3, 1, 1, 2)
    assert rep.first_errors == [
        f"{path} line 5: 'bob@' is not an email address: there must be something after the @-sign",
        f"{path} line 6: reason 'Weird²' is not one we know (bounce, complaint/spam, unsubscribe)",
    ]
    assert store.get_subscription_by_id(live.subscription.id or 0).status == "complained"
    got = {(s.email, s.reason) for s in suppressions.suppressions(store)}
    assert got == {("live@example.org", "complained"), ("", "bounced"), ("", "unsubscribed")}
    assert [s.reason for s in suppressions.suppressions(store, "bounced")] == ["bounced"]
    # an import of someone on the provider's list is skipped, and the suppression stays
    csv_in = tmp_path / "subs.csv"
    csv_in.write_text("email\nhard@example.net\n", encoding="utf-8")
    assert lib.import_csv(store, settings, csv_in, "tin-sang", confirmed=True).suppressed == 1
    assert store.suppression(lib.address_hash("hard@example.net")) == "bounced"
    nomail = tmp_path / "x.csv"
    nomail.write_text("name,reason\nAn,spam\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"x.csv line 1: no email column"):
        suppressions.SuppressionImport(store, settings, nomail).run()


def test_cli_suppression_commands(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng"])
    cli.invoke(main, ["subscriber", "add", "an@example.org", "--list", "tin-sang", "--confirmed"])
    cli.invoke(main, ["subscriber", "add", "gone@example.org", "--list", "tin-sang", "--confirmed"])
    cli.invoke(main, ["subscriber", "erase", "gone@example.org", "--yes"])
    added = cli.invoke(main, ["suppression", "add", "an@example.org", "--reason", "bounced"])
    assert added.exit_code == 0, added.output
    assert added.output == "suppressed an@example.org (bounced); 1 active subscription(s) stopped\n"
    listed = json.loads(cli.invoke(main, ["suppression", "ls", "--json"]).output)
    assert sorted((r["reason"], r["email"] or "") for r in listed) == [("bounced", "an@example.org"), ("erased", "")]
    text = cli.invoke(main, ["suppression", "ls", "--reason", "erased"]).output
    assert "erased        (erased) sha256:" in text and "gone" not in text
    shown = json.loads(cli.invoke(main, ["subscriber", "show", "an@example.org", "--json"]).output)
    assert shown["subscriptions"][0]["status"] == "bounced"
    removed = cli.invoke(main, ["suppression", "remove", "an@example.org"])
    assert removed.output == "lifted the suppression of an@example.org (was bounced); their subscriptions are unchanged\n"
    again = cli.invoke(main, ["suppression", "remove", "an@example.org"])
    assert again.exit_code == 65
    assert again.stderr == "error: an@example.org is not suppressed (see `syndicate suppression ls`)\n"
    (tmp_path / "ses.csv").write_text("email,reason\nx@example.org,BOUNCE\ny@example.org,COMPLAINT\nbad,x\n",
                                      encoding="utf-8")
    imported = cli.invoke(main, ["suppression", "import", "ses.csv"])
    assert imported.exit_code == 65
    assert imported.stdout == ("ses.csv: 3 rows; suppressed 2 addresses (0 active subscriptions stopped); "
                               "0 already suppressed; 1 errors\n")
    assert imported.stderr.startswith("error: ses.csv line 4: 'bad' is not an email address")


def test_provider_csv_unreadable_or_empty_is_named(store: Store, settings: Settings, tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"email,reason\nJos\xe9@example.org,bounce\n")
    with pytest.raises(InputError, match=r"latin.csv: not UTF-8 text \(invalid continuation byte\); save the file"):
        suppressions.SuppressionImport(store, settings, latin).run()
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty.csv: the file is empty; it needs a header row with an email column"):
        suppressions.SuppressionImport(store, settings, empty).run()
    with pytest.raises(InputError, match=r"missing.csv: no such file"):
        suppressions.SuppressionImport(store, settings, tmp_path / "missing.csv")
    assert list(suppressions.suppressions(store)) == []
