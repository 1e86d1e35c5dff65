"""A full build split across processes (``jobs``): the same bytes as one process, and all or nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicate.cli import main
from syndicate.config import Settings
from syndicate.models import Article
from syndicate.publish import BuildError, publish_all
from syndicate.store import Store

NOW = datetime(2024, 5, 20, 12, 0, tzinfo=UTC)
CATEGORIES = ["Kinh tế", "Thể thao", "Y tế"]


def art(i: int, published: datetime, **changes: object) -> Article:
    values: dict[str, object] = dict(
        guid=f"g{i}", title=f"Bài số {i}", slug=f"bai-{i}", published=published,
        body_html=f"<p>Nội dung {i} &amp; <b>thêm</b></p>", summary=f"Tóm tắt {i} <3",
        category=CATEGORIES[i % 3], author="Phóng viên",
    )
    values.update(changes)
    return Article(**values)  # type: ignore[arg-type]


def fill(store: Store) -> None:
    """January to the open month (May), unevenly: 40 articles in January, a few in the others."""
    days = [1 + i % 28 for i in range(40)]
    articles = [art(i, datetime(2024, 1, d, 8, tzinfo=UTC) + timedelta(minutes=i)) for i, d in enumerate(days)]
    articles += [art(100 + i, datetime(2024, 2 + i % 4, 3 + i, 9, tzinfo=UTC)) for i in range(12)]
    articles.append(art(200, NOW + timedelta(days=3)))  # embargoed: in no feed, no page
    store.upsert_articles(articles)


def tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Relative path -> (bytes, inode, mtime_ns) of every file under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (p.read_bytes(), st.st_ino, st.st_mtime_ns)
    return out


def test_jobs_1_and_2_build_the_same_bytes(store: Store, settings: Settings, tmp_path: Path) -> None:
    fill(store)
    one = publish_all(store, settings, tmp_path / "one", now=NOW, ping=False, jobs=1)
    two = publish_all(store, settings, tmp_path / "two", now=NOW, ping=False, jobs=2)
    three = publish_all(store, settings, tmp_path / "three", now=NOW, ping=False, jobs=3)
    bytes_one = {rel: data for rel, (data, _i, _m) in tree(tmp_path / "one").items()}
    assert "feeds/atom/2024-01.xml" in bytes_one and "articles/bai-0/index.html" in bytes_one
    assert "articles/bai-200/index.html" not in bytes_one
    for other in ("two", "three"):
        assert {rel: data for rel, (data, _i, _m) in tree(tmp_path / other).items()} == bytes_one
    assert one.written == two.written == three.written  # the same report, in the same order
    again = publish_all(store, settings, tmp_path / "two", now=NOW, ping=False, jobs=2)
    assert again.written == [] and sorted(again.unchanged) == sorted(one.written)


def test_a_failing_worker_leaves_the_previous_site_untouched(store: Store, settings: Settings, tmp_path: Path) -> None:
    fill(store)
    out = tmp_path / "site"
    publish_all(store, settings, out, now=NOW, ping=False, jobs=1)
    store.upsert_articles([art(7, datetime(2024, 1, 9, 10, tzinfo=UTC), title="Bài số 7 (sửa)"),
                           art(300, datetime(2024, 1, 12, 10, tzinfo=UTC))])
    (out / "articles/bai-300").write_bytes(b"in the way")  # a file where the new page's folder goes
    before = tree(out)
    # January (the largest month, where bai-300 is) goes to the worker: the caller starts with the
    # subscription feeds.
    with pytest.raises(BuildError) as failed:
        publish_all(store, settings, out, now=NOW, ping=False, jobs=2)
    assert str(failed.value) == (
        f"cannot write {out}/articles/bai-300/index.html: Not a directory; nothing in {out}/ was changed"
    )
    assert "worker_main" in "".join(failed.value.__cause__.__notes__)  # it was the worker's failure
    assert tree(out) == before  # every byte, inode and mtime as it was; no temp file left
    (out / "articles/bai-300").unlink()
    report = publish_all(store, settings, out, now=NOW, ping=False, jobs=2)
    assert {"articles/bai-300/index.html", "articles/bai-7/index.html", "feeds/atom/2024-01.xml"} <= set(report.written)


def test_a_failing_caller_stops_its_workers(store: Store, settings: Settings, tmp_path: Path) -> None:
    fill(store)
    out = tmp_path / "site"
    publish_all(store, settings, out, now=NOW, ping=False, jobs=2)
    store.upsert_articles([art(400, datetime(2024, 1, 15, 10, tzinfo=UTC), category="Du lịch")])
    (out / "category").mkdir(exist_ok=True)
    (out / "category/du-lich").write_bytes(b"in the way")  # the new category's feeds cannot be written
    before = tree(out)
    with pytest.raises(BuildError) as failed:
        publish_all(store, settings, out, now=NOW, ping=False, jobs=2)
    assert re.fullmatch(
        rf"cannot write {re.escape(str(out))}/category/du-lich/\S+: Not a directory; nothing in {re.escape(str(out))}/ "
        "was changed", str(failed.value)
    )
    assert tree(out) == before


def test_a_write_as_the_workers_start_restarts_from_one_state(
    store: Store, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer changes the store after the caller's snapshot, before a worker opens its own:
    the worker sees another change counter and the build starts again from the new state, so the
    site never holds January's new article in its pages but not in its feeds (or the reverse)."""
    from syndicate import site_build
    from syndicate.store import open_store

    fill(store)
    started: list[int] = []
    real_init = site_build._Worker.__init__

    def concurrent_write(self: site_build._Worker, job: site_build.WorkerJob) -> None:
        if not started:  # the first attempt only: a writer elsewhere, on its own connection
            with open_store(settings.db) as other:
                other.upsert_articles([art(500, datetime(2024, 1, 20, 10, tzinfo=UTC))])
        started.append(job.counter)
        real_init(self, job)

    monkeypatch.setattr(site_build._Worker, "__init__", concurrent_write)
    report = publish_all(store, settings, tmp_path / "two", now=NOW, ping=False, jobs=2)
    assert len(started) == 2 and started[0] != started[1]  # the second try took the new state
    monkeypatch.setattr(site_build._Worker, "__init__", real_init)
    one = publish_all(store, settings, tmp_path / "one", now=NOW, ping=False, jobs=1)
    assert "articles/bai-500/index.html" in report.written and report.written == one.written
    assert {k: v[0] for k, v in tree(tmp_path / "one").items()} == {k: v[0] for k, v in tree(tmp_path / "two").items()}


