"""What every page handler shares: words, templates, error pages, feed links.

:class:`PageBase` holds the context and the helpers; the reading pages
(web/reading.py) and the subscription pages (web/pages.py) build on it.
"""

from __future__ import annotations

import hashlib
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import Response

from ..models import NewsList
from ..render import load_strings, pick_language
from . import forms
from .context import WebContext

NO_STORE = {"cache-control": "no-store"}
# Paths that name a list, directly or through a signed token: their error pages speak the list's language.
_LIST_PATH = re.compile(r"/(?:list|archive)/([^/]+)")
_TOKEN_PATH = re.compile(r"/(confirm|unsubscribe|preferences)/([^/]+)")


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



class PageBase:
    """The context, the words of every language, and the helpers each handler uses."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
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

    def list_of_path(self, path: str) -> NewsList | None:
        """The list a page URL belongs to (``/list/<slug>/…``, ``/archive/<slug>/…``, a token's list), or None."""
        from ..subscribers import read_token

        try:
            if match := _LIST_PATH.match(path):
                return self.ctx.store().get_list(match.group(1))
            if match := _TOKEN_PATH.match(path):
                return self.ctx.store().get_list_by_id(read_token(self.settings, match.group(2), match.group(1))[1])
        except Exception:  # an error page must render whatever broke (a forged token, a missing database)
            return None
        return None

    def lang_for(self, path: str) -> str:
        """The language of the page at ``path``: its list's, else the site's."""
        return self.lang_of(self.list_of_path(path))

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

    def error_bytes(self, status: int, path: str = "") -> bytes:
        """The body of a generic error page at ``path``, in its list's language (the guard, ``exception_handlers``)."""
        lang = self.lang_for(path)
        t = self.t(lang)
        keys = {
            400: ("bad_request", "bad_link_text"), 404: ("not_found", "not_found_text"),
            413: ("too_large", "too_large_text"), 429: ("too_many", "too_many_text"),
        }
        heading, text = keys.get(status, ("server_error", "server_error_text"))
        return self.render_bytes("error.html", lang, status=status, heading=t[heading], message=t[text])

    def form_error(self, lang: str, exc: forms.FormError) -> Response:
        return self.error(400, lang, "bad_request", exc.message(self.t(lang)))

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
