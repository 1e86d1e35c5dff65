"""Subscribers and their consent: addresses, tokens, subscribe/confirm/unsubscribe, erasure.

The rules live here; the SQL in ``store/subscribers.py``; the doors (CLI, web)
only call these functions. Bulk CSV import/export is in ``subscriber_csv.py``.

Statuses: a subscription is ``pending`` until its confirm link is used
(double opt-in), then ``active``; it leaves as ``unsubscribed``, ``bounced``
or ``complained``. An address that left is never made active again by an
admin or an import without ``resubscribe=True``, which is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import unicodedata
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .config import Settings
from .errors import AddressError, InputError, NotFound, TokenError
from .models import (
    CADENCES,
    Event,
    NewsList,
    Subscriber,
    Subscription,
    utcnow,
)
from .sanitize import one_line, slugify
from .store.consent import ConsentRecord, ListStats
from .store.subscribers import email_hash

if TYPE_CHECKING:
    from .store import Store

PURPOSES = ("confirm", "unsubscribe", "preferences")
LEFT = ("unsubscribed", "bounced", "complained")
HARD_REASONS = ("bounced", "complained", "complaint")  # suppressions only an admin may lift


# -- addresses -------------------------------------------------------------------


def normalize_address(raw: str) -> str:
    """Trim, validate and normalise an address: domain lower-cased, local part kept.

    Internationalised addresses (UTF-8 local parts, IDN domains) are accepted;
    domains are kept in Unicode form, NFC.

    Example:
        >>> normalize_address("  Bob.Smith@Example.ORG ")
        'Bob.Smith@example.org'
        >>> normalize_address("bob@")
        Traceback (most recent call last):
        ...
        syndicate.errors.AddressError: 'bob@' is not an email address: there must be something after the @-sign
    """
    text = unicodedata.normalize("NFC", raw.strip())
    # Fast path for the common case, same answer as the full check: a plain
    # ASCII dot-atom local part at a domain email-validator already accepted.
    local, at, domain = text.rpartition("@")
    if at and len(local) <= 64 and domain.isascii() and _DOT_ATOM.match(local):
        normal_domain = _valid_domain(domain)
        if normal_domain is not None and len(local) + 1 + len(domain) <= 254:
            return f"{local}@{normal_domain}"
    if not text:
        raise AddressError("'' is not an email address: it is empty")
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        reason = reason[:1].lower() + reason[1:]
        raise AddressError(f"{text!r} is not an email address: {reason}") from None
    local, _, domain = result.normalized.rpartition("@")
    return f"{local}@{domain.lower()}"


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*\Z")


@lru_cache(maxsize=4096)
def _valid_domain(domain: str) -> str | None:
    """The normalised domain if email-validator accepts it, else None (then the full check explains why)."""
    try:
        result = validate_email(f"a@{domain}", check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        return None
    return str(result.domain).lower()


def address_hash(email: str) -> str:
    """The sha256 kept for suppressions and token binding; blind to case.

    Example:
        >>> address_hash("Bob@example.org") == address_hash("bob@EXAMPLE.org")
        True
    """
    return email_hash(email)


@lru_cache(maxsize=1024)
def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def check_timezone(name: str) -> str:
    """An IANA zone name, or InputError naming it.

    Example:
        >>> check_timezone("Asia/Ho_Chi_Minh")
        'Asia/Ho_Chi_Minh'
    """
    name = name.strip()
    if not name or "\\" in name or ".." in name or not _zone_ok(name):
        raise InputError(f"{name!r} is not an IANA time zone such as 'Asia/Ho_Chi_Minh' or 'Europe/Berlin'")
    return name


def check_categories(wanted: list[str] | None, newslist: NewsList) -> list[str]:
    """Categories a subscriber may choose: a subset of the list's (any, if the list covers all)."""
    chosen = sorted({slugify(c) for c in (wanted or []) if c.strip()})
    if newslist.categories:
        extra = [c for c in chosen if c not in newslist.categories]
        if extra:
            raise InputError(
                f"list {newslist.slug!r} does not cover {', '.join(extra)}; choose from {', '.join(newslist.categories)}"
            )
    return chosen


# -- tokens ----------------------------------------------------------------------


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return _serializer_for(settings.require_secret(), purpose)


