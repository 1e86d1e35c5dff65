"""Who may call the API: bearer tokens, their scopes, a rate per token; and the error every refusal is.

``create_token`` makes ``syn_<public id>_<secret>`` (32 random bytes), stores
only its sha256 and returns the token to show once. ``authenticate`` reads
an ``Authorization: Bearer`` header against the store. :class:`RateLimit` is
a token bucket per API token, in memory (one process serves the API).
"""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InputError
from ..models import utcnow
from ..sanitize import one_line
from ..store.tokens import SCOPES, ApiToken, token_hash

if TYPE_CHECKING:
    from ..store import Store

PREFIX = "syn_"
_TOKEN = re.compile(r"syn_([0-9a-f]{8})_[A-Za-z0-9_-]{43}\Z")
NAME_LIMIT = 100


class ApiError(Exception):
    """A refusal: HTTP ``status``, the ``message`` a person reads, the ``field`` of the body it is about."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"error": {"field": self.field, "message": self.message}}


def create_token(store: Store, name: str, scope: str) -> tuple[ApiToken, str]:
    """A new token named ``name`` with ``scope``: (what is stored, the token to show once).

    Example:
        >>> token, secret = create_token(store, "cms", "write")  # doctest: +SKIP
        >>> secret[:4], token.scope  # doctest: +SKIP
        ('syn_', 'write')
    """
    clean = one_line(name)
    if not clean:
        raise InputError("a token needs a --name, e.g. --name cms")
    if len(clean) > NAME_LIMIT:
        raise InputError(f"token name is {len(clean)} characters long; the limit is {NAME_LIMIT}")
    if scope not in SCOPES:
        raise InputError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    while True:
        public_id = secrets.token_hex(4)
        if all(t.public_id != public_id for t in store.tokens()):
            break
    token = f"{PREFIX}{public_id}_{secrets.token_urlsafe(32)}"
    return store.add_token(public_id, clean, scope, token), token


def unauthorized(message: str, error: str = "") -> ApiError:
    challenge = 'Bearer realm="syndicate"' + (f', error="{error}"' if error else "")
    return ApiError(401, message, headers={"www-authenticate": challenge})


def authenticate(store: Store, header: str) -> ApiToken:
    """The live token an ``Authorization`` header carries, or a 401 ApiError saying what is wrong."""
    if not header:
        raise unauthorized("this endpoint needs a token: send 'Authorization: Bearer <token>' "
                           "(make one with `syndicate token create`)")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise unauthorized("the Authorization header must be 'Bearer <token>'", "invalid_request")
    value = value.strip()
    match = _TOKEN.match(value)
    found = store.token_for(match.group(1), value) if match else None
    if found is None:
        raise unauthorized("this token is not valid (revoked, mistyped, or never made here)", "invalid_token")
    return found


class TokenCache:
    """Tokens already checked, kept while the store's token generation stays the same.

    Every request still reads the generation (one row), so a token revoked by
    `syndicate token revoke` in another process is refused from its next request;
    what is saved is the lookup, the hash comparison and the row's parsing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = -1
        self._tokens: dict[str, ApiToken] = {}

    def authenticate(self, store: Store, header: str) -> ApiToken:
        generation = store.token_generation()
        key = token_hash(header)
        with self._lock:
            if generation != self._generation:
                self._generation, self._tokens = generation, {}
            found = self._tokens.get(key)
        if found is not None:
            return found
        token = authenticate(store, header)  # read after the generation: a revocation meanwhile moves it on
        with self._lock:
            if generation == self._generation and len(self._tokens) < 1000:
                self._tokens[key] = token
        return token


def require(token: ApiToken, scope: str, what: str) -> None:
    """403 unless ``token`` has ``scope`` (read < write < admin)."""
    if not token.allows(scope):
        raise ApiError(403, f"{what} needs a token with scope {scope}; token {token.name!r} has scope {token.scope}")


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """At most ``burst`` requests at once per key, refilled at ``rate`` per second (0 = no limit).

    ``hit(key)`` returns 0.0 when the request may go, else the seconds until it may.

    Example:
        >>> clock = iter([0.0, 0.0, 0.0, 1.0]).__next__
        >>> limit = RateLimit(1.0, 2, clock=clock)
        >>> [limit.hit("t") for _ in range(4)]
        [0.0, 0.0, 1.0, 0.0]
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """Whole seconds for a Retry-After header (at least 1)."""
        return str(max(1, math.ceil(wait)))


class LastUsed:
    """Records a token's last use at most once a minute, so reads stay reads."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._seen: dict[int, float] = {}
        self._lock = threading.Lock()

    def note(self, store: Store, token: ApiToken) -> None:
        now = self.clock()
        with self._lock:
            last = self._seen.get(token.id)
            if last is not None and now - last < self.every:
                return
            self._seen[token.id] = now
        store.touch_token(token.id, utcnow())
