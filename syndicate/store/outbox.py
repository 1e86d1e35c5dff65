"""The outbox: deliveries planned, claimed with a lease, sent, retried."""

from __future__ import annotations

from sqlite_utils import Migrations

from .base import StoreBase

migrations = Migrations("syndicate.outbox")


class OutboxQueries(StoreBase):
    pass
