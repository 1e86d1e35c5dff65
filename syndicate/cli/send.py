"""``syndicate send`` commands."""

from __future__ import annotations
