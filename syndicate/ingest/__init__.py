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
from ..models import Article
from . import feed, jsonfile, markdown, text
from .common import DATE_HINT, Options, Parsed, Problem, parse_date

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "FORMATS", "ImportReport", "Options", "collect_sources", "detect_format", "import_paths", "parse_published",
    "parse_source",
]

FORMATS = ("text", "markdown", "json", "jsonl", "feed")
EXTENSIONS = {
    ".txt": "text", ".text": "text",
    ".md": "markdown", ".markdown": "markdown",
    ".json": "json",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".xml": "feed", ".rss": "feed", ".atom": "feed",
}
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
            f"imported {self.files} file{'s' if self.files != 1 else ''}: {self.inserted} new, "
            f"{self.updated} updated, {self.unchanged} unchanged"
        )
        return line + (f"; {len(self.errors)} failed" if self.errors else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files, "inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged,
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
    return PARSERS[detect_format(source, fmt)](source, opts)


def import_paths(
    store: Store,
    paths: Iterable[str | Path],
    *,
    fmt: str | None = None,
    published: datetime | None = None,
    batch_size: int = 1000,
    on_progress: Callable[[str], None] | None = None,
    default_tz: tzinfo = UTC,
    language: str = "",
    debug: bool = False,
) -> ImportReport:
    """Import files, directories and feed URLs into ``store``; never stops at a bad file.

    ``published`` dates articles that give none (text pages otherwise take
    the file's mtime); naive times in sources are read in ``default_tz``.
    ``on_progress(source)`` is called after each file. A file that fails in a way no
    parser foresaw is one error line too (its type and message), and the batch goes on;
    ``debug=True`` lets that exception through with its traceback instead.

    Example:
        >>> report = import_paths(store, ["data/articles"])  # doctest: +SKIP
        >>> report.summary()  # doctest: +SKIP
        'imported 12 files: 34 new, 0 updated, 0 unchanged'
    """
    if fmt is not None:
        detect_format("", fmt)  # validate early: InputError before any work
    opts = Options(published=published, default_tz=default_tz, language=language)
    report = ImportReport()
    batch: list[Article] = []

    def flush() -> None:
        if not batch:
            return
        result = store.upsert_articles(batch)
        report.inserted += len(result.inserted)
        report.updated += len(result.updated)
        report.unchanged += len(result.unchanged)
        report.changed_categories |= result.changed_categories
        report.changed_guids += result.inserted + result.updated
        batch.clear()

    for source in iter_sources(paths):
        report.files += 1
        try:
            items = iter(parse_source(source, opts, fmt))
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
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        if on_progress is not None:
            on_progress(source)
    flush()
    return report