@lru_cache(maxsize=64)
def _serializer_for(secret: str, purpose: str) -> URLSafeTimedSerializer:
    """Made once per key and purpose."""
    return URLSafeTimedSerializer(secret, salt=f"syndicate.{purpose}")


@lru_cache(maxsize=64)
def _mac_for(secret: str, purpose: str) -> hmac.HMAC:
    """The HMAC a token of ``purpose`` is signed with, keyed once (copied for each token)."""
    # itsdangerous' default Signer: key derivation "django-concat" (sha1 of salt, b"signer", secret), HMAC-SHA1.
    key = hashlib.sha1(f"syndicate.{purpose}".encode() + b"signer" + secret.encode()).digest()
    return hmac.new(key, digestmod=hashlib.sha1)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def make_token(settings: Settings, purpose: str, subscriber_id: int, list_id: int, email: str = "",
               *, now: float | None = None) -> str:
    """A signed, URL-safe token for one subscriber, one list, one purpose.

    Pass ``email`` to bind the token to the address too (a hash of it, checked
    by :func:`resolve_token`), so it cannot act on anyone else. The bytes are
    those of itsdangerous' ``URLSafeTimedSerializer.dumps`` (which reads them
    back), made with the key derived once: every confirmation email signs two.

    Example:
        >>> from syndicate.config import Secret
        >>> s = Settings(secret_key=Secret("k"))
        >>> read_token(s, make_token(s, "unsubscribe", 7, 2), "unsubscribe")
        (7, 2)
    """
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    # the compact JSON of [subscriber_id, list_id] or [subscriber_id, list_id, "<16 hex digits>"]
    bound = f',"{address_hash(email)[:16]}"' if email else ""
    data = f"[{int(subscriber_id)},{int(list_id)}{bound}]".encode("ascii")
    compressed = zlib.compress(data)
    body = b"." + _b64(compressed) if len(compressed) < len(data) - 1 else _b64(data)
    stamp = int(time.time() if now is None else now)
    value = body + b"." + _b64(stamp.to_bytes(8, "big").lstrip(b"\x00"))
    mac = _mac_for(settings.require_secret(), purpose).copy()
    mac.update(value)
    return (value + b"." + _b64(mac.digest())).decode("ascii")


def _load(settings: Settings, token: str, purpose: str) -> list[Any]:
    max_age = settings.mail_pending_max_age_days * 86400 if purpose == "confirm" else None
    try:
        payload = _serializer(settings, purpose).loads(token, max_age=max_age)
    except SignatureExpired:
        raise TokenError(
            f"this {purpose} link has expired (links last {settings.mail_pending_max_age_days} days); "
            "subscribe again to get a new one"
        ) from None
    except BadSignature:
        raise TokenError(f"this {purpose} link is not valid (it was altered, cut short, or is for something else)") from None
    if not (isinstance(payload, list) and len(payload) in (2, 3)
            and all(isinstance(x, int) and not isinstance(x, bool) for x in payload[:2])):
        raise TokenError(f"this {purpose} link is not valid (unexpected contents)")
    return payload


def read_token(settings: Settings, token: str, purpose: str) -> tuple[int, int]:
    """(subscriber_id, list_id) from a token, or TokenError (forged, expired, wrong purpose)."""
    payload = _load(settings, token, purpose)
    return int(payload[0]), int(payload[1])


def resolve_token(store: Store, settings: Settings, token: str, purpose: str) -> tuple[Subscriber, Subscription, NewsList]:
    """Check a token against the store: its subscriber, subscription and list must still exist and match."""
    payload = _load(settings, token, purpose)
    gone = TokenError(f"this {purpose} link no longer applies: the subscription was removed or the address erased")
    try:
        subscriber = store.get_subscriber_by_id(payload[0])
        newslist = store.get_list_by_id(payload[1])
    except NotFound:
        raise gone from None
    if len(payload) == 3 and address_hash(subscriber.email)[:16] != payload[2]:
        raise gone
    subscription = store.find_subscription(payload[0], payload[1])
    if subscription is None:
        raise gone
    return subscriber, subscription, newslist


