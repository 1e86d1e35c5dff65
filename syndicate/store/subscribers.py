"""Lists, subscribers, subscriptions, consent events and suppressions."""

from __future__ import annotations

from .base import StoreBase


class SubscriberQueries(StoreBase):
    pass
