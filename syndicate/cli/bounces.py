"""``syndicate bounces`` commands."""

from __future__ import annotations
