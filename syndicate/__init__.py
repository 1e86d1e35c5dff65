"""syndicate: a self-hosted feed and newsletter syndication service.

One article store drives RSS/Atom/JSON feeds and templated email digests.
Read the package top to bottom in this order: errors, config, models, store,
sanitize, ingest, render, feeds, publish, subscribers, digest, mailer, sender,
web, cli.
"""

from __future__ import annotations

__version__ = "0.1.0"
