"""The subscriber's pages: subscribe, confirm, unsubscribe, preferences; and the page routes.

:func:`routes` returns every page route for ``create_app`` (the reading pages
come from web/reading.py). Every route is wrapped in
:class:`~syndicate.web.guard.PageGuard` (web/guard.py), which adds the
security headers, caps request bodies (413) and turns any unexpected
exception into a plain 500 page, so no visitor ever sees a traceback.

Nothing here changes state on a GET: confirm and unsubscribe links show one
button whose POST acts, because mail scanners fetch every link. The signed
token in the URL is the credential for those POSTs; the preferences form
also carries a CSRF token. Forms are read by web/forms.py, every field
checked before anything is saved. Handlers call library functions
(``syndicate.subscribers``, ``syndicate.sender``); none holds SQL. Sync work
runs in Starlette's thread pool with ``ctx.store()``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import AddressError, InputError, NotFound, SyndicateError, TokenError
from ..models import NewsList, Subscriber, Subscription
from . import forms
from .base import NO_STORE, FeedLink, feed_links
from .context import WebContext
from .guard import MAX_BODY, SECURITY_HEADERS, PageGuard, RateLimits, SlidingWindow, TooLarge
from .reading import ReadingPages

log = logging.getLogger("syndicate.web")

__all__ = ["FeedLink", "MAX_BODY", "Pages", "RateLimits", "SlidingWindow", "csrf_token", "feed_links", "routes"]


# --- the pages -----------------------------------------------------------------------------------


def csrf_token(secret: str, token: str) -> str:
    """The form token that proves a preferences POST came from our own page.

    Example:
        >>> csrf_token("s", "abc") == csrf_token("s", "abc") != csrf_token("s", "abd")
        True
    """
    return hmac.new(secret.encode(), b"preferences-csrf|" + token.encode(), hashlib.sha256).hexdigest()


class Pages(ReadingPages):
    """The handlers; one instance per app, holding the context, words and rate limiters."""

    def __init__(self, ctx: WebContext, limits: RateLimits | None = None) -> None:
        super().__init__(ctx)
        limits = limits or RateLimits()
        self.ip_limit = SlidingWindow(limits.per_ip, limits.ip_window)
        self.address_limit = SlidingWindow(limits.per_address, limits.address_window)

    # subscribing ------------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        lang = self.lang_of()
        try:
            form = await forms.read_form(request, max_fields=50)
            email, name_raw, slug = forms.text(form, "email"), forms.text(form, "name"), forms.text(form, "list")
            wanted, trap = forms.texts(form, "categories"), forms.text(form, "website")
        except forms.FormError as exc:
            return self.form_error(lang, exc)
        ip = request.client.host if request.client else "unknown"
        if not self.ip_limit.hit(ip):
            return self.error(429, lang, "too_many", self.t(lang)["too_many_text"], {"retry-after": "600"})
        try:
            newslist, choices = await run_in_threadpool(self._list_and_choices, slug)
        except NotFound:
            return self.error(400, lang, "unknown_list", self.t(lang)["unknown_list_text"])
        lang = self.lang_of(newslist)
        from ..subscribers import address_hash, normalize_address

        try:
            address = normalize_address(email)
        except AddressError as exc:
            return self.error(400, lang, "bad_address", str(exc))
        try:
            name = forms.person_name(name_raw, "name_optional")
            categories = forms.topics(wanted, "topics", choices, newslist.name)
        except forms.FormError as exc:
            return self.form_error(lang, exc)
        if not self.address_limit.hit(address_hash(address)):  # the store's key: blind to case
            return self.error(429, lang, "too_many", self.t(lang)["too_many_text"], {"retry-after": "3600"})
        task = None
        if not trap:  # a bot filled the hidden field: same answer, nothing done
            task = BackgroundTask(self._subscribe_and_confirm, address, name, newslist.slug, categories, ip,
                                  request.headers.get("user-agent", ""))
        # The same page whatever the address's state, and all the work after the answer, so
        # neither the text nor the timing tells who is subscribed.
        return self.page(
            "subscribe-result.html", lang, headers=NO_STORE, background=task, email=address, newslist=newslist,
        )

    def _list_and_choices(self, slug: str) -> tuple[NewsList, list[tuple[str, str]]]:
        newslist = self.ctx.store().get_list(slug)
        return newslist, self.list_choices(newslist)

    def _subscribe_and_confirm(self, address: str, name: str, slug: str, categories: list[str], ip: str,
                               user_agent: str = "") -> None:
        from .. import subscribers

        store = self.ctx.store()
        try:
            result = subscribers.subscribe(
                store, self.settings, address, slug, name=name, categories=categories or None,
                source="web", actor=ip, ip=ip, user_agent=user_agent,
            )
            if not result.needs_confirmation:
                return
            assert result.subscription.id is not None
            from ..sender import notify

            # Queued in the outbox, then sent at once from this worker thread; on a relay error the
            # row stays queued (logged) and the next `syndicate send` retries it.
            notify(store, self.settings, "confirm", result.subscription.id)
        except SyndicateError as exc:
            log.info("web subscribe to %s not completed: %s", slug, exc)
        except Exception:
            log.exception("web subscribe to %s failed", slug)

    def _send_notices(self, subscription_id: int) -> None:
        """After the answer: send what the confirmation queued (the welcome email) at once."""
        from ..sender import deliver_notices

        try:
            deliver_notices(self.ctx.store(), self.settings, [subscription_id])
        except Exception:
            log.exception("sending the notices of subscription %d failed", subscription_id)

    def confirm_page(self, request: Request) -> Response:
        """GET shows one button and changes nothing: mail scanners fetch every link (only POST confirms)."""
        token = request.path_params["token"]
        try:
            subscriber, subscription, newslist = self._token_owner(token, "confirm")
        except (TokenError, NotFound):
            return self.bad_link(self.lang_of())
        if subscription.status == "active":  # opened again after confirming: say so, nothing to press
            return self._confirmed(subscriber, subscription, newslist)
        if subscription.status != "pending":
            return self.bad_link(self.lang_of(newslist))
        return self.page(
            "confirm.html", self.lang_of(newslist), headers=NO_STORE, ask=True, newslist=newslist,
            subscriber=subscriber, subscription=subscription, topics=self._topic_names(newslist, subscription),
        )

    async def confirm(self, request: Request) -> Response:
        """The page's button: the signed token in the URL is the credential, as for unsubscribe."""
        return await run_in_threadpool(self._confirm, request.path_params["token"], request)

    def _confirm(self, token: str, request: Request) -> Response:
        from .. import subscribers

        lang = self.lang_of()
        store = self.ctx.store()
        try:
            result = subscribers.confirm(store, self.settings, token, source="web",
                                         ip=request.client.host if request.client else "",
                                         user_agent=request.headers.get("user-agent", ""))
        except (TokenError, NotFound):
            return self.bad_link(lang)
        sid = result.subscription.id
        welcome = BackgroundTask(self._send_notices, sid) if result.created and sid is not None else None
        return self._confirmed(result.subscriber, result.subscription, result.newslist, background=welcome)

    def _topic_names(self, newslist: NewsList, subscription: Subscription) -> list[str]:
        names = dict(self.list_choices(newslist))
        return [names.get(c, c) for c in subscription.categories]

    def _confirmed(self, subscriber: Subscriber, subscription: Subscription, newslist: NewsList,
                   background: BackgroundTask | None = None) -> Response:
        from .. import subscribers

        assert subscriber.id is not None and newslist.id is not None
        return self.page(
            "confirm.html", self.lang_of(newslist), headers=NO_STORE, ask=False, newslist=newslist, background=background,
            subscriber=subscriber, subscription=subscription, topics=self._topic_names(newslist, subscription),
            preferences_href=subscribers.preferences_url(self.settings, subscriber.id, newslist.id, subscriber.email),
        )

    # leaving ----------------------------------------------------------------------

    def _token_owner(self, token: str, purpose: str) -> tuple[Subscriber, Subscription, NewsList]:
        """(subscriber, subscription, list) a token names; TokenError when it is forged or names nothing."""
        from ..subscribers import resolve_token

        return resolve_token(self.ctx.store(), self.settings, token, purpose)

    def unsubscribe_page(self, request: Request) -> Response:
        """GET shows one button and changes nothing: mail scanners fetch every link."""
        from .. import subscribers

        token = request.path_params["token"]
        try:
            subscriber, _, newslist = self._token_owner(token, "unsubscribe")
        except (TokenError, NotFound):
            return self.bad_link(self.lang_of())
        assert subscriber.id is not None and newslist.id is not None
        return self.page(
            "unsubscribe.html", self.lang_of(newslist), headers=NO_STORE, done=False, newslist=newslist,
            email=subscriber.email,
            preferences_href=subscribers.preferences_url(self.settings, subscriber.id, newslist.id, subscriber.email),
        )

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058 one-click (``List-Unsubscribe=One-Click``, urlencoded or multipart) or the page's button."""
        try:
            await request.form(max_files=0, max_fields=20)
        except TooLarge:
            raise
        except Exception:  # a body we cannot parse is no reason to keep mailing someone
            pass
        return await run_in_threadpool(self._unsubscribe, request.path_params["token"])

    def _unsubscribe(self, token: str) -> Response:
        from .. import subscribers

        try:
            _, _, newslist = self._token_owner(token, "unsubscribe")
            subscribers.unsubscribe_by_token(self.ctx.store(), self.settings, token, source="web")
        except (TokenError, NotFound):
            return self.bad_link(self.lang_of())
        return self.page("unsubscribe.html", self.lang_of(newslist), headers=NO_STORE, done=True, newslist=newslist)

    # preferences ------------------------------------------------------------------

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method != "POST":
            return await run_in_threadpool(self._preferences, token, None)
        try:
            form = await forms.read_form(request, max_fields=100)
            fields: dict[str, Any] = {
                name: forms.text(form, name) for name in ("csrf", "name", "cadence", "weekday", "send_hour", "timezone")
            }
            fields["has_name"] = "name" in form
            fields["categories"] = forms.texts(form, "categories")
        except forms.FormError as exc:
            return self.form_error(self.lang_of(), exc)
        return await run_in_threadpool(self._preferences, token, fields)

    def _preferences(self, token: str, form: dict[str, Any] | None) -> Response:
        from .. import subscribers

        try:
            subscriber, subscription, newslist = self._token_owner(token, "preferences")
        except (TokenError, NotFound):
            return self.bad_link(self.lang_of())
        lang = self.lang_of(newslist)
        assert subscriber.id is not None and newslist.id is not None
        csrf = csrf_token(self.settings.require_secret(), token)
        status, error, saved = 200, "", False
        if form is not None:
            if not hmac.compare_digest(form["csrf"].encode(), csrf.encode()):
                return self.error(403, lang, "bad_request", self.t(lang)["csrf_failed"])
            t = self.t(lang)
            try:
                choices = self.list_choices(newslist)
                # Every field is read before anything is saved: one bad value changes nothing.
                cadence = forms.choice(form["cadence"], "cadence", dict(t["cadences"]))
                weekday = forms.whole_number(form["weekday"], "weekday", 0, 6)
                send_hour = forms.whole_number(form["send_hour"], "send_hour", 0, 23)
                timezone = forms.time_zone(form["timezone"], "timezone")
                categories = forms.topics(form["categories"], "topics", choices, newslist.name)
                name = forms.person_name(form["name"], "name_optional") if form["has_name"] else None
                result = subscribers.update_preferences(
                    self.ctx.store(), self.settings, token, cadence=cadence, weekday=weekday, send_hour=send_hour,
                    timezone=timezone, categories=categories, name=name,
                )
                saved = True
                subscriber, subscription, newslist = result.subscriber, result.subscription, result.newslist
            except forms.FormError as exc:
                status, error = 400, exc.message(t)
            except InputError as exc:
                status, error = 400, str(exc)
        assert subscriber.id is not None and newslist.id is not None
        return self.page(
            "preferences.html", lang, status, headers=NO_STORE, subscriber=subscriber, subscription=subscription,
            newslist=newslist, csrf=csrf, saved=saved, error=error, choices=self.list_choices(newslist),
            zones=self.zones, unsubscribe_href=subscribers.unsubscribe_url(
                self.settings, subscriber.id, newslist.id, subscriber.email
            ),
        )


