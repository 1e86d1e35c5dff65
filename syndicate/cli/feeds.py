"""``syndicate feeds`` commands."""

from __future__ import annotations
