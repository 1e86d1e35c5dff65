"""What an import would change: the one comparison between a parsed article and the stored one.

Rules (issue 11, "Re-importing an unchanged page changes it"):

- identity is the guid; an article the store does not hold is ``new``;
- an article whose source states no date (a text page dated by its file's mtime)
  keeps the ``published`` the store already has: an mtime is not a statement;
- identical content (the store's content hash) is ``unchanged``: no write, no
  feed refresh, no ping; anything else is ``updated``, with the fields that differ.

The store decides for real (``upsert_articles``); ``--dry-run`` uses the same
comparison without writing, so both agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models import Article
from ..store.articles import StoredVersion, content_hash

# Reader-visible fields, grouped under the names ``--dry-run`` prints.
_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("title", ("title",)),
    ("published", ("published",)),
    ("body", ("body_html", "body_text")),
    ("summary", ("summary",)),
    ("url", ("url",)),
    ("author", ("author",)),
    ("category", ("category",)),
    ("tags", ("tags",)),
    ("image", ("image", "image_alt")),
    ("source", ("source",)),
    ("language", ("language",)),
    ("related", ("related",)),
)


@dataclass(frozen=True)
class ItemChange:
    """One imported article: ``new``, ``updated`` (with the changed fields) or ``unchanged``."""

    status: str
    guid: str
    title: str
    source: str
    changes: tuple[str, ...] = field(default=())

    def line(self) -> str:
        """``updated    in/b.md: Edited (changed: body, summary)``, as ``--dry-run`` prints it."""
        tail = f" (changed: {', '.join(self.changes)})" if self.changes else ""
        return f"{self.status:<10} {self.source}: {self.title}{tail}"

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status, "guid": self.guid, "title": self.title, "source": self.source,
                "changes": list(self.changes)}


def keep_stored_date(article: Article, old: StoredVersion) -> None:
    """An undated source re-imported: the stored ``published`` stays (and ``updated`` follows it)."""
    article.published = old.article.published
    if article.updated is not None and article.updated <= article.published:
        article.updated = None


def changed_fields(article: Article, old: Article) -> tuple[str, ...]:
    """The reader-visible fields that differ, e.g. ``('published', 'body')``."""
    out = [name for name, attrs in _FIELDS if any(getattr(article, a) != getattr(old, a) for a in attrs)]
    return tuple(out)


def compare(article: Article, old: StoredVersion | None, source: str) -> tuple[ItemChange, str]:
    """The ItemChange ``article`` makes over ``old`` (None: not stored), and its content hash."""
    digest = content_hash(article)
    if old is None:
        return ItemChange("new", article.guid, article.title, source), digest
    if digest == old.content_hash:
        return ItemChange("unchanged", article.guid, article.title, source), digest
    changes = changed_fields(article, old.article) or ("slug",)
    return ItemChange("updated", article.guid, article.title, source, changes), digest
