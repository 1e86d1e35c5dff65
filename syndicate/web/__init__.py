"""The ASGI app behind ``syndicate serve``: feeds (web/feeds.py) and pages (web/pages.py)."""

from __future__ import annotations
