"""The API's group commit: many requests' writes in one transaction, each failing one rolled back alone."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from syndicate.api.writes import GroupCommit, in_savepoint, serialise_writes
from syndicate.errors import InputError
from syndicate.store import Store, open_store


def _wait(condition: object, what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_jobs_waiting_together_commit_together_and_a_failing_one_leaves_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    setup = open_store(db)
    setup.conn.execute("CREATE TABLE t (v TEXT NOT NULL)")
    setup.conn.commit()
    group = GroupCommit(db)
    gate, inside = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def job(value: str, fail: bool = False, hold: bool = False) -> object:
        def run(store: Store) -> str:
            with store.transaction(immediate=True) as conn:  # joins the batch's transaction
                conn.execute("INSERT INTO t (v) VALUES (?)", [value])
                if hold:
                    inside.set()
                    gate.wait(120)
                if fail:
                    raise InputError(f"{value} is refused")
            return value.upper()
        return run

    def call(value: str, **kw: bool) -> None:
        try:
            results[value] = group.run(job(value, **kw))  # type: ignore[arg-type]
        except InputError as exc:
            results[value] = exc

    try:
        first = threading.Thread(target=call, args=("first",), kwargs={"hold": True})
        first.start()
        inside.wait(120)
        others = [threading.Thread(target=call, args=(v,), kwargs={"fail": v == "bad"}) for v in ("a", "bad", "b")]
        for t in others:
            t.start()
        _wait(lambda: group._queue.qsize() == 3, "the three jobs to queue up behind the first")
        gate.set()
        for t in [first, *others]:
            t.join(120)
        assert results["first"] == "FIRST" and results["a"] == "A" and results["b"] == "B"
        assert str(results["bad"]) == "bad is refused"
        assert [r[0] for r in setup.conn.execute("SELECT v FROM t ORDER BY rowid")] == ["first", "a", "b"]
    finally:
        group.close()
        setup.close()


def test_a_request_gets_its_answer_only_after_the_commit(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    reader = open_store(db)
    reader.conn.execute("CREATE TABLE t (v TEXT NOT NULL)")
    reader.conn.commit()
    group = GroupCommit(db)
    try:
        def write(store: Store) -> int:
            with store.transaction(immediate=True) as conn:
                conn.execute("INSERT INTO t (v) VALUES ('x')")
            return 1
        for n in range(1, 4):
            assert group.run(write) == 1
            assert reader.scalar("SELECT count(*) FROM t") == n  # another connection sees it: committed
    finally:
        group.close()
        reader.close()


def test_a_failing_commit_fails_every_request_of_the_batch_and_stores_none(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    setup = open_store(db)
    setup.conn.execute("CREATE TABLE t (v TEXT NOT NULL, CHECK (v <> 'x') )")
    setup.conn.execute("CREATE TABLE d (id INTEGER PRIMARY KEY)")
    setup.conn.execute("CREATE TABLE c (d_id INTEGER REFERENCES d(id) DEFERRABLE INITIALLY DEFERRED)")
    setup.conn.commit()
    group = GroupCommit(db)
    try:
        def dangling(store: Store) -> None:  # a deferred foreign key only fails at COMMIT
            with store.transaction(immediate=True) as conn:
                conn.execute("INSERT INTO c (d_id) VALUES (42)")
        with pytest.raises(Exception, match="FOREIGN KEY"):
            group.run(dangling)
        assert setup.scalar("SELECT count(*) FROM c") == 0

        def fine(store: Store) -> str:
            with store.transaction(immediate=True) as conn:
                conn.execute("INSERT INTO t (v) VALUES ('ok')")
            return "ok"
        assert group.run(fine) == "ok"  # the writer lives on after a failed batch, in a fresh transaction
        assert setup.scalar("SELECT count(*) FROM t") == 1 and setup.scalar("SELECT count(*) FROM c") == 0
    finally:
        group.close()
        setup.close()


def test_serialised_stores_nest_and_stay_reentrant(tmp_path: Path) -> None:
    store = serialise_writes(open_store(str(tmp_path / "s.db")))
    try:
        assert serialise_writes(store) is store
        with store.transaction(immediate=True), store.transaction() as conn:
            conn.execute("CREATE TABLE t (v)")
        assert store.scalar("SELECT count(*) FROM t") == 0
    finally:
        store.close()


def test_jobs_from_the_event_loop_commit_together_each_failing_one_alone_and_answer_after_the_commit(
        tmp_path: Path) -> None:
    """run_async: what an API create uses. A job's in_savepoint write that fails is undone alone; a failing
    commit fails every job of its batch; the answers come only once the batch is committed."""
    db = str(tmp_path / "s.db")
    reader = open_store(db)
    reader.conn.execute("CREATE TABLE t (v TEXT NOT NULL)")
    reader.conn.execute("CREATE TABLE d (id INTEGER PRIMARY KEY)")
    reader.conn.execute("CREATE TABLE c (d_id INTEGER REFERENCES d(id) DEFERRABLE INITIALLY DEFERRED)")
    reader.conn.commit()
    group = GroupCommit(db)

    def job(value: str) -> object:
        def run(store: Store) -> tuple[str, int, str]:
            def write(s: Store) -> None:
                with s.transaction(immediate=True) as conn:
                    conn.execute("INSERT INTO t (v) VALUES (?)", [value])
                    if value == "bad":
                        raise InputError("bad is refused")
            try:
                in_savepoint(store, write)
                outcome = "stored"
            except InputError as exc:
                outcome = str(exc)
            with open_store(db) as other:  # not committed yet: another connection does not see it
                seen = other.scalar("SELECT count(*) FROM t WHERE v = ?", [value])
            return value, seen, outcome
        return run

    def dangling(store: Store) -> None:
        with store.transaction(immediate=True) as conn:
            conn.execute("INSERT INTO t (v) VALUES ('lost')")
            conn.execute("INSERT INTO c (d_id) VALUES (42)")

    async def go() -> list[object]:
        return list(await asyncio.gather(*(group.run_async(job(v)) for v in ("a", "bad", "b"))))  # type: ignore[arg-type]

    try:
        assert asyncio.run(go()) == [("a", 0, "stored"), ("bad", 0, "bad is refused"), ("b", 0, "stored")]
        assert [r[0] for r in reader.conn.execute("SELECT v FROM t ORDER BY rowid")] == ["a", "b"]
        with pytest.raises(Exception, match="FOREIGN KEY"):
            asyncio.run(group.run_async(dangling))
        assert reader.scalar("SELECT count(*) FROM t WHERE v = 'lost'") == 0
    finally:
        group.close()
        reader.close()