def confirm_url(settings: Settings, subscriber_id: int, list_id: int, email: str = "", *,
                issued: datetime | None = None) -> str:
    """The link that confirms a pending subscription. A notice's links are dated when its outbox row was
    queued (``issued``; default: now), so the CLI that queued the row can print the very link the email holds."""
    return _link(settings, "confirm", subscriber_id, list_id, email, issued)


def unsubscribe_url(settings: Settings, subscriber_id: int, list_id: int, email: str = "", *,
                    issued: datetime | None = None) -> str:
    return _link(settings, "unsubscribe", subscriber_id, list_id, email, issued)


def preferences_url(settings: Settings, subscriber_id: int, list_id: int, email: str = "", *,
                    issued: datetime | None = None) -> str:
    return _link(settings, "preferences", subscriber_id, list_id, email, issued)


def _link(settings: Settings, purpose: str, subscriber_id: int, list_id: int, email: str,
          issued: datetime | None) -> str:
    token = make_token(settings, purpose, subscriber_id, list_id, email, now=issued.timestamp() if issued else None)
    return f"{settings.base_url.rstrip('/')}/{purpose}/{token}"


# -- consent -----------------------------------------------------------------------


@dataclass
class SubscribeResult:
    """What a subscribe or confirm did."""

    subscriber: Subscriber
    subscription: Subscription
    newslist: NewsList
    created: bool  # a new subscription (or a revived one) was made
    needs_confirmation: bool  # a confirmation mail should go out


def subscribe(
    store: Store,
    settings: Settings,
    email: str,
    list_slug: str,
    *,
    name: str = "",
    categories: list[str] | None = None,
    timezone: str | None = None,
    locale: str | None = None,
    cadence: str | None = None,
    send_hour: int | None = None,
    source: str = "cli",
    actor: str = "",
    confirmed: bool = False,
    resubscribe: bool = False,
    ip: str = "",
    user_agent: str = "",
    now: datetime | None = None,
) -> SubscribeResult:
    """Subscribe an address to a list: ``pending`` (double opt-in) unless ``confirmed``.

    Idempotent for someone already pending or active. An address that left
    the list, or is suppressed, needs ``resubscribe=True`` from an admin;
    from the web (``source="web"``) it may ask again, and its own
    confirmation is the consent. The request is kept as the proof of consent
    (when, how, ``ip`` and ``user_agent`` for the web, the list's wording).
    """
    now = now or utcnow()
    address = normalize_address(email)
    newslist = store.get_list(list_slug)
    assert newslist.id is not None
    chosen = check_categories(categories, newslist)
    if cadence is not None and cadence not in CADENCES:
        raise InputError(f"cadence {cadence!r} is not one of {', '.join(CADENCES)}")
    if send_hour is not None and not 0 <= send_hour <= 23:
        raise InputError(f"send hour {send_hour} is not between 0 and 23")
    consent_by_link = source == "web" and not confirmed
    digest = address_hash(address)
    with store.transaction(immediate=True):
        reason = store.suppression(digest)
        # From the web form, someone who left or was erased may ask again (their
        # confirmation is the consent); a bounced or complaining address may not.
        if reason is not None and not (resubscribe or (consent_by_link and reason not in HARD_REASONS)):
            raise InputError(
                f"{address} is suppressed ({reason}); add --resubscribe only if they asked to come back"
            )
        if reason is not None and resubscribe:
            # an admin's explicit resubscribe lifts it (first: the store refuses to activate a suppressed
            # address); from the web form it stays until the person confirms
            store.remove_suppression(digest)
        subscriber = store.find_subscriber(address)
        if subscriber is None:
            subscriber = store.add_subscriber(Subscriber(
                email=address, name=one_line(name),
                timezone=check_timezone(timezone) if timezone else settings.timezone,
                locale=one_line(locale or newslist.language), created=now,
            ))
        elif (name or timezone) and not consent_by_link:  # the public form never edits a person's data
            subscriber.name = one_line(name) or subscriber.name
            subscriber.timezone = check_timezone(timezone) if timezone else subscriber.timezone
            store.update_subscriber(subscriber)
        assert subscriber.id is not None
        status = "active" if confirmed else "pending"
        sub = store.find_subscription(subscriber.id, newslist.id)
        if sub is not None and sub.status in ("pending", "active"):
            if confirmed and sub.status == "pending":
                sub.status, sub.confirmed = "active", now
                lifted = f", suppression lifted (was {reason})" if reason is not None else ""
                store.save_subscription(sub, _event("confirm", now, source, actor, sub, f"by admin{lifted}"))
                assert sub.id is not None
                store.record_confirmed(sub.id, at=now, via="admin", ip=ip, user_agent=user_agent)
                store.queue_notices("welcome", [sub.id], now=now)  # the caller may send it at once
                return SubscribeResult(subscriber, sub, newslist, created=False, needs_confirmation=False)
            return SubscribeResult(subscriber, sub, newslist, created=False,
                                   needs_confirmation=sub.status == "pending" and source == "web")
        if sub is not None:  # left before
            previous = sub.status
            if not (resubscribe or (consent_by_link and previous == "unsubscribed")):
                raise InputError(
                    f"{subscriber.email} is {sub.status} from {newslist.slug}; add --resubscribe only if they asked to come back"
                )
            sub.status, sub.unsubscribed, sub.hard_bounces = status, None, 0
            sub.confirmed = now if confirmed else sub.confirmed
            sub.created = now if not confirmed else sub.created
            if chosen and not consent_by_link:  # from the form: their old topics; preferences change them
                sub.categories = chosen
            kind, detail = "resubscribe", f"{status}, was {previous}"
        else:
            sub = Subscription(
                subscriber_id=subscriber.id, list_id=newslist.id, status=status,
                cadence=cadence or newslist.cadence, weekday=newslist.weekday,
                send_hour=newslist.send_hour if send_hour is None else send_hour,
                categories=chosen, created=now, confirmed=now if confirmed else None,
            )
            kind, detail = ("admin-add", "active") if confirmed else ("subscribe", "pending")
            if resubscribe and reason is not None:
                kind, detail = "resubscribe", f"{status}, was suppressed ({reason})"
        store.save_subscription(sub, _event(kind, now, source, actor, sub, detail))
        assert sub.id is not None
        store.record_asked(sub.id, at=now, via="form" if source == "web" else "admin", source=source, ip=ip,
                           user_agent=user_agent, wording=wording_version(newslist))
        if confirmed:
            store.record_confirmed(sub.id, at=now, via="resubscribe" if resubscribe else "admin", ip=ip,
                                   user_agent=user_agent)
    return SubscribeResult(subscriber, sub, newslist, created=True, needs_confirmation=not confirmed)