def test_cli_feed_build_jobs(cli: CliRunner, tmp_path: Path, store: Store) -> None:
    fill(store)
    built = cli.invoke(main, ["feed", "build", "--out", "one", "--jobs", "1"])
    assert built.exit_code == 0, built.output
    built = cli.invoke(main, ["feed", "build", "--out", "two", "--jobs", "2"])
    assert built.exit_code == 0, built.output
    assert {k: v[0] for k, v in tree(tmp_path / "one").items()} == {k: v[0] for k, v in tree(tmp_path / "two").items()}
    (tmp_path / "two/articles/bai-5/index.html").unlink()
    (tmp_path / "two/articles/bai-5").rmdir()
    (tmp_path / "two/articles/bai-5").write_bytes(b"")
    failed = cli.invoke(main, ["feed", "build", "--out", "two", "--jobs", "2"])
    assert failed.exit_code == 1
    assert failed.output == (
        "error: cannot write two/articles/bai-5/index.html: Not a directory; nothing in two/ was changed\n"
    )
    bad = cli.invoke(main, ["feed", "build", "--jobs", "0"])
    assert bad.exit_code == 2 and "0 is not in the range x>=1" in bad.output


CLAIMER = """
import sys
from syndicate.site_build import Claims
claims = Claims(int(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()  # all three start together
print(" ".join(str(i) for i in iter(lambda: claims.take(front=True), None)))
"""


def test_claims_hand_every_unit_to_exactly_one_process() -> None:
    """Two other processes take from the front while this one takes from the back, all at once:
    every unit is taken, none twice (the lock is per process, so it holds between them)."""
    import subprocess
    import sys

    from syndicate.site_build import Claims

    claims = Claims.create(3, 20_000)
    try:
        children = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(claims.fd)], pass_fds=[claims.fd],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.close()
        ours = list(iter(lambda: claims.take(front=False), None))
        theirs = [child.stdout.read().split() for child in children if child.stdout is not None]
        for child in children:
            child.wait(timeout=120)
            child.stdout.close()  # type: ignore[union-attr]
    finally:
        claims.close()
    assert all(child.returncode == 0 for child in children)
    taken = ours + [int(i) for part in theirs for i in part]
    assert sorted(taken) == list(range(3, 20_000))  # each once; 0-2 were never in the file
    assert ours == sorted(ours, reverse=True)  # from the back, in turn
    assert all(part == sorted(part, key=int) for part in theirs)  # from the front, in turn


def test_claim_order_gives_the_largest_months_to_the_workers(store: Store, settings: Settings) -> None:
    from syndicate.site_build import OPEN, MonthPlan, claim_order

    fill(store)  # January 40 articles, February to April 3 each, the open month (May) 3 public
    plans = [MonthPlan(m, ()) for m in ("2024-01", "2024-02", "2024-03", "2024-04")] + [MonthPlan(OPEN, ())]
    one = [p.month for p in claim_order(store, settings, plans, 1, NOW)]
    assert one[0] == "2024-01" and sorted(one) == sorted(p.month for p in plans)
    assert one[-1] != OPEN and one.index(OPEN) in (2, 3)  # the smallest (pages only) meet in the middle
    two = [p.month for p in claim_order(store, settings, plans, 2, NOW)]
    assert two[0] == "2024-01" and sorted(two) == sorted(p.month for p in plans)


def test_a_child_runs_our_code_whatever_folder_it_starts_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -c` puts the working directory first on sys.path: started in a folder holding another
    `syndicate` (a checkout of another version, say), a build worker would run that code."""
    from syndicate.child import start_child

    (tmp_path / "syndicate").mkdir()
    (tmp_path / "syndicate/__init__.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)
    process, ours = start_child("syndicate.site_build", "worker_main")
    ours.close()  # the worker reads EOF where its job would be, and ends
    assert process.wait(timeout=120) == 0
