"""The ASGI app behind ``syndicate serve``: feeds (web/feeds.py), the admin API (syndicate/api/) and pages (web/pages.py).

The ``/api/v1`` mount comes first (one prefix test), then the feed routes so
a feed URL never reaches a page handler; the page routes are whatever
``syndicate.web.pages.routes(ctx)`` returns. While the app runs, webhook
deliveries run as a background task (``[webhooks] serve_interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from ..config import Settings
from . import feeds as feed_web
from .context import WebContext


def create_app(settings: Settings) -> Starlette:
    """The whole web app: feeds with conditional GET, then the public pages.

    Example:
        >>> from syndicate.config import Settings
        >>> app = create_app(Settings())
        >>> [r.path for r in app.routes][:4]
        ['/api/v1', '/rss.xml', '/atom.xml', '/feed.json']
    """
    from ..api import routes as api_routes
    from . import pages

    ctx = WebContext(settings)
    cache = feed_web.FeedCache(ctx)
    mounted, api = api_routes(ctx)  # first: one prefix test sends every /api/v1 request on its way
    routes: list[BaseRoute] = [*mounted, *feed_web.routes(ctx, cache)]
    page_routes = getattr(pages, "routes", None)
    if callable(page_routes):
        routes += page_routes(ctx)
    handlers: dict[Any, Any] = {}
    page_handlers = getattr(pages, "exception_handlers", None)
    if callable(page_handlers):
        handlers = page_handlers(ctx)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from ..webhooks import WebhookPolicy, run_in_background

        WebhookPolicy.from_settings(settings)  # a bad [webhooks] setting stops serve from starting, not later
        stop = asyncio.Event()  # webhook deliveries run beside the requests, never inside one
        deliverer = asyncio.create_task(run_in_background(settings, stop))
        try:
            yield
        finally:
            stop.set()
            try:  # a POST under way may finish within its deadline
                await asyncio.wait_for(deliverer, settings.webhooks_timeout + 5)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:  # already logged by the deliverer; never let it spoil a clean stop
                pass
            api.close()
            cache.close()

    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.ctx = ctx
    app.state.feed_cache = cache
    app.state.api = api
    return app
