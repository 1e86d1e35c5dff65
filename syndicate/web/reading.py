"""The reading pages: home, articles, categories, lists, the digest archive, the stylesheet.

Each is served at the exact URL the feeds carry (``/``, ``/articles/<slug>/``,
``/category/<slug>/``, ``/list/<slug>/``): readers keep the URL they were
given, and the static site cannot answer a redirect. The slash-less
``/category/<slug>`` and ``/list/<slug>`` (older links) move permanently to
the canonical form.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import NotFound
from ..models import Article
from ..sanitize import clean_html, paragraphs_to_html
from .base import PageBase, feed_links
from .guard import CSP_DIGEST

_PERIOD = re.compile(r"^[0-9A-Za-z-]{4,24}$")
_TOPICS = re.compile(r"^[a-z0-9,-]{1,500}$")
_BODY_TAG = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")  # the slugs feeds.Scope accepts in a URL
RECENT = 30  # articles on a category or list page; older ones are in its feed


class ReadingPages(PageBase):
    """Pages anyone may read; none changes anything."""

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
            article = store.public_article(key)  # NotFound while embargoed
        except NotFound:
            return self.not_found(self.lang_of())
        if article.slug != key or not request.url.path.endswith("/"):  # one canonical URL, as the feeds carry
            return RedirectResponse(f"/articles/{quote(article.slug, safe='-._~')}/", status_code=301)
        lang = article.language or self.lang_of()
        feeds = feed_links(self.settings.title)
        if article.category_slug:
            feeds += feed_links(f"{self.settings.title}: {article.category}", f"/category/{article.category_slug}")
        return self.page(
            "article.html", lang, article=article, body=_article_body(article), feeds=feeds,
            canonical=f"{self.settings.base_url}/articles/{article.slug}/",
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
        articles = store.newest_articles(RECENT, category_slug=slug)
        return self.page(
            "category.html", self.lang_of(), slug=slug, name=name, articles=articles, more=count > len(articles),
            category_feeds=category_feeds, feeds=category_feeds + feed_links(self.settings.title),
        )

    def news_list(self, request: Request) -> Response:
        """A newsletter list's own page: what it is, its form, its recent articles and its feeds."""
        slug = request.path_params["slug"]
        store = self.ctx.store()
        try:
            newslist = store.get_list(slug)
        except NotFound:
            return self.not_found(self.lang_of())
        lang = self.lang_of(newslist)
        list_feeds = feed_links(newslist.name, f"/list/{slug}") if _SLUG.match(slug) else []
        articles = store.newest_in_categories(RECENT, newslist.categories or None)
        return self.page(
            "list.html", lang, newslist=newslist, choices=self.list_choices(newslist), articles=articles,
            list_feeds=list_feeds, feeds=list_feeds + feed_links(self.settings.title),
        )

    def moved_to_slash(self, request: Request) -> Response:
        """``/category/<slug>`` and ``/list/<slug>``: one permanent move to the URL the feeds carry."""
        slug = request.path_params["slug"]
        kind = request.url.path.split("/")[1]
        store = self.ctx.store()
        try:
            if kind == "list":
                store.get_list(slug)
            elif not any(s == slug for s, _, _ in store.categories()):
                raise NotFound(slug)
        except NotFound:
            return self.not_found(self.lang_of())
        return RedirectResponse(f"/{kind}/{quote(slug, safe='-._~')}/", status_code=301)

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
            digests=store.archived_digests(newslist.id), tz=self.settings.tz,
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
            return self.not_found(self.lang_for(request.url.path))
        if digest is None:
            return self.not_found(self.lang_of(newslist))
        match = _BODY_TAG.search(digest.html)
        body = Markup(match.group(1) if match else digest.html)  # our own rendering of sanitised articles
        return self.page(
            "archive-digest.html", self.lang_of(newslist), headers={"content-security-policy": CSP_DIGEST},
            newslist=newslist, subject=digest.subject, body=body,
        )


    # click tracking (only lists that opt in send these links) ---------------------------

    def click(self, request: Request) -> Response:
        """``/r/<token>``: count the click and go to the campaign's stored link; anything else is a 404."""
        from .. import campaigns

        url = campaigns.follow_click(self.ctx.store(), self.settings, request.path_params["token"])
        if url is None:
            return self.not_found(self.lang_of())
        return RedirectResponse(url, status_code=302, headers={"cache-control": "no-store", "referrer-policy": "no-referrer"})


def _article_body(article: Article) -> Markup:
    """Sanitised again at render time: whatever reached the store, no script reaches the page."""
    if article.body_html:
        return Markup(clean_html(article.body_html))
    paragraphs = [("p", p) for p in article.body_text.split("\n\n") if p.strip()]
    return Markup(paragraphs_to_html(paragraphs))
