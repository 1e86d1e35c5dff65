"""The outbox: deliveries planned, claimed with a lease, sent, retried."""

from __future__ import annotations

from .base import StoreBase


class OutboxQueries(StoreBase):
    pass