def wording_version(newslist: NewsList) -> str:
    """A short fingerprint of what the person was shown about a list (name, description, topics).

    Kept with each request to subscribe, so an auditor can tell which wording
    someone agreed to; it changes whenever the list's public text does.

    Example:
        >>> wording_version(NewsList(slug="tin", name="Tin sáng"))
        'tin:2875eba93284'
    """
    text = "\n".join([newslist.name, newslist.description, ",".join(newslist.categories)])
    return f"{newslist.slug}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def _event(kind: str, at: datetime, source: str, actor: str, sub: Subscription, detail: str = "") -> Event:
    return Event(kind=kind, at=at, source=source, actor=one_line(actor)[:200], subscriber_id=sub.subscriber_id,
                 list_id=sub.list_id, detail=detail)


def confirm(store: Store, settings: Settings, token: str, *, source: str = "web", actor: str = "",
            ip: str = "", user_agent: str = "", now: datetime | None = None) -> SubscribeResult:
    """Use a confirm link: ``pending`` becomes ``active``. Idempotent once active.

    The person's own confirmation is consent: it lifts a suppression of the
    address, and when, ``ip`` and ``user_agent`` are kept in the consent record.
    """
    now = now or utcnow()
    with store.transaction(immediate=True):
        subscriber, sub, newslist = resolve_token(store, settings, token, "confirm")
        if sub.status == "pending":
            sub.status, sub.confirmed = "active", now
            lifted = store.remove_suppression(address_hash(subscriber.email))
            store.save_subscription(sub, _event("confirm", now, source, actor, sub, "suppression lifted" if lifted else ""))
            assert sub.id is not None
            store.record_confirmed(sub.id, at=now, via="link", ip=ip, user_agent=user_agent)
            store.queue_notices("welcome", [sub.id], now=now)  # once ever; the caller may send it at once
            return SubscribeResult(subscriber, sub, newslist, created=True, needs_confirmation=False)
        if sub.status != "active":
            raise TokenError(f"this confirm link no longer applies: the subscription is {sub.status}; subscribe again")
    return SubscribeResult(subscriber, sub, newslist, created=False, needs_confirmation=False)


