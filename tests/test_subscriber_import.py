"""CSV import and export: bad rows named, duplicates and suppressed skipped, lossless round trip, flat memory."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tracemalloc
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
    listed = json.loads(cli.invoke(main, ["subscriber", "ls", "--json"]).output)
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
    lib.import_csv(store, settings, lm, "tin-sang")
    lan = store.get_subscriber("lan@example.org")
    assert (lan.email, lan.name, lan.timezone) == ("Lan@example.org", "Lan Phạm", "Asia/Tokyo")
    minh = store.get_subscriber("minh@example.org")
    assert (minh.name, minh.timezone, minh.locale) == ("Minh", "Europe/Berlin", "en")
    assert statuses(store, tin_sang.id or 0) == {
        "Lan@example.org": "active", "minh@example.org": "pending", "blocked@example.org": "unsubscribed"
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
    dry = cli.invoke(main, ["subscriber", "import", str(DATA / "subscribers.csv"), "--dry-run"])
    assert dry.exit_code == 0 and "would add 10 subscriptions" in dry.output
    assert json.loads(cli.invoke(main, ["subscriber", "ls", "--json"]).output) == []
    cli.invoke(main, ["subscriber", "import", str(DATA / "subscribers.csv"), "--confirmed"])
    table = cli.invoke(main, ["stats"]).output.splitlines()
    assert table[0].split() == ["list", "active", "pending", "unsub", "bounced", "complaint", "growth", "30d"]
    assert table[1].split() == ["tin-sang", "3", "1", "1", "0", "0", "+3"]
    assert table[2].split() == ["weekly-tech", "5", "0", "0", "0", "0", "+5"]
