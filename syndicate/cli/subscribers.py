"""``syndicate subscribers`` commands."""

from __future__ import annotations
