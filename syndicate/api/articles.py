"""Articles pushed from a CMS: the record rules of a JSON import, the import's store path, its publish step.

A body is one article record as a JSON import reads it (``guid``, ``title``,
``published``, ``body_html``... and the same aliases); it goes through
:func:`syndicate.ingest.common.article_from_record` and then
:func:`syndicate.ingest.import_paths` (the size cap, the upsert by guid),
then :func:`syndicate.publish.refresh_published` refreshes the published
feeds holding it, exactly as ``syndicate article import`` does. The served
feeds follow the store's change counter on their own.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import NotFound
from ..ingest import import_paths
from ..ingest.common import Options, article_from_record
from ..models import Article, to_iso
from .auth import ApiError
from .spec import Call, Endpoint, Reply

_QUOTED = re.compile(r"'(\w+)'")


def article_json(a: Article) -> dict[str, Any]:
    return {"id": a.id, "guid": a.guid, "slug": a.slug, "title": a.title, "category": a.category,
            "author": a.author, "published": to_iso(a.published), "updated": to_iso(a.changed), "url": a.url,
            "summary": a.summary, "tags": a.tags, "image": a.image, "language": a.language}


def _record_error(message: str) -> ApiError:
    """A record refused by the import rules: the field is the first one its message quotes."""
    quoted = _QUOTED.search(message)
    return ApiError(422, message, quoted.group(1) if quoted else None)


def _push(call: Call, record: dict[str, Any]) -> Reply:
    settings = call.settings
    source = f"api:{call.token.name}"
    opts = Options(default_tz=settings.tz, max_article_bytes=int(settings.ingest_max_article_mb * 1_000_000))
    try:
        article = article_from_record(record, opts, origin=source)
    except ValueError as exc:
        raise _record_error(str(exc)) from None
    report = import_paths(call.store, [source], default_tz=settings.tz, max_article_bytes=opts.max_article_bytes,
                          parsed_by=lambda _: iter([article]))
    if report.errors:  # the import's own checks (the size cap): its words, without the source label
        raise ApiError(422, report.errors[0].removeprefix(f"{source}: "), "body_html")
    feeds = 0
    if report.changed_guids:
        from ..publish import refresh_published

        refreshed = refresh_published(call.store, settings, report.changed_categories, guids=report.changed_guids)
        feeds = len(refreshed.written) if refreshed is not None else 0
    status = "new" if report.inserted else ("updated" if report.updated else "unchanged")
    stored = call.store.get_article(article.guid)
    return Reply(201 if report.inserted else 200, {"status": status, "article": article_json(stored),
                                                   "feeds_refreshed": feeds})


def push_article(call: Call) -> Reply:
    return _push(call, call.body)


def put_article(call: Call) -> Reply:
    guid = call.path["guid"]
    given = call.body.get("guid") or call.body.get("id")
    if given not in (None, "", guid):
        raise ApiError(422, f"the body's guid {str(given)[:80]!r} is not the guid in the URL ({guid[:80]!r})", "guid")
    return _push(call, {**{k: v for k, v in call.body.items() if k not in ("guid", "id")}, "guid": guid})


def _article(call: Call) -> Article:
    try:
        return call.store.get_article(call.path["guid"])
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None


def get_article(call: Call) -> Reply:
    return Reply(200, {"article": article_json(_article(call))})


def delete_article(call: Call) -> Reply:
    a = call.store.remove_article(_article(call).guid)
    from ..publish import refresh_published

    refreshed = refresh_published(call.store, call.settings, {a.category_slug}, guids=[], removed=[a])
    return Reply(200, {"removed": article_json(a), "feeds_refreshed": len(refreshed.written) if refreshed else 0})


_ARTICLE = {
    "type": "object", "required": ["title"], "additionalProperties": True,
    "description": "One article record, as a JSON import reads it (aliases such as 'content' or 'date' too).",
    "properties": {
        "guid": {"type": "string", "description": "Identity: the same guid updates, never duplicates."},
        "title": {"type": "string"}, "published": {"type": "string", "description": "ISO 8601."},
        "updated": {"type": "string"}, "body_html": {"type": "string", "description": "Cleaned with nh3."},
        "body_text": {"type": "string"}, "summary": {"type": "string"}, "url": {"type": "string"},
        "author": {"type": "string"}, "category": {"type": "string"}, "slug": {"type": "string"},
        "image": {"type": "string"}, "language": {"type": "string"},
        "tags": {"type": ["array", "string"], "items": {"type": "string"}, "description": "A list or 'a, b'."},
    },
}

ENDPOINTS = [
    Endpoint("POST", "/articles", "write", "Create or update an article by its guid, then refresh the feeds.",
             push_article, body=_ARTICLE, checked=False, tag="articles"),
    Endpoint("PUT", "/articles/{guid:path}", "write", "Create or update the article with this guid.",
             put_article, body=_ARTICLE, checked=False, tag="articles"),
    Endpoint("GET", "/articles/{guid:path}", "read", "One article by guid, id or slug.", get_article,
             tag="articles"),
    Endpoint("DELETE", "/articles/{guid:path}", "write", "Remove an article (and from the published feeds).",
             delete_article, tag="articles"),
]
