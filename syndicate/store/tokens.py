"""API tokens, and the paged reads the admin HTTP API makes (its migrations live here too).

A token is ``syn_<public id>_<secret>``: the public id (8 hex characters)
names the row; only a sha256 of the whole token is stored, so the database
never holds a usable token. Revoking keeps the row (who had access, and when)
and frees the name. The API is off while no unrevoked token exists.

The paged reads walk by id (``after`` an id, ``limit`` rows), so a page costs
the same however deep it is and a row written meanwhile is never skipped.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlite_utils import Database, Migrations

from ..errors import InputError, NotFound
from ..models import Subscriber, Subscription, utcnow
from .base import StoreBase, iso, parse_time
from .subscribers import _SUBSCRIBER_COLS, _SUBSCRIPTION_COLS, _row_to_subscriber, _row_to_subscription

migrations = Migrations("syndicate.tokens")

SCOPES = ("read", "write", "admin")  # each includes the ones before it


@migrations()
def m001_api_tokens(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            public_id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            scope TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
            token_hash TEXT NOT NULL,
            created TEXT NOT NULL,
            last_used TEXT,
            revoked TEXT
        )
        """
    )
    # A name is reused only once the token that had it is revoked.
    db.execute("CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked IS NULL")


@migrations()
def m002_token_generation(db: Database) -> None:
    # One number that moves whenever a token is made, revoked, renamed or rescoped (not when it is used), so
    # the API may keep checked tokens in memory and still see a revocation from any process at once.
    db.execute("CREATE TABLE api_token_generation (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)")
    db.execute("INSERT INTO api_token_generation (id, n) VALUES (1, 0)")
    bump = "UPDATE api_token_generation SET n = n + 1 WHERE id = 1;"
    db.execute(f"CREATE TRIGGER api_tokens_made AFTER INSERT ON api_tokens BEGIN {bump} END")
    db.execute(f"CREATE TRIGGER api_tokens_gone AFTER DELETE ON api_tokens BEGIN {bump} END")
    db.execute("CREATE TRIGGER api_tokens_changed AFTER UPDATE OF public_id, name, scope, token_hash, revoked "
               f"ON api_tokens BEGIN {bump} END")


def token_hash(token: str) -> str:
    """What the store keeps of a token: its sha256 (the secret is 32 random bytes, so no salt is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiToken:
    """One API token as stored (never the token itself)."""

    id: int
    public_id: str
    name: str
    scope: str
    created: datetime
    last_used: datetime | None = None
    revoked: datetime | None = None

    def allows(self, scope: str) -> bool:
        """read < write < admin.

        Example:
            >>> from datetime import UTC, datetime
            >>> t = ApiToken(1, "ab12cd34", "cms", "write", datetime.now(UTC))
            >>> t.allows("read"), t.allows("write"), t.allows("admin")
            (True, True, False)
        """
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


_COLS = "id, public_id, name, scope, created, last_used, revoked"


def _row_to_token(r: tuple[object, ...]) -> ApiToken:
    created = parse_time(str(r[4]))
    assert created is not None
    return ApiToken(int(r[0]), str(r[1]), str(r[2]), str(r[3]), created,  # type: ignore[call-overload]
                    parse_time(r[5]), parse_time(r[6]))  # type: ignore[arg-type]


class TokenQueries(StoreBase):
    """API tokens, and the paged reads of the API."""

    def add_token(self, public_id: str, name: str, scope: str, token: str, now: datetime | None = None) -> ApiToken:
        """Store a new token (its hash); InputError if a live token already has ``name``."""
        if scope not in SCOPES:
            raise InputError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
        now = now or utcnow()
        with self.transaction(immediate=True) as conn:
            taken = conn.execute("SELECT 1 FROM api_tokens WHERE name = ? AND revoked IS NULL", [name]).fetchone()
            if taken:
                raise InputError(f"a token named {name!r} already exists; revoke it first or choose another --name")
            cur = conn.execute(
                "INSERT INTO api_tokens (public_id, name, scope, token_hash, created) VALUES (?, ?, ?, ?, ?)",
                [public_id, name, scope, token_hash(token), iso(now)],
            )
        return ApiToken(int(cur.lastrowid or 0), public_id, name, scope, now)

    def tokens(self, *, include_revoked: bool = True) -> list[ApiToken]:
        where = "" if include_revoked else " WHERE revoked IS NULL"
        rows = self.conn.execute(f"SELECT {_COLS} FROM api_tokens{where} ORDER BY id").fetchall()
        return [_row_to_token(r) for r in rows]

    def has_live_token(self) -> bool:
        """True when the API is on: at least one token not revoked."""
        return self.conn.execute("SELECT 1 FROM api_tokens WHERE revoked IS NULL LIMIT 1").fetchone() is not None

    def token_generation(self) -> int:
        """A number that changes whenever any token is made, revoked or changed (not when one is used)."""
        return int(self.conn.execute("SELECT n FROM api_token_generation WHERE id = 1").fetchone()[0])

    def token_for(self, public_id: str, token: str) -> ApiToken | None:
        """The live token whose public id and hash match ``token``, else None (compared in constant time)."""
        row = self.conn.execute(
            f"SELECT {_COLS}, token_hash FROM api_tokens WHERE public_id = ? AND revoked IS NULL", [public_id]
        ).fetchone()
        if row is None or not hmac.compare_digest(str(row[7]), token_hash(token)):
            return None
        return _row_to_token(row)

    def touch_token(self, token_id: int, at: datetime) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", [iso(at), token_id])

    def revoke_token(self, key: str, now: datetime | None = None) -> ApiToken:
        """Revoke the live token with this id, public id or name; NotFound names ``key``."""
        with self.transaction(immediate=True) as conn:
            row = conn.execute(
                f"SELECT {_COLS} FROM api_tokens WHERE revoked IS NULL AND (id = ? OR public_id = ? OR name = ?) "
                "ORDER BY id LIMIT 1",
                [int(key) if key.isdigit() else -1, key, key],
            ).fetchone()
            if row is None:
                raise NotFound(f"no live token with id or name {key!r} (see `syndicate token ls`)")
            at = now or utcnow()
            conn.execute("UPDATE api_tokens SET revoked = ? WHERE id = ?", [iso(at), row[0]])
        found = _row_to_token(row)
        return ApiToken(found.id, found.public_id, found.name, found.scope, found.created, found.last_used, at)

    # -- paged reads -------------------------------------------------------------

    def subscriptions_page(
        self, list_id: int, *, after: int = 0, limit: int = 100, status: str | None = None
    ) -> list[tuple[Subscription, Subscriber]]:
        """Up to ``limit`` subscriptions of a list with id above ``after``, in id order, with their subscribers."""
        sql = (
            f"SELECT {', '.join('t.' + c.strip() for c in _SUBSCRIPTION_COLS.split(','))}, "
            f"{', '.join('s.' + c.strip() for c in _SUBSCRIBER_COLS.split(','))} "
            "FROM subscriptions t JOIN subscribers s ON s.id = t.subscriber_id WHERE t.list_id = ? AND t.id > ?"
        )
        params: list[object] = [list_id, after]
        if status is not None:
            sql += " AND t.status = ?"
            params.append(status)
        sql += " ORDER BY t.id LIMIT ?"
        params.append(limit)
        rows = self.conn.execute(sql, params).fetchall()
        return [(_row_to_subscription(r), _row_to_subscriber(r, 14)) for r in rows]
