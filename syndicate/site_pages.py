"""The site's HTML pages: the index page of each scope and one page per article.

Both advertise the feeds for autodiscovery; an article's page is what the
``/articles/<slug>/`` links in the feeds resolve to on a static site.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

import jinja2
from markupsafe import Markup, escape

from .config import PACKAGE_ROOT, Settings
from .feeds import SITE, FeedItem, FeedLink, Scope, base, feed_item, feed_links
from .frames import Frames
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


ARTICLE_TEMPLATE = "web/site-article.html"
_ITEM_TEXT = tuple(f.name for f in dataclasses.fields(FeedItem) if f.type == "str")  # what a page may print
_item_text = operator.attrgetter(*_ITEM_TEXT)
_SLOT = re.compile("\ue000([0-9]+)\ue001")  # a probe: private-use characters, which escaping leaves alone


def _probe(slot: int) -> str:
    return f"\ue000{slot}\ue001"


_FrameKey = tuple[str, tuple[bool, ...]]  # (category term, which text fields of the item are not empty)
_BODY, _LANGUAGE, _DATE = len(_ITEM_TEXT), len(_ITEM_TEXT) + 1, len(_ITEM_TEXT) + 2  # the slots beside the item's


class PageFrame:
    """The shipped article page as its constant text and the slots between (which of the item's text
    fields, the body, the language or the date goes there), so a page is a join of escaped values
    instead of a template run: made by rendering the template once with probes in the slots.

    One frame serves the pages of one category whose text fields are empty or filled alike (all
    the template's ``{% if %}`` look at). Used only for the template syndicate ships (an admin's
    may do anything with any value), and only once it gave a real page byte for byte as Jinja does
    (:meth:`PageCache.make_frame`); tests/test_site_pages.py holds the equivalence over generated items."""

    def __init__(self, rendered: str) -> None:
        pieces = _SLOT.split(rendered)
        self.parts = pieces[0::2]
        slots = [int(n) for n in pieces[1::2]]
        self.getters: list[Callable[[FeedItem, str, str], str]] = [_getter(slot) for slot in slots]

    def splice(self, item: FeedItem, language: str, published_date: str) -> str:
        parts = self.parts
        out = [parts[0]]
        for getter, part in zip(self.getters, parts[1:], strict=True):
            out.append(getter(item, language, published_date))
            out.append(part)
        return "".join(out)


def _getter(slot: int) -> Callable[[FeedItem, str, str], str]:
    if slot == _BODY:
        return lambda item, _language, _date: item.content_html  # Markup in the template: as it is
    if slot == _LANGUAGE:
        return lambda _item, language, _date: escape(language)
    if slot == _DATE:
        return lambda _item, _language, published_date: escape(published_date)
    field = operator.attrgetter(_ITEM_TEXT[slot])
    return lambda item, _language, _date: escape(field(item))


def _shipped(env: jinja2.Environment) -> bool:
    """True when ``env`` finds the article page syndicate ships (not an admin's own)."""
    try:
        source = env.loader.get_source(env, ARTICLE_TEMPLATE)[0] if env.loader is not None else None
        return source == (PACKAGE_ROOT / "templates" / ARTICLE_TEMPLATE).read_text(encoding="utf-8")
    except (OSError, jinja2.TemplateNotFound):
        return False


class PageCache:
    """What every article page of a build shares, made once: the page template and its globals; per
    category, its autodiscovery links (rendered) and page URL; per day and language, the date as printed;
    the page frames (:class:`PageFrame`)."""

    def __init__(self) -> None:
        self.categories: dict[str, tuple[list[FeedLink], Markup, str]] = {}
        self.dates: dict[tuple[date, str], str] = {}
        self._page: tuple[jinja2.Environment, jinja2.Template, dict[str, Any]] | None = None
        self._frames: Frames[_FrameKey, PageFrame] = Frames()
        self._shipped: bool | None = None

    def page(self, env: jinja2.Environment) -> tuple[jinja2.Template, dict[str, Any]]:
        """The article page template of ``env`` and its globals merged into one dict: looked up once
        (``get_template`` checks the file's mtime on every call), merged once (``render`` merges the
        template's ChainMap of globals into a new dict for every page)."""
        found = self._page
        if found is None or found[0] is not env:
            template = env.get_template(ARTICLE_TEMPLATE)
            found = self._page = (env, template, dict(template.globals))
            self._frames.clear()
            self._shipped = _shipped(env)
        return found[1], found[2]

    def lookup(self, env: jinja2.Environment, item: FeedItem) -> tuple[_FrameKey | None, PageFrame | None]:
        """The key of ``item``'s kind of page and its frame (None: not made, or Jinja renders that kind);
        key None: Jinja renders every page (an admin's own template)."""
        self.page(env)
        if not self._shipped:
            return None, None
        key = (item.category_term, tuple(map(bool, _item_text(item))))
        return key, self._frames.get(key)

    def make_frame(self, key: _FrameKey, render: Callable[[FeedItem, str, str], str], item: FeedItem,
                   language: str, published_date: str, page: str) -> None:
        """Make the frame of ``key`` from ``render`` with probes, the second time a page of that kind
        comes (a publish of one page makes none), unless tried before; kept only when it gives ``page``
        (Jinja's render of ``item``) byte for byte (:class:`syndicate.frames.Frames`)."""

        def make() -> PageFrame:
            probes: dict[str, Any] = {name: _probe(i) for i, name in enumerate(_ITEM_TEXT) if getattr(item, name)}
            if item.content_html:  # the page's body (Markup: not escaped) is the item's content_html
                probes["content_html"] = _probe(_BODY)
            return PageFrame(render(dataclasses.replace(item, **probes), _probe(_LANGUAGE), _probe(_DATE)))

        self._frames.offer(key, make, lambda frame: frame.splice(item, language, published_date) == page)

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
    published_date = cache.date(item.published, language)
    template, shared = cache.page(env)

    def render(item: FeedItem, language: str, published_date: str) -> str:
        context = {
            **shared,  # the globals, as Template.render would add them
            "item": item,
            "body": Markup(item.content_html),  # cleaned by nh3 in feed_item
            "language": language,
            "published_date": published_date,
            "site_title": settings.title,
            "home": base(settings) + "/",
            "category_page": category_page,
            "feeds": feeds,  # for a site's own template that lists them itself
            "feed_links": rendered_feeds,  # web/site-feed-links.html, rendered once per category
        }
        # Template.render, less its per-page merge of the globals (shared: the dict is the context as is)
        try:
            html: str = env.concat(template.root_render_func(template.new_context(context, shared=True)))
        except Exception:
            env.handle_exception()
        return html

    key, frame = cache.lookup(env, item)
    if frame is not None:
        return frame.splice(item, language, published_date).encode("utf-8")
    page = render(item, language, published_date)
    if key is not None:
        cache.make_frame(key, render, item, language, published_date, page)
    return page.encode("utf-8")


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
