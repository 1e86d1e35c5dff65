"""Public pages: home, articles, categories, subscribe, confirm, unsubscribe, preferences, archive.

:func:`routes` returns the page routes for ``create_app``. Every route is
wrapped in :class:`~syndicate.web.guard.PageGuard` (web/guard.py), which adds the security headers, caps request
bodies (413) and turns any unexpected exception into a plain 500 page, so no
visitor ever sees a traceback. Handlers call library functions
(``syndicate.subscribers``, ``syndicate.sender``) and store queries; none
holds SQL. Sync work runs in Starlette's thread pool with ``ctx.store()``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import AddressError, InputError, NotFound, SyndicateError, TokenError
from ..models import Article, NewsList, Subscriber, Subscription
from ..render import load_strings, pick_language
from ..sanitize import clean_html, one_line, paragraphs_to_html
from .context import WebContext
from .guard import CSP_DIGEST, MAX_BODY, SECURITY_HEADERS, PageGuard, RateLimits, SlidingWindow, TooLarge

log = logging.getLogger("syndicate.web")

NO_STORE = {"cache-control": "no-store"}
_PERIOD = re.compile(r"^[0-9A-Za-z-]{4,24}$")
_TOPICS = re.compile(r"^[a-z0-9,-]{1,500}$")
_BODY_TAG = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)


# --- feed links ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedLink:
    """One autodiscovery ``<link rel="alternate">`` and its visible label."""

    href: str
    type: str
    title: str
    label: str


_KINDS = (("rss.xml", "application/rss+xml", "RSS"), ("atom.xml", "application/atom+xml", "Atom"),
          ("feed.json", "application/feed+json", "JSON Feed"))


def feed_links(title: str, prefix: str = "") -> list[FeedLink]:
    """RSS, Atom and JSON Feed links under ``prefix`` (``/category/<slug>`` or the site root).

    Example:
        >>> [f.href for f in feed_links("Tin", "/category/kinh-te")]
        ['/category/kinh-te/rss.xml', '/category/kinh-te/atom.xml', '/category/kinh-te/feed.json']
    """
    return [FeedLink(f"{prefix}/{name}", mime, f"{title} ({label})", label) for name, mime, label in _KINDS]


# --- the pages -----------------------------------------------------------------------------------


def csrf_token(secret: str, token: str) -> str:
    """The form token that proves a preferences POST came from our own page.

    Example:
        >>> csrf_token("s", "abc") == csrf_token("s", "abc") != csrf_token("s", "abd")
        True
    """
    return hmac.new(secret.encode(), b"preferences-csrf|" + token.encode(), hashlib.sha256).hexdigest()


class Pages:
    """The handlers; one instance per app, holding the context, words and rate limiters."""

    def __init__(self, ctx: WebContext, limits: RateLimits | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        limits = limits or RateLimits()
        self.ip_limit = SlidingWindow(limits.per_ip, limits.ip_window)
        self.address_limit = SlidingWindow(limits.per_address, limits.address_window)
        self.strings = load_strings(ctx.env, "web/strings.toml")
        self.zones = sorted(zoneinfo.available_timezones())
        self._css = self._load_source("web/site.css").encode("utf-8")
        self._css_etag = '"' + hashlib.sha256(self._css).hexdigest()[:16] + '"'

    # helpers ----------------------------------------------------------------

    def _load_source(self, name: str) -> str:
        loader = self.ctx.env.loader
        assert loader is not None
        return loader.get_source(self.ctx.env, name)[0]

    def t(self, lang: str) -> dict[str, Any]:
        return pick_language(self.strings, lang)

    def lang_of(self, newslist: NewsList | None = None) -> str:
        return (newslist.language if newslist and newslist.language else self.settings.language) or "en"

    def render_bytes(self, template: str, lang: str, /, **values: Any) -> bytes:
        values.setdefault("feeds", feed_links(self.settings.title))
        html = self.ctx.env.get_template(f"web/{template}").render(lang=lang, t=self.t(lang), **values)
        return html.encode("utf-8")

    def page(
        self, template: str, lang: str, code: int = 200, /, *, headers: dict[str, str] | None = None,
        background: BackgroundTask | None = None, **values: Any,
    ) -> Response:
        return Response(
            self.render_bytes(template, lang, **values), status_code=code, media_type="text/html",
            headers=headers, background=background,
        )

    def error(self, status: int, lang: str, heading_key: str, text: str, headers: dict[str, str] | None = None) -> Response:
        t = self.t(lang)
        return self.page(
            "error.html", lang, status, headers={**NO_STORE, **(headers or {})},
            status=status, heading=t[heading_key], message=text,
        )

    def error_bytes(self, status: int) -> bytes:
        """The body of a generic error page (used by the guard and ``exception_handlers``)."""
        lang = self.lang_of()
        t = self.t(lang)
        keys = {
            400: ("bad_request", "bad_link_text"), 404: ("not_found", "not_found_text"),
            413: ("too_large", "too_large_text"), 429: ("too_many", "too_many_text"),
        }
        heading, text = keys.get(status, ("server_error", "server_error_text"))
        return self.render_bytes("error.html", lang, status=status, heading=t[heading], message=t[text])

    def bad_link(self, lang: str) -> Response:
        return self.error(400, lang, "bad_link", self.t(lang)["bad_link_text"])

    def not_found(self, lang: str) -> Response:
        return self.error(404, lang, "not_found", self.t(lang)["not_found_text"])

    def list_choices(self, newslist: NewsList) -> list[tuple[str, str]]:
        """(slug, label) of the categories a subscriber of ``newslist`` may pick."""
        names = {slug: name for slug, name, _ in self.ctx.store().categories()}
        if newslist.categories:
            return [(slug, names.get(slug, slug)) for slug in newslist.categories]
        return sorted(names.items(), key=lambda item: item[1].casefold())

    # static -----------------------------------------------------------------

    def stylesheet(self, request: Request) -> Response:
        headers = {"etag": self._css_etag, "cache-control": "public, max-age=3600"}
        if request.headers.get("if-none-match") == self._css_etag:
            return Response(status_code=304, headers=headers)
        return Response(self._css, media_type="text/css; charset=utf-8", headers=headers)

    # reading ------------------------------------------------------------------

    def home(self, request: Request) -> Response:
        store = self.ctx.store()
        lang = self.lang_of()
        categories = store.categories()
        lists = []
        for newslist in store.all_lists():
            nl_lang = self.lang_of(newslist)
            lists.append({"newslist": newslist, "choices": self.list_choices(newslist), "t": self.t(nl_lang)})
        feeds = feed_links(self.settings.title)
        for slug, name, _ in categories:
            feeds += feed_links(f"{self.settings.title}: {name}", f"/category/{slug}")[:1]
        return self.page(
            "home.html", lang, articles=store.newest_articles(20), lists=lists, categories=categories, feeds=feeds,
        )

    def article(self, request: Request) -> Response:
        key = request.path_params["slug"]
        store = self.ctx.store()
        try:
            article = store.get_article(key)
        except NotFound:
            return self.not_found(self.lang_of())
        if article.slug != key:
            return RedirectResponse(f"/articles/{article.slug}", status_code=301)
        lang = article.language or self.lang_of()
        feeds = feed_links(self.settings.title)
        if article.category_slug:
            feeds += feed_links(f"{self.settings.title}: {article.category}", f"/category/{article.category_slug}")
        return self.page(
            "article.html", lang, article=article, body=_article_body(article), feeds=feeds,
            canonical=f"{self.settings.base_url}/articles/{article.slug}",
            body_text_start=article.body_text[: len(article.summary) + 40], lists=store.all_lists(),
        )

    def category(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        store = self.ctx.store()
        found = [(s, name, count) for s, name, count in store.categories() if s == slug]
        if not found:
            return self.not_found(self.lang_of())
        _, name, count = found[0]
        category_feeds = feed_links(f"{self.settings.title}: {name}", f"/category/{slug}")
        articles = store.newest_articles(30, category_slug=slug)
        return self.page(
            "category.html", self.lang_of(), slug=slug, name=name, articles=articles, more=count > len(articles),
            category_feeds=category_feeds, feeds=category_feeds + feed_links(self.settings.title),
        )

    # subscribing ------------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=50)
        email = str(form.get("email") or "")
        name = one_line(str(form.get("name") or ""))[:100]
        slug = str(form.get("list") or "")
        wanted = [str(c) for c in form.getlist("categories")]
        trap = str(form.get("website") or "")
        ip = request.client.host if request.client else "unknown"
        lang = self.lang_of()
        if not self.ip_limit.hit(ip):
            return self.error(429, lang, "too_many", self.t(lang)["too_many_text"], {"retry-after": "600"})
        try:
            newslist, choices = await run_in_threadpool(self._list_and_choices, slug)
        except NotFound:
            return self.error(400, lang, "unknown_list", self.t(lang)["unknown_list_text"])
        lang = self.lang_of(newslist)
        from ..subscribers import normalize_address

        try:
            address = normalize_address(email)
        except AddressError as exc:
            return self.error(400, lang, "bad_address", str(exc))
        key = hashlib.sha256(address.encode()).hexdigest()
        if not self.address_limit.hit(key):
            return self.error(429, lang, "too_many", self.t(lang)["too_many_text"], {"retry-after": "3600"})
        allowed = {s for s, _ in choices}
        categories = [c for c in dict.fromkeys(wanted) if c in allowed]
        task = None
        if not trap:  # a bot filled the hidden field: same answer, nothing done
            task = BackgroundTask(self._subscribe_and_confirm, address, name, newslist.slug, categories, ip)
        # The same page whatever the address's state, and all the work after the answer, so
        # neither the text nor the timing tells who is subscribed.
        return self.page(
            "subscribe-result.html", lang, headers=NO_STORE, background=task, email=address, newslist=newslist,
        )

    def _list_and_choices(self, slug: str) -> tuple[NewsList, list[tuple[str, str]]]:
        newslist = self.ctx.store().get_list(slug)
        return newslist, self.list_choices(newslist)

    def _subscribe_and_confirm(self, address: str, name: str, slug: str, categories: list[str], ip: str) -> None:
        from .. import subscribers

        store = self.ctx.store()
        try:
            result = subscribers.subscribe(
                store, self.settings, address, slug, name=name, categories=categories or None,
                source="web", actor=ip,
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

    def confirm(self, request: Request) -> Response:
        from .. import subscribers

        token = request.path_params["token"]
        lang = self.lang_of()
        store = self.ctx.store()
        try:
            result = subscribers.confirm(store, self.settings, token, source="web")
        except (TokenError, NotFound):
            return self.bad_link(lang)
        newslist, subscription = result.newslist, result.subscription
        assert result.subscriber.id is not None and newslist.id is not None and subscription.id is not None
        names = dict(self.list_choices(newslist))
        welcome = BackgroundTask(self._send_notices, subscription.id) if result.created else None
        return self.page(
            "confirm.html", self.lang_of(newslist), headers=NO_STORE, background=welcome, newslist=newslist,
            subscriber=result.subscriber, subscription=subscription,
            topics=[names.get(c, c) for c in subscription.categories],
            preferences_href=subscribers.preferences_url(
                self.settings, result.subscriber.id, newslist.id, result.subscriber.email
            ),
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
        form = await request.form(max_files=0, max_fields=100)
        fields = {
            "csrf": str(form.get("csrf") or ""), "cadence": str(form.get("cadence") or ""),
            "weekday": str(form.get("weekday") or ""), "send_hour": str(form.get("send_hour") or ""),
            "timezone": str(form.get("timezone") or "").strip(),
            "categories": [str(c) for c in form.getlist("categories")],
        }
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
            try:
                choices = {s for s, _ in self.list_choices(newslist)}
                result = subscribers.update_preferences(
                    self.ctx.store(), self.settings, token,
                    cadence=form["cadence"] or None,
                    weekday=_int_or_none(form["weekday"], "weekday"),
                    send_hour=_int_or_none(form["send_hour"], "send_hour"),
                    timezone=form["timezone"] or None,
                    categories=[c for c in dict.fromkeys(form["categories"]) if c in choices],
                )
                saved = True
                subscriber, subscription, newslist = result.subscriber, result.subscription, result.newslist
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

    def personal_link(self, request: Request) -> Response:
        """The archived digest's generic unsubscribe/preferences links: say where the personal one is."""
        lang = self.lang_of()
        t = self.t(lang)
        return self.page("error.html", lang, 200, status="", heading=t["personal_link"], message=t["personal_link_text"])

    # archive ----------------------------------------------------------------------

    def archive_index(self, request: Request) -> Response:
        store = self.ctx.store()
        try:
            newslist = store.get_list(request.path_params["list"])
        except NotFound:
            return self.not_found(self.lang_of())
        assert newslist.id is not None
        return self.page(
            "archive-index.html", self.lang_of(newslist), newslist=newslist,
            digests=store.archived_digests(newslist.id),
        )

    def archive_digest(self, request: Request) -> Response:
        store = self.ctx.store()
        period = request.path_params["period"]
        try:
            newslist = store.get_list(request.path_params["list"])
            if not _PERIOD.match(period):
                raise NotFound(period)
            assert newslist.id is not None
            topics = request.query_params.get("topics")
            digest = None
            if topics and _TOPICS.match(topics):  # the reader's own topic set, from their email's link
                try:
                    digest = store.get_archived_digest(newslist.id, period, topics)
                except NotFound:
                    digest = None
            digest = digest or store.get_archived_digest(newslist.id, period)
        except NotFound:
            return self.not_found(self.lang_of())
        if digest is None:
            return self.not_found(self.lang_of(newslist))
        match = _BODY_TAG.search(digest.html)
        body = Markup(match.group(1) if match else digest.html)  # our own rendering of sanitised articles
        return self.page(
            "archive-digest.html", self.lang_of(newslist), headers={"content-security-policy": CSP_DIGEST},
            newslist=newslist, subject=digest.subject, body=body,
        )


