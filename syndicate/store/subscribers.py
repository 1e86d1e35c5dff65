"""Lists, subscribers, subscriptions, consent events and suppressions."""

from __future__ import annotations

from sqlite_utils import Migrations

from .base import StoreBase

migrations = Migrations("syndicate.subscribers")


class SubscriberQueries(StoreBase):
    pass
