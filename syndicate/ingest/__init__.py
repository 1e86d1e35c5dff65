"""Ingestion: read sources in four formats, sanitise them, upsert Articles in batches.

Formats (by extension, or forced with ``--format``; an unknown extension is refused):

    text       .txt                  plain-text news pages (``ingest/text.py``)
    markdown   .md .markdown         front matter + Markdown (``ingest/markdown.py``)
    json       .json                 an array or {"articles": [...]} (``ingest/jsonfile.py``)
    jsonl      .jsonl .ndjson        one article object a line, streamed
    feed       .xml .rss .atom URL   RSS or Atom via feedparser (``ingest/feed.py``)

:func:`import_paths` is the one entry point: one bad file (or record) is one
error line in the report and never stops the rest; articles are written with
``store.upsert_articles`` in batches, each batch one transaction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError, ParseError
from ..fetcher import FetchPolicy
from ..models import Article
from ..store.articles import StoredVersion
from . import feed, jsonfile, markdown, text
from .changes import ItemChange, compare, keep_stored_date
from .common import DATE_HINT, DEFAULT_MAX_ARTICLE_BYTES, Options, Parsed, Problem, Undated, human_size, parse_date

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "FORMATS", "ImportReport", "ItemChange", "Options", "collect_sources", "detect_format", "import_paths",
    "parse_published", "parse_source",
]

FORMATS = ("text", "markdown", "json", "jsonl", "feed")
EXTENSIONS = {
    ".txt": "text", ".text": "text",
    ".md": "markdown", ".markdown": "markdown",
    ".json": "json",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".xml": "feed", ".rss": "feed", ".atom": "feed",
}
SINGLE_ARTICLE = ("text", "markdown")
PARSERS: dict[str, Callable[[str, Options], Parsed]] = {
    "text": text.parse,
    "markdown": markdown.parse,
    "json": jsonfile.parse_json,
    "jsonl": jsonfile.parse_jsonl,
    "feed": feed.parse,
}


@dataclass
class ImportReport:
    """What an import did. Errors read ``path: reason`` or ``path line N: reason``."""

    files: int = 0
    dry_run: bool = False  # counted what would change; nothing was written
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    changed_categories: set[str] = field(default_factory=set)
    changed_guids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def articles(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def summary(self) -> str:
        """One line, e.g. ``imported 31 files: 30 new, 1 updated, 0 unchanged; 1 failed``."""
        line = (
            f"{'dry run: would import' if self.dry_run else 'imported'} {self.files} file{'s' if self.files != 1 else ''}: "
            f"{self.inserted} new, {self.updated} updated, {self.unchanged} unchanged"
        )
        line += f"; {len(self.errors)} failed" if self.errors else ""
        return line + (" (nothing written)" if self.dry_run else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files, "dry_run": self.dry_run, "inserted": self.inserted, "updated": self.updated,
            "unchanged": self.unchanged,
            "errors": self.errors, "warnings": self.warnings, "notes": self.notes,
            "changed_categories": sorted(self.changed_categories),
        }


def detect_format(source: str, forced: str | None = None) -> str:
    """The format of ``source``: ``forced`` if given, else by its extension (a URL is a feed).

    An unknown or missing extension is refused, never guessed from the content: a
    subscriber CSV or a server log read as a "text page" would be published.

    Example:
        >>> detect_format("a/b.ndjson"), detect_format("https://example.org/feed")
        ('jsonl', 'feed')
        >>> detect_format("data/subscribers.csv")
        Traceback (most recent call last):
        ...
        syndicate.errors.ParseError: '.csv' is not a known article format (...); nothing imported from it (use --format to import it anyway)
    """
    if forced:
        if forced not in FORMATS:
            raise InputError(f"unknown format {forced!r}; choose one of {', '.join(FORMATS)}")
        return forced
    if feed.is_url(source):
        return "feed"
    ext = os.path.splitext(source)[1].lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    what = f"{ext!r} is not a known article format" if ext else "no file extension to tell its format"
    raise ParseError(f"{what} ({', '.join(EXTENSIONS)}); nothing imported from it (use --format to import it anyway)")


def _walk(directory: str) -> Iterator[str]:
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS:
                yield os.path.join(root, name)


def iter_sources(paths: Iterable[str | Path]) -> Iterator[str]:
    """Files and URLs to import: directories recurse (sorted; hidden files and unknown extensions skipped)."""
    for p in paths:
        source = str(p)
        if not feed.is_url(source) and os.path.isdir(source):
            yield from _walk(source)
        else:
            yield source


def collect_sources(paths: Iterable[str | Path]) -> list[str]:
    """:func:`iter_sources` as a list, so a progress bar knows its length."""
    return list(iter_sources(paths))


def parse_published(value: str | None, tz: tzinfo = UTC) -> datetime | None:
    """The ``--published`` option as an aware datetime; InputError when it is not a date."""
    if not value:
        return None
    try:
        return parse_date(value, tz)
    except ValueError:
        raise InputError(f"--published {value!r} is not a date ({DATE_HINT})") from None


def parse_source(source: str, opts: Options | None = None, fmt: str | None = None) -> Parsed:
    """Parse one file or URL without storing it (Articles and Problems)."""
    opts = opts or Options()
    if not feed.is_url(source) and not os.path.exists(source):
        raise ParseError("no such file or directory")
    kind = detect_format(source, fmt)
    if feed.is_url(source) and kind != "feed":
        raise ParseError(
            f"only feeds can be imported from a URL (--format {kind} was given); download the file and import it"
        )
    if kind in SINGLE_ARTICLE and os.path.isfile(source):
        # One article a file: a file far over the cap is refused before it is read and rendered.
        size = os.path.getsize(source)
        if size > 2 * opts.max_article_bytes:
            raise ParseError(
                f"is {human_size(size)}, over twice the {human_size(opts.max_article_bytes)} limit for one "
                "article's HTML (raise [ingest] max_article_mb to allow it); not imported"
            )
    return PARSERS[kind](source, opts)


def import_paths(
    store: Store,
    paths: Iterable[str | Path],
    *,
    fmt: str | None = None,
    published: datetime | None = None,
    batch_size: int = 1000,
    on_progress: Callable[[str], None] | None = None,
    on_item: Callable[[ItemChange], None] | None = None,
    default_tz: tzinfo = UTC,
    language: str = "",
    max_article_bytes: int = DEFAULT_MAX_ARTICLE_BYTES,
    fetch: FetchPolicy | None = None,
    dry_run: bool = False,
    debug: bool = False,
    parsed_by: Callable[[str], Parsed] | None = None,
) -> ImportReport:
    """Import files, directories and feed URLs into ``store``; never stops at a bad file.

    ``published`` dates articles that give none (text pages otherwise take
    the file's mtime, which never replaces a stored article's date); naive
    times in sources are read in ``default_tz``. An article over
    ``max_article_bytes`` of HTML is an error. URLs are read by the safe
    fetcher within ``fetch`` (default: no private hosts). ``on_progress(source)`` is
    called after each file, ``on_item(change)`` for each article (new,
    updated with its changed fields, or unchanged). ``dry_run`` compares and
    reports exactly as an import would, and writes nothing. ``parsed_by(source)``
    replaces reading a source (the fetcher of ``syndicate fetch`` hands over
    what it already fetched), so every source takes the same path into the store.

    A file that fails in a way no parser foresaw is one error line too (its
    type and message), and the batch goes on; ``debug=True`` lets that
    exception through with its traceback instead.

    Example:
        >>> report = import_paths(store, ["data/articles"])  # doctest: +SKIP
        >>> report.summary()  # doctest: +SKIP
        'imported 12 files: 34 new, 0 updated, 0 unchanged'
    """
    if fmt is not None:
        detect_format("", fmt)  # validate early: InputError before any work
    opts = Options(published=published, default_tz=default_tz, language=language, max_article_bytes=max_article_bytes,
                   fetch=fetch or FetchPolicy())
    report = ImportReport(dry_run=dry_run)
    batch: list[tuple[Article, str, bool]] = []  # (article, source, undated)

    compare_all = dry_run or on_item is not None  # else only undated pages need the stored version

    def flush() -> None:
        if not batch:
            return
        stored = store.stored_versions(a.guid for a, _, undated in batch if compare_all or undated)
        changes: list[ItemChange] = []
        for a, source, undated in batch:
            old = stored.get(a.guid)
            if undated:
                if old is not None:
                    keep_stored_date(a, old)
                    report.notes.append(
                        f"{source}: no date on the page: kept the stored published date ({a.published:%Y-%m-%d %H:%M} UTC)"
                    )
                else:
                    report.notes.append(f"{source}: published from file mtime ({a.published:%Y-%m-%d %H:%M} UTC)")
            if not compare_all:
                continue
            change, digest = compare(a, old, source)
            changes.append(change)
            stored[a.guid] = StoredVersion(a, digest)  # a guid twice in a batch: the second meets the first
            if dry_run:
                _count(report, change, a, old)
        if not dry_run:
            result = store.upsert_articles([a for a, _, _ in batch])
            report.inserted += len(result.inserted)
            report.updated += len(result.updated)
            report.unchanged += len(result.unchanged)
            report.changed_categories |= result.changed_categories
            report.changed_guids += result.inserted + result.updated
        if on_item is not None:
            for change in changes:
                on_item(change)
        batch.clear()

    for source in iter_sources(paths):
        report.files += 1
        try:
            items = iter(parsed_by(source) if parsed_by is not None else parse_source(source, opts, fmt))
        except ParseError as exc:
            report.errors.append(f"{source}: {exc}")
            items = iter(())
        while True:
            try:
                item = next(items)
            except StopIteration:
                break
            except ParseError as exc:
                report.errors.append(f"{source}: {exc}")
                break
            except Exception as exc:  # one file never stops the batch; --debug shows the traceback
                if debug:
                    raise
                report.errors.append(f"{source}: cannot be read ({type(exc).__name__}: {exc})")
                break
            if isinstance(item, Problem):
                where = f"{source} {item.where}" if item.where else source
                if item.kind == "error":
                    report.errors.append(f"{where}: {item.text}")
                elif item.kind == "warning":
                    report.warnings.append(f"{where}: {item.text}")
                else:
                    report.notes.append(f"{where}: {item.text}")
                continue
            undated = isinstance(item, Undated)
            article = item.article if isinstance(item, Undated) else item
            too_big = _over_cap(article, max_article_bytes)
            if too_big:
                report.errors.append(f"{source}: {too_big}")
                continue
            batch.append((article, source, undated))
            if len(batch) >= batch_size:
                flush()
        if on_progress is not None:
            on_progress(source)
    flush()
    return report


def _count(report: ImportReport, change: ItemChange, a: Article, old: StoredVersion | None) -> None:
    """Dry run: count ``change`` as the store would have."""
    if change.status == "unchanged":
        report.unchanged += 1
        return
    if change.status == "new":
        report.inserted += 1
    else:
        report.updated += 1
        if old is not None:
            report.changed_categories.add(old.article.category_slug)
    report.changed_categories.add(a.category_slug)
    report.changed_categories.discard("")
    report.changed_guids.append(a.guid)


def _over_cap(a: Article, limit: int) -> str:
    """Why ``a`` is refused for its size, or ""."""
    size = len(a.body_html.encode("utf-8"))
    if size <= limit:
        return ""
    return (
        f"{a.title[:60]!r} is {human_size(size)} of HTML, over the {human_size(limit)} limit for one article "
        "(raise [ingest] max_article_mb to allow it); not imported"
    )
