"""Webhook delivery: POST each queued event, signed, through the safe fetcher.

The store records events (triggers in ``store/webhooks.py``); this module
reads the queue. One pass (:func:`deliver`, ``syndicate webhook deliver`` and
the background task of ``syndicate serve``) claims what is due under a
lease, POSTs it, and records each answer:

- ``2xx``: delivered;
- ``410 Gone``: the receiver wants no more; the event fails and the webhook
  is disabled;
- anything else (another status, no connection, the deadline, a refused
  private address): tried again after ``retry_base_seconds``, doubling up to
  ``max_retry_minutes`` (or what a 429/503 ``Retry-After`` asks, within
  that), until ``lifetime_hours`` after the event, then given up.

Delivery is at least once: a deliverer killed after the receiver answered
but before the store heard of it leaves the row to be sent again when its
lease runs out, so receivers dedupe on ``Syndicate-Delivery``. Order is not
guaranteed (a retried event arrives after later ones); ``data.at`` dates
each event.

Every request carries ``Syndicate-Signature: t=<unix time>,v1=<hex
HMAC-SHA256 of "<t>.<body>" keyed by the webhook's secret>`` (the scheme
Stripe uses: a receiver recomputes it and rejects an old ``t``),
``Syndicate-Event`` and ``Syndicate-Delivery``. At most ``concurrency``
POSTs run at once; each endpoint's events go one after another, and an
endpoint that fails is not tried again in the same pass, so one slow or
dead receiver never holds up the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import urlsplit

from .errors import ConfigError, InputError
from .fetcher import FetchError, FetchPolicy, post_async
from .models import utcnow
from .store.base import dumps
from .store.webhooks import EVENTS, ClaimedWebhookDelivery, Webhook, WebhookOutcome

if TYPE_CHECKING:
    from .config import Settings
    from .store import Store

__all__ = ["EVENTS", "DeliveryReport", "WebhookPolicy", "add_webhook", "body_for", "deliver", "deliver_async",
           "parse_events", "run_in_background", "sign", "verify"]

log = logging.getLogger("syndicate.webhooks")
T = TypeVar("T")
MAX_ANSWER_BYTES = 64 * 1024  # what is read of a receiver's answer (for the log); the rest is dropped
SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class WebhookPolicy:
    """The limits of delivery (``[webhooks]`` in the config, and ``[fetch]`` for addresses)."""

    fetch: FetchPolicy = field(default_factory=lambda: FetchPolicy(timeout=10.0, max_bytes=MAX_ANSWER_BYTES))
    concurrency: int = 4
    retry_base: timedelta = timedelta(seconds=30)
    retry_max: timedelta = timedelta(minutes=60)
    lifetime: timedelta = timedelta(hours=72)
    keep: timedelta = timedelta(days=30)
    batch: int = 200  # rows claimed per pass
    per_webhook: int = 20  # of one endpoint per pass

    @property
    def lease(self) -> timedelta:
        """Long enough for one endpoint's share of a pass, one POST after another, each to its deadline."""
        return timedelta(seconds=self.fetch.timeout * (self.per_webhook + 1) + 30)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookPolicy:
        for name, value in (("timeout", settings.webhooks_timeout), ("concurrency", settings.webhooks_concurrency),
                            ("retry_base_seconds", settings.webhooks_retry_base_seconds),
                            ("max_retry_minutes", settings.webhooks_max_retry_minutes),
                            ("lifetime_hours", settings.webhooks_lifetime_hours)):
            if value <= 0:
                raise ConfigError(f"{settings.source}: [webhooks] {name} is {value:g}; it must be more than 0")
        base = FetchPolicy.from_settings(settings)
        return cls(
            fetch=FetchPolicy(timeout=settings.webhooks_timeout, max_bytes=MAX_ANSWER_BYTES, max_redirects=0,
                              allow_private=base.allow_private, user_agent=base.user_agent),
            concurrency=settings.webhooks_concurrency,
            retry_base=timedelta(seconds=settings.webhooks_retry_base_seconds),
            retry_max=timedelta(minutes=settings.webhooks_max_retry_minutes),
            lifetime=timedelta(hours=settings.webhooks_lifetime_hours),
            keep=timedelta(days=max(settings.webhooks_keep_days, 0.0)),
        )


# -- endpoints ---------------------------------------------------------------------