def unsubscribe(
    store: Store, settings: Settings, subscriber_id: int, list_id: int, *, source: str, actor: str = "",
    detail: str = "", now: datetime | None = None,
) -> Subscription:
    """Unsubscribe at once (idempotent) and cancel any digest still queued for it."""
    now = now or utcnow()
    with store.transaction(immediate=True):
        sub = store.get_subscription(subscriber_id, list_id)
        if sub.status != "unsubscribed":
            sub.status, sub.unsubscribed = "unsubscribed", now
            store.save_subscription(sub, _event("unsubscribe", now, source, actor, sub, detail))
        cancel = getattr(store, "cancel_queued_deliveries", None)
        if cancel is not None and sub.id is not None:
            cancel(sub.id)
    return sub


def unsubscribe_by_token(store: Store, settings: Settings, token: str, *, source: str = "web", actor: str = "",
                         now: datetime | None = None) -> SubscribeResult:
    """Use an unsubscribe link (these never expire). Idempotent."""
    subscriber, _sub, newslist = resolve_token(store, settings, token, "unsubscribe")
    assert subscriber.id is not None and newslist.id is not None
    sub = unsubscribe(store, settings, subscriber.id, newslist.id, source=source, actor=actor, now=now)
    return SubscribeResult(subscriber, sub, newslist, created=False, needs_confirmation=False)


def resubscribe(store: Store, settings: Settings, email: str, list_slug: str, *, source: str = "cli",
                actor: str = "", now: datetime | None = None) -> SubscribeResult:
    """An admin brings back someone who asked to return: active again, recorded."""
    return subscribe(store, settings, email, list_slug, source=source, actor=actor, confirmed=True,
                     resubscribe=True, now=now)


def unsubscribe_address(store: Store, settings: Settings, email: str, list_slug: str | None, *, source: str = "cli",
                        actor: str = "", now: datetime | None = None) -> list[Subscription]:
    """Unsubscribe an address from one list, or from every list if ``list_slug`` is None."""
    subscriber = store.get_subscriber(normalize_address(email))
    assert subscriber.id is not None
    if list_slug is not None:
        list_ids = [store.get_list(list_slug).id]
    else:
        list_ids = [s.list_id for s in store.subscriptions_of(subscriber.id)]
    return [unsubscribe(store, settings, subscriber.id, lid, source=source, actor=actor, now=now)
            for lid in list_ids if lid is not None]


def update_preferences(
    store: Store, settings: Settings, token: str, *, cadence: str | None = None, weekday: int | None = None,
    send_hour: int | None = None, timezone: str | None = None, categories: list[str] | None = None,
    name: str | None = None, source: str = "web", actor: str = "", now: datetime | None = None,
) -> SubscribeResult:
    """Change a subscriber's schedule, topics or time zone through a preferences link."""
    now = now or utcnow()
    if cadence is not None and cadence not in CADENCES:
        raise InputError(f"cadence {cadence!r} is not one of {', '.join(CADENCES)}")
    if weekday is not None and not 0 <= weekday <= 6:
        raise InputError(f"weekday {weekday} is not between 0 (Monday) and 6 (Sunday)")
    if send_hour is not None and not 0 <= send_hour <= 23:
        raise InputError(f"send hour {send_hour} is not between 0 and 23")
    with store.transaction(immediate=True):
        subscriber, sub, newslist = resolve_token(store, settings, token, "preferences")
        changes = []
        if timezone is not None or name is not None:
            subscriber.timezone = check_timezone(timezone) if timezone is not None else subscriber.timezone
            subscriber.name = one_line(name) if name is not None else subscriber.name
            store.update_subscriber(subscriber)
            changes.append(f"timezone={subscriber.timezone}")
        for attr, value in (("cadence", cadence), ("weekday", weekday), ("send_hour", send_hour)):
            if value is not None:
                setattr(sub, attr, value)
                changes.append(f"{attr}={value}")
        if categories is not None:
            sub.categories = check_categories(categories, newslist)
            changes.append(f"categories={','.join(sub.categories) or 'all'}")
        store.save_subscription(sub, _event("preferences", now, source, actor, sub, "; ".join(changes)))
    return SubscribeResult(subscriber, sub, newslist, created=False, needs_confirmation=False)


