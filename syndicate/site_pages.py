"""The site's HTML pages: the index page of each scope and one page per article.

Both advertise the feeds for autodiscovery; an article's page is what the
``/articles/<slug>/`` links in the feeds resolve to on a static site.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import jinja2
from markupsafe import Markup

from .config import Settings
from .feeds import SITE, FeedItem, FeedLink, Scope, base, feed_item, feed_links
from .models import Article
from .render import format_date
from .site_files import Writer


def render_index(
    env: jinja2.Environment,
    settings: Settings,
    scope: Scope,
    items: list[FeedItem],
    categories: list[tuple[str, str, int]],
    lists: list[Scope] | None = None,
) -> bytes:
    """The static index page of a scope, advertising every feed for autodiscovery."""
    own = feed_links(settings, scope)
    discover = list(own) + (feed_links(settings, SITE) if scope.kind != "site" else [])
    cats = []
    for slug, name, count in categories:
        cat_scope = Scope.category(slug, name)
        links = feed_links(settings, cat_scope)
        discover += links
        cats.append({"name": name, "count": count, "page": base(settings) + cat_scope.page_path(), "feeds": links})
    news_lists = []
    for list_scope_ in lists or []:
        links = feed_links(settings, list_scope_)
        discover += links
        news_lists.append({"name": list_scope_.name, "description": list_scope_.description, "feeds": links})
    html = env.get_template("web/site-index.html").render(
        title=scope.title(settings),
        subtitle=settings.subtitle,
        language=settings.language,
        feeds=discover,
        own_feeds=own,
        categories=cats,
        lists=news_lists,
        items=items,
    )
    return html.encode("utf-8")


_PAGE_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,199}$")


def article_page_file(article: Article) -> str | None:
    """Where the static site keeps an article's page (``articles/<slug>/index.html``), or None for a
    slug no file name can carry."""
    return f"articles/{article.slug}/index.html" if _PAGE_SLUG.match(article.slug) else None


class PageCache:
    """What every article page of a build shares, made once: the page template and its globals; per
    category, its autodiscovery links (rendered) and page URL; per day and language, the date as printed."""

    def __init__(self) -> None:
        self.categories: dict[str, tuple[list[FeedLink], Markup, str]] = {}
        self.dates: dict[tuple[date, str], str] = {}
        self._page: tuple[jinja2.Environment, jinja2.Template, dict[str, Any]] | None = None

    def page(self, env: jinja2.Environment) -> tuple[jinja2.Template, dict[str, Any]]:
        """The article page template of ``env`` and its globals merged into one dict: looked up once
        (``get_template`` checks the file's mtime on every call), merged once (``render`` merges the
        template's ChainMap of globals into a new dict for every page)."""
        found = self._page
        if found is None or found[0] is not env:
            template = env.get_template("web/site-article.html")
            found = self._page = (env, template, dict(template.globals))
        return found[1], found[2]

    def category(self, env: jinja2.Environment, settings: Settings, slug: str) -> tuple[list[FeedLink], Markup, str]:
        found = self.categories.get(slug)
        if found is None:
            category = Scope.category(slug) if slug else None
            feeds = feed_links(settings) + (feed_links(settings, category) if category else [])
            rendered = Markup(env.get_template("web/site-feed-links.html").render(feeds=feeds))
            page = base(settings) + category.page_path() if category else ""
            found = self.categories[slug] = (feeds, rendered, page)
        return found

    def date(self, value: datetime, language: str) -> str:
        key = (value.date(), language)
        found = self.dates.get(key)
        if found is None:
            found = self.dates[key] = format_date(value, language)
        return found


def render_article(
    env: jinja2.Environment, settings: Settings, article: Article | None, item: FeedItem | None = None,
    cache: PageCache | None = None,
) -> bytes:
    """The static page of one article: what ``/articles/<slug>/`` links in the feeds resolve to.

    ``item`` is the article's :func:`feed_item` when the caller already made it (a build makes each
    once for feeds and page alike); ``cache`` holds what the pages of one build share."""
    if item is None:
        if article is None:
            raise ValueError("render_article needs the article or its feed item")
        item = feed_item(article, settings)
    cache = cache or PageCache()
    feeds, rendered_feeds, category_page = cache.category(env, settings, item.category_term)
    language = item.language or settings.language
    template, context = cache.page(env)
    context = {
        **context,  # the globals, as Template.render would add them
        "item": item,
        "body": Markup(item.content_html),  # cleaned by nh3 in feed_item
        "language": language,
        "published_date": cache.date(item.published, language),
        "site_title": settings.title,
        "home": base(settings) + "/",
        "category_page": category_page,
        "feeds": feeds,  # for a site's own template that lists them itself
        "feed_links": rendered_feeds,  # web/site-feed-links.html, rendered once per category
    }
    # Template.render, less its per-page merge of the globals (shared: the dict is the context as is)
    try:
        html = env.concat(template.root_render_func(template.new_context(context, shared=True)))
    except Exception:
        env.handle_exception()
    return html.encode("utf-8")


def put_article_pages(writer: Writer, env: jinja2.Environment, settings: Settings, articles: Iterable[Article],
                      now: datetime) -> None:
    """Write (or, while embargoed, remove) each article's page."""
    cache = PageCache()
    for article in articles:
        rel = article_page_file(article)
        if rel is None:
            continue
        if article.published <= now:
            writer.put(rel, render_article(env, settings, article, cache=cache), durable=False, own_dir=True)
        else:  # embargoed (perhaps just re-dated into the future): no page yet
            writer.remove(rel)
