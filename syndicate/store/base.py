"""The connection, transactions and row helpers every query mixin shares."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import sqlite_utils

from ..models import from_iso, to_iso, utcnow

T = TypeVar("T")


def public_bound(now: datetime | None) -> str:
    """The embargo bound as the store sorts times: an article published after it is not public yet."""
    return to_iso(now or utcnow())


def iso(value: datetime | None) -> str | None:
    return to_iso(value) if value is not None else None


def parse_time(value: str | None) -> datetime | None:
    return from_iso(value) if value else None


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class StoreBase:
    """Holds the sqlite-utils Database; query mixins add methods on top."""

    def __init__(self, db: sqlite_utils.Database, path: str) -> None:
        self.db = db
        self.path = path

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; nested calls join the outer transaction.

        ``immediate`` takes the write lock at once (``BEGIN IMMEDIATE``), which
        is what claims and read-modify-write sequences need.
        """
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.commit()
        except BaseException:  # a failed COMMIT (a deferred constraint, a full disk) leaves the transaction open
            if conn.in_transaction:
                conn.rollback()
            raise

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        cur = self.conn.execute(sql, params)
        cur.row_factory = sqlite3.Row  # type: ignore[assignment]
        return cur.fetchall()

    def stream(self, sql: str, params: Sequence[object], convert: Callable[[Any], T], *, batch: int = 1000,
               named: bool = False) -> Iterator[T]:
        """``convert`` of each row, read from a cursor of its own ``batch`` rows at a time (so other
        queries may run while it streams, and no caller holds every row at once). ``named``: rows are
        :class:`sqlite3.Row` (by column name), else plain tuples (cheaper, for the million-row reads)."""
        cur = self.conn.cursor()
        if named:
            cur.row_factory = sqlite3.Row  # type: ignore[assignment]
        cur.execute(sql, params)
        try:
            while rows := cur.fetchmany(batch):
                for r in rows:
                    yield convert(r)
        finally:
            cur.close()

    def query_one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        cur = self.conn.execute(sql, params)
        cur.row_factory = sqlite3.Row  # type: ignore[assignment]
        row: sqlite3.Row | None = cur.fetchone()
        return row

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None