def parse_events(text: str) -> list[str]:
    """``subscribe,confirm`` as a list; InputError naming an unknown event.

    Example:
        >>> parse_events("confirm, unsubscribe")
        ['confirm', 'unsubscribe']
        >>> parse_events("confirmed")
        Traceback (most recent call last):
        ...
        syndicate.errors.InputError: --events: 'confirmed' is not an event; choose from subscribe, confirm, unsubscribe, bounce, complaint, campaign.sent
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(f"--events: name at least one of {', '.join(EVENTS)}")
    for name in names:
        if name not in EVENTS:
            raise InputError(f"--events: {name!r} is not an event; choose from {', '.join(EVENTS)}")
    return list(dict.fromkeys(names))


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` and 32 random bytes, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_url(url: str, settings: Settings) -> str:
    """The URL as given if it can be a webhook, else InputError naming it and why.

    A literal private or loopback address is refused here already unless
    ``[fetch] allow_private``; a name that resolves to one is refused at
    delivery, by the fetcher (DNS may change between now and then).
    """
    if any(ch <= " " or ch == "\x7f" for ch in url):
        raise InputError(f"{url!r}: a URL may not contain spaces or control characters (percent-encode them)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InputError(f"{url!r} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InputError(f"{url!r}: a webhook URL must start with http:// or https://")
    if not parts.hostname:
        raise InputError(f"{url!r}: the URL has no host")
    if parts.username or parts.password:
        raise InputError(f"{url!r}: put no user name or password in the URL; receivers check the signature instead")
    if not settings.fetch_allow_private:
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return url
        if not address.is_global:
            raise InputError(f"{url!r}: {parts.hostname} is not a public address "
                             "(set [fetch] allow_private = true to deliver to it)")
    return url


def add_webhook(store: Store, settings: Settings, url: str, events: Sequence[str],
                secret: str | None = None) -> tuple[Webhook, bool]:
    """Store a webhook; returns it and whether its secret was generated (then show it once).

    Example:
        >>> hook, made = add_webhook(store, settings, "https://crm.example.org/hooks", ["confirm"])  # doctest: +SKIP
    """
    url = check_url(url.strip(), settings)
    if secret is not None and len(secret) < 16:
        raise InputError(f"--secret is {len(secret)} characters long; use at least 16 (or leave it out to get one)")
    generated = secret is None
    return store.add_webhook(url, events, secret or generate_secret()), generated


# -- signing -------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Syndicate-Signature`` header value for ``body`` sent at ``timestamp``.

    Example:
        >>> sign("whsec_test", 1700000000, b'{}')
        't=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91'
    """
    mac = hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` seconds old.

    What a receiver does (the README shows it standalone).

    Example:
        >>> verify("whsec_test", sign("whsec_test", int(time.time()), b"{}"), b"{}")
        True
    """
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        stamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - stamp) > tolerance:
        return False
    expected = sign(secret, stamp, body).rsplit("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def body_for(delivery: ClaimedWebhookDelivery) -> bytes:
    """The JSON body POSTed: the same bytes on every attempt of one delivery."""
    doc = {"id": str(delivery.id), "event": delivery.event, "created": delivery.payload.get("at", ""),
           "data": delivery.payload}
    return dumps(doc).encode("utf-8")


# -- delivery ------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What one pass did."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0  # given up: lifetime over, or 410
    disabled: list[int] = field(default_factory=list)  # webhook ids turned off by a 410
    postponed: int = 0  # claimed but not tried (its endpoint failed earlier in the pass, or the lease ran short)
    pruned: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        text = f"delivered {self.delivered}, retry later {self.retried + self.postponed}, failed {self.failed}"
        if self.disabled:
            text += f"; disabled webhook {', '.join(map(str, self.disabled))} (the receiver answered 410 Gone)"
        return text


def _retry_at(delivery: ClaimedWebhookDelivery, now: datetime, policy: WebhookPolicy,
              asked: float | None) -> datetime | None:
    """When to try again, or None when the event's lifetime is over."""
    end = delivery.created + policy.lifetime
    if now >= end:
        return None
    wait = policy.retry_base * (1 << min(delivery.attempts, 30))
    if asked is not None:
        wait = max(wait, timedelta(seconds=asked))
    return min(now + min(wait, policy.retry_max), end)


async def _attempt(delivery: ClaimedWebhookDelivery, policy: WebhookPolicy,
                   clock: Callable[[], datetime]) -> WebhookOutcome:
    body = body_for(delivery)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Syndicate-Signature": sign(delivery.secret, int(time.time()), body),
        "Syndicate-Event": delivery.event,
        "Syndicate-Delivery": str(delivery.id),
    }
    started = time.monotonic()
    status: int | None = None
    asked: float | None = None
    try:
        answer = await post_async(delivery.url, body, policy.fetch, headers=headers)
        status, asked = answer.status, answer.retry_after
        error = "" if 200 <= status < 300 else f"HTTP {status}"
    except FetchError as exc:
        error = str(exc)
    now = clock()
    took = int((time.monotonic() - started) * 1000)
    if status is not None and 200 <= status < 300:
        return WebhookOutcome(delivery.id, "delivered", now, status, duration_ms=took)
    if status == 410:
        return WebhookOutcome(delivery.id, "disabled", now, status, "HTTP 410 Gone: webhook disabled", duration_ms=took)
    if status is not None and 300 <= status < 400:
        error += " (a redirect: webhooks do not follow them; register the final URL)"
    retry = _retry_at(delivery, now, policy, asked)
    if retry is None:
        hours = policy.lifetime.total_seconds() / 3600
        return WebhookOutcome(delivery.id, "failed", now, status,
                              f"{error}; gave up after {delivery.attempts + 1} attempts in {hours:g} h", duration_ms=took)
    return WebhookOutcome(delivery.id, "retry", now, status, error, next_attempt=retry, duration_ms=took)


class StoreCall(Protocol):
    """Runs one store call: in place (the CLI), or on a worker thread (``serve``)."""

    def __call__(self, fn: Callable[[], T]) -> Awaitable[T]: ...


async def _direct(fn: Callable[[], T]) -> T:
    return fn()


async def deliver_async(store: Store, policy: WebhookPolicy, *, now: datetime | None = None,
                        run: StoreCall | None = None) -> DeliveryReport:
    """One delivery pass. ``now`` fixes the clock (tests); ``run`` runs each store call
    (``serve`` passes one that uses a worker thread, so the event loop never waits on SQLite)."""
    call: StoreCall = run or _direct
    fixed = now

    def clock() -> datetime:
        return fixed or utcnow()

    owner = f"webhooks-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    report = DeliveryReport()
    claimed: list[ClaimedWebhookDelivery] = await call(lambda: store.claim_webhook_deliveries(
        owner, clock(), policy.lease, policy.batch, policy.per_webhook))
    by_hook: dict[int, list[ClaimedWebhookDelivery]] = {}
    for d in claimed:
        by_hook.setdefault(d.webhook_id, []).append(d)
    slots = asyncio.Semaphore(policy.concurrency)
    budget = policy.lease.total_seconds() - policy.fetch.timeout - 10  # start no POST its lease would not cover

    async def endpoint(rows: list[ClaimedWebhookDelivery]) -> None:
        for i, d in enumerate(rows):
            async with slots:
                if time.monotonic() - started > budget:
                    outcome = None
                else:
                    outcome = await _attempt(d, policy, clock)
            if outcome is None:
                for rest in rows[i:]:
                    await call(lambda rest=rest: store.release_webhook_delivery(rest.id, owner))  # type: ignore[misc]
                report.postponed += len(rows) - i
                return
            await call(lambda d=d, outcome=outcome: store.finish_webhook_delivery(d, owner, outcome))  # type: ignore[misc]
            if outcome.outcome == "delivered":
                report.delivered += 1
                continue
            if outcome.outcome == "retry":
                report.retried += 1
            else:
                report.failed += 1
                if outcome.outcome == "disabled":
                    report.disabled.append(d.webhook_id)
            # This endpoint is failing (or gone): leave its other events for a later pass.
            for rest in rows[i + 1:]:
                await call(lambda rest=rest: store.release_webhook_delivery(rest.id, owner))  # type: ignore[misc]
            report.postponed += len(rows) - i - 1
            return

    await asyncio.gather(*(endpoint(rows) for rows in by_hook.values()))
    if policy.keep.total_seconds() > 0:
        report.pruned = await call(lambda: store.prune_webhooks(clock() - policy.keep))
    return report


def deliver(store: Store, settings: Settings, *, now: datetime | None = None) -> DeliveryReport:
    """One delivery pass for synchronous callers (``syndicate webhook deliver``, cron).

    Example:
        >>> deliver(store, settings).summary()  # doctest: +SKIP
        'delivered 0, retry later 0, failed 0'
    """
    return asyncio.run(deliver_async(store, WebhookPolicy.from_settings(settings), now=now))


async def run_in_background(settings: Settings, stop: asyncio.Event) -> None:
    """Delivery passes every ``[webhooks] serve_interval`` seconds until ``stop`` is set (``syndicate serve``).

    The store is used from one worker thread at a time, never from the event
    loop, so a busy database never stalls a web request; a pass that fails is
    logged and the next one runs as usual.
    """
    from .store import open_store

    interval = settings.webhooks_serve_interval
    if interval <= 0:
        return
    policy = WebhookPolicy.from_settings(settings)
    store = await asyncio.to_thread(open_store, settings.db)
    lock = asyncio.Lock()

    async def in_thread(fn: Callable[[], T]) -> T:
        async with lock:
            return await asyncio.to_thread(fn)

    try:
        while not stop.is_set():
            try:
                report = await deliver_async(store, policy, run=in_thread)
                if report.delivered or report.retried or report.failed:
                    log.info("webhooks: %s", report.summary())
            except Exception:  # one bad pass must not end serving
                log.exception("webhooks: delivery pass failed")
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
    finally:
        async with lock:
            await asyncio.to_thread(store.close)