def _int_or_none(value: str, name: str) -> int | None:
    if not value:
        return None
    if not value.isdigit():
        raise InputError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def _article_body(article: Article) -> Markup:
    """Sanitised again at render time: whatever reached the store, no script reaches the page."""
    if article.body_html:
        return Markup(clean_html(article.body_html))
    paragraphs = [("p", p) for p in article.body_text.split("\n\n") if p.strip()]
    return Markup(paragraphs_to_html(paragraphs))


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
        route("/articles/{slug}", pages.article, ["GET"]),
        route("/category/{slug}", pages.category, ["GET"]),
        route("/subscribe", pages.subscribe, ["POST"]),
        route("/confirm/{token}", pages.confirm, ["GET"]),
        route("/unsubscribe", pages.personal_link, ["GET"]),
        route("/preferences", pages.personal_link, ["GET"]),
        route("/unsubscribe/{token}", pages.unsubscribe_page, ["GET"]),
        route("/unsubscribe/{token}", pages.unsubscribe, ["POST"]),
        route("/preferences/{token}", pages.preferences, ["GET", "POST"]),
        route("/archive/{list}", pages.archive_index, ["GET"]),
        route("/archive/{list}/{period}", pages.archive_digest, ["GET"]),
    ]


def exception_handlers(ctx: WebContext) -> dict[Any, Callable[[Request, Exception], Response]]:
    """Friendly 404/405/500 pages for paths no route matched (for ``Starlette(exception_handlers=...)``)."""
    pages = Pages(ctx)

    def handler(request: Request, exc: Exception) -> Response:
        status = int(getattr(exc, "status_code", 500))
        body = pages.error_bytes(status)
        return Response(body, status_code=status, media_type="text/html", headers=SECURITY_HEADERS)

    return {404: handler, 405: handler, 500: handler}