def routes(ctx: WebContext, *, limits: RateLimits | None = None, max_body: int = MAX_BODY) -> list[BaseRoute]:
    """The public page routes, each behind :class:`PageGuard`.

    Example:
        >>> from syndicate.config import Settings
        >>> sorted({r.path for r in routes(WebContext(Settings()))})[:3]
        ['/', '/archive/{list}', '/archive/{list}/{period}']
    """
    pages = Pages(ctx, limits)
    guard = [Middleware(PageGuard, render_error=pages.error_bytes, max_body=max_body)]

    def route(path: str, endpoint: Callable[[Request], Any], methods: list[str]) -> Route:
        return Route(path, endpoint, methods=methods, middleware=guard)

    return [
        route("/", pages.home, ["GET"]),
        route("/static/site.css", pages.stylesheet, ["GET"]),
        route("/articles/{slug}/", pages.article, ["GET"]),
        route("/articles/{slug}", pages.article, ["GET"]),  # 301 to the slash form
        route("/category/{slug}/", pages.category, ["GET"]),
        route("/category/{slug}", pages.moved_to_slash, ["GET"]),
        route("/list/{slug}/", pages.news_list, ["GET"]),
        route("/list/{slug}", pages.moved_to_slash, ["GET"]),
        route("/subscribe", pages.subscribe, ["POST"]),
        route("/confirm/{token}", pages.confirm_page, ["GET"]),
        route("/confirm/{token}", pages.confirm, ["POST"]),
        route("/unsubscribe", pages.personal_link, ["GET"]),
        route("/preferences", pages.personal_link, ["GET"]),
        route("/unsubscribe/{token}", pages.unsubscribe_page, ["GET"]),
        route("/unsubscribe/{token}", pages.unsubscribe, ["POST"]),
        route("/preferences/{token}", pages.preferences, ["GET", "POST"]),
        route("/archive/{list}", pages.archive_index, ["GET"]),
        route("/archive/{list}/{period}", pages.archive_digest, ["GET"]),
        route("/r/{token}", pages.click, ["GET"]),
    ]


def exception_handlers(ctx: WebContext) -> dict[Any, Callable[[Request, Exception], Response]]:
    """Friendly 404/405/500 pages for paths no route matched (for ``Starlette(exception_handlers=...)``)."""
    pages = Pages(ctx)

    def handler(request: Request, exc: Exception) -> Response:
        status = int(getattr(exc, "status_code", 500))
        body = pages.error_bytes(status)
        return Response(body, status_code=status, media_type="text/html", headers=SECURITY_HEADERS)

    return {404: handler, 405: handler, 500: handler}
