"""Dataclasses that cross module boundaries. No behaviour beyond conversions.

Times are timezone-aware ``datetime`` in UTC; the store keeps them as ISO 8601.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

SUBSCRIPTION_STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
CADENCES = ("daily", "weekly")
DELIVERY_STATUSES = ("queued", "sending", "sent", "failed", "unknown", "skipped", "cancelled")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def to_iso(value: datetime) -> str:
    """UTC ISO 8601 with seconds, the one format the store sorts on."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: syndicate only stores aware times")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def from_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class RelatedLink:
    """An entry of a page's "other news" list: kept beside, not in, the body."""

    title: str
    url: str = ""
    summary: str = ""
    date: str = ""


@dataclass
class Article:
    """One news article as stored; ``guid`` is its identity forever."""

    guid: str
    title: str
    slug: str
    published: datetime
    body_html: str = ""
    body_text: str = ""
    summary: str = ""
    url: str = ""
    author: str = ""
    category: str = ""
    tags: list[str] = field(default_factory=list)
    image: str = ""
    image_alt: str = ""
    source: str = ""
    language: str = ""
    updated: datetime | None = None
    related: list[RelatedLink] = field(default_factory=list)
    id: int | None = None
    origin: str = ""  # the file or URL it was imported from

    @property
    def category_slug(self) -> str:
        from .sanitize import slugify

        return slugify(self.category) if self.category else ""

    @property
    def changed(self) -> datetime:
        return self.updated or self.published


@dataclass
class NewsList:
    """A newsletter: who sends it, what it covers, when it goes out by default."""

    slug: str
    name: str
    description: str = ""
    sender_name: str = ""
    sender_address: str = ""
    categories: list[str] = field(default_factory=list)  # empty = all
    cadence: str = "daily"
    weekday: int = 0  # 0 = Monday, for weekly
    send_hour: int = 7
    language: str = "vi"
    id: int | None = None
    created: datetime | None = None
    max_age_days: int = 7  # a digest never carries an article published longer ago than this
    welcome: bool = True  # send the welcome email once a subscription is confirmed


@dataclass
class Subscriber:
    """One person, one normalised address."""

    email: str
    name: str = ""
    timezone: str = "Asia/Ho_Chi_Minh"
    locale: str = "vi"
    id: int | None = None
    created: datetime | None = None


@dataclass
class Subscription:
    """A subscriber's membership of one list, with their own schedule."""

    subscriber_id: int
    list_id: int
    status: str = "pending"
    cadence: str = "daily"
    weekday: int = 0
    send_hour: int = 7
    categories: list[str] = field(default_factory=list)  # empty = all of the list's
    created: datetime | None = None
    confirmed: datetime | None = None
    unsubscribed: datetime | None = None
    last_period: str = ""
    last_sent_at: datetime | None = None
    hard_bounces: int = 0
    id: int | None = None


@dataclass(frozen=True)
class Event:
    """An append-only record of a consent or status change."""

    kind: str  # subscribe, confirm, unsubscribe, bounce, complaint, import, admin, erase, resubscribe
    at: datetime
    source: str  # cli, web, import:<file>, sender, bounce
    actor: str = ""
    subscriber_id: int | None = None
    list_id: int | None = None
    detail: str = ""
    id: int | None = None


@dataclass
class Delivery:
    """One outbox row: one digest (or a notice: ``kind`` confirm/welcome) for one subscription and one period."""

    list_id: int
    subscriber_id: int
    subscription_id: int
    period: str
    status: str = "queued"
    attempts: int = 0
    next_attempt: datetime | None = None
    lease_until: datetime | None = None
    message_id: str = ""
    error: str = ""
    created: datetime | None = None
    sent_at: datetime | None = None
    id: int | None = None
    lease_owner: str = ""
    kind: str = "digest"
