"""Public pages: home, articles, categories, subscribe, confirm, unsubscribe, preferences, archive."""

from __future__ import annotations