@dataclass
class ErasureReport:
    """What an erasure removed, and what it could not reach (copies outside the store)."""

    subscriptions: int
    sent_messages: int
    wal_emptied: bool
    unreachable: list[str]


def erase(store: Store, settings: Settings, email: str, *, source: str = "cli", actor: str = "",
          now: datetime | None = None) -> ErasureReport:
    """Erase a person (GDPR art. 17): subscriber, subscriptions, consent records and queued mail deleted;
    their events kept without actor, detail or link to them; only a sha256 of the
    address is kept, as a suppression. The freed bytes are overwritten
    (``secure_delete``) and the WAL is checkpointed; ``unreachable`` names what
    the store cannot erase: copies already with a relay or in a Maildir."""
    now = now or utcnow()
    address = normalize_address(email)
    subscriber = store.get_subscriber(address)
    assert subscriber.id is not None
    facts = store.erase_subscriber(
        subscriber.id, address_hash(address), Event(kind="erase", at=now, source=source, actor=one_line(actor)[:200])
    )
    unreachable: list[str] = []
    if not facts.wal_emptied:
        unreachable.append("the database's write-ahead log is still in use by another process; "
                           "it is emptied at its next checkpoint")
    copies = _maildir_copies(Path(settings.mail_maildir), address) if settings.mail_maildir else []
    if copies:
        unreachable.append(f"{len(copies):,} message(s) in the Maildir {settings.mail_maildir} still carry the "
                           f"address (delete them there): {', '.join(str(p) for p in copies[:5])}"
                           + (" ..." if len(copies) > 5 else ""))
    if facts.sent_messages and settings.smtp_host:
        unreachable.append(f"{facts.sent_messages:,} digest(s) already handed to the relay {settings.smtp_host}; "
                           "the relay's logs and the recipient's mailbox keep their copies")
    return ErasureReport(facts.subscriptions, facts.sent_messages, facts.wal_emptied, unreachable)


def _maildir_copies(root: Path, address: str) -> list[Path]:
    """Files under a Maildir (new/, cur/, tmp/) whose bytes name ``address`` (blind to case)."""
    needle = address.lower().encode("utf-8")
    found: list[Path] = []
    for sub in ("new", "cur", "tmp"):
        folder = root / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            try:
                if path.is_file() and needle in path.read_bytes().lower():
                    found.append(path)
            except OSError:
                continue
    return found


def purge_pending(store: Store, settings: Settings, *, older_than_days: int | None = None, source: str = "cli",
                  actor: str = "", now: datetime | None = None) -> int:
    """Delete pending subscriptions never confirmed within ``older_than_days`` (default from settings)."""
    days = settings.mail_pending_max_age_days if older_than_days is None else older_than_days
    if days < 0:
        raise InputError(f"--older-than {days}: give a number of days, 0 or more")
    return store.purge_pending((now or utcnow()) - timedelta(days=days), source=source, actor=actor)


@dataclass
class SubscriberReport:
    """Everything known about one subscriber, for ``subscriber show``."""

    subscriber: Subscriber
    subscriptions: list[tuple[Subscription, str]]  # with the list slug
    events: list[Event]
    consent: list[tuple[str, ConsentRecord]] = field(default_factory=list)  # (list slug, record)


def describe(store: Store, email: str) -> SubscriberReport:
    """A subscriber with their subscriptions, consent records and history."""
    subscriber = store.get_subscriber(normalize_address(email))
    assert subscriber.id is not None
    slugs = {nl.id: nl.slug for nl in store.all_lists()}
    subs = [(s, slugs.get(s.list_id, "?")) for s in store.subscriptions_of(subscriber.id)]
    consent = [(slug, rec) for s, slug in subs if s.id is not None and (rec := store.consent_for(s.id)) is not None]
    return SubscriberReport(subscriber, subs, store.events_for(subscriber.id), consent)


# -- lists -----------------------------------------------------------------------


def _check_list_fields(nl: NewsList) -> NewsList:
    if not nl.slug or slugify(nl.slug) != nl.slug:
        raise InputError(f"list slug {nl.slug!r} must be lower-case ASCII words joined by '-', e.g. {slugify(nl.slug or nl.name)!r}")
    nl.name = one_line(nl.name)
    if not nl.name:
        raise InputError(f"list {nl.slug!r} needs a --name")
    nl.description = one_line(nl.description)
    nl.sender_name = one_line(nl.sender_name)
    if nl.sender_address:
        nl.sender_address = normalize_address(nl.sender_address)
    nl.categories = sorted({slugify(c) for c in nl.categories if c.strip()})
    if nl.cadence not in CADENCES:
        raise InputError(f"cadence {nl.cadence!r} is not one of {', '.join(CADENCES)}")
    if not 0 <= nl.weekday <= 6:
        raise InputError(f"weekday {nl.weekday} is not between 0 (Monday) and 6 (Sunday)")
    if not 0 <= nl.send_hour <= 23:
        raise InputError(f"send hour {nl.send_hour} is not between 0 and 23")
    if (not isinstance(nl.max_age_days, int) or isinstance(nl.max_age_days, bool)
            or not 1 <= nl.max_age_days <= 36500):
        raise InputError(f"max_age_days {nl.max_age_days!r} is not a whole number of days from 1 to 36500")
    nl.language = one_line(nl.language) or "vi"
    return nl


def create_list(store: Store, newslist: NewsList, *, now: datetime | None = None) -> NewsList:
    """Create a newsletter after checking its fields (slug, sender address, cadence, hour)."""
    return store.create_list(_check_list_fields(newslist), now=now)


def update_list(store: Store, slug: str, **changes: Any) -> NewsList:
    """Change some fields of a list; ``None`` values are left alone."""
    nl = store.get_list(slug)
    for key, value in changes.items():
        if value is None:
            continue
        if not hasattr(nl, key) or key in ("id", "slug", "created"):
            raise InputError(f"a list has no field {key!r} that can be changed")
        setattr(nl, key, value)
    return store.update_list(_check_list_fields(nl))


def remove_list(store: Store, slug: str, *, force: bool = False) -> NewsList:
    """Remove a list; refuses while it has active or pending subscribers unless ``force``."""
    nl = store.get_list(slug)
    assert nl.id is not None
    live = store.count_subscriptions(nl.id, "active") + store.count_subscriptions(nl.id, "pending")
    if live and not force:
        raise InputError(f"list {slug!r} still has {live:,} active or pending subscribers; add --force to remove it anyway")
    store.remove_list(nl.id)
    return nl


def load_lists(store: Store, path: Path, *, now: datetime | None = None) -> list[NewsList]:
    """Create the lists described in a TOML file (``[[list]]`` tables); existing slugs are updated."""
    import tomllib

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read lists: {exc}") from None
    out = []
    known = {f for f in NewsList.__dataclass_fields__ if f not in ("id", "created")}
    for i, item in enumerate(doc.get("list", []), 1):
        extra = set(item) - known
        if extra or "slug" not in item:
            raise InputError(f"{path}: list #{i}: needs 'slug'; unknown keys {', '.join(sorted(extra)) or 'none'}")
        try:
            current = store.get_list(item["slug"])
        except NotFound:
            out.append(create_list(store, NewsList(**item), now=now))
        else:
            out.append(update_list(store, current.slug, **{k: v for k, v in item.items() if k != "slug"}))
    return out


# -- stats -----------------------------------------------------------------------


def stats(store: Store, *, days: int = 30, now: datetime | None = None) -> list[ListStats]:
    """Per list: counts by status, and joins/leaves over the last ``days`` days."""
    return store.list_stats((now or utcnow()) - timedelta(days=days))


# CSV import/export lives in subscriber_csv.py, which imports this module. Its names stay reachable
# here for older callers, loaded on first use (PEP 562) so that either module may be imported first.
# New code imports them from syndicate.subscriber_csv; type checkers do not see this fallback.
_CSV_NAMES = frozenset({"BATCH_SIZE", "EXPORT_COLUMNS", "CsvImport", "ImportReport", "export_csv", "import_csv"})

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in _CSV_NAMES:
            from . import subscriber_csv

            return getattr(subscriber_csv, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
