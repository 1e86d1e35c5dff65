"""Markdown with YAML (``---``) or TOML (``+++``) front matter.

Front matter keys: title, date, updated, category, tags, author, summary, slug,
id/guid, image, language, url (and the aliases JSON accepts). Without a
``title`` key a leading ``# Heading`` is the title. Raw HTML in the Markdown is
not passed through; the rendered HTML is sanitised like every other input.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt

from ..errors import ParseError
from ..sanitize import slugify
from .common import Options, Parsed, article_from_record, read_text

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)
_FRONT = re.compile(r"\A(---|\+\+\+)[ \t]*\n(.*?)\n\1[ \t]*(?:\n|\Z)", re.S)
_H1 = re.compile(r"\A\s*#[ \t]+(.+?)[ \t#]*(?:\n|\Z)")


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases: a 500-byte front matter of nested ``*a`` references
    (a "billion laughs") would otherwise expand to gigabytes where the values are read."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _AliasRefused(event.anchor, event.start_mark.line)
        return super().compose_node(parent, index)


class _AliasRefused(Exception):
    def __init__(self, anchor: str, line: int) -> None:
        self.anchor, self.line = anchor, line


def _load_yaml(raw: str) -> Any:
    loader = _NoAliasLoader(raw)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(front matter mapping, Markdown body); ParseError when the front matter is broken."""
    m = _FRONT.match(text)
    if not m:
        return {}, text
    fence, raw = m.group(1), m.group(2)
    try:
        meta = _load_yaml(raw) if fence == "---" else tomllib.loads(raw)
    except RecursionError:
        raise ParseError("front matter is nested too deeply") from None
    except _AliasRefused as exc:
        raise ParseError(
            f"front matter line {exc.line + 2} uses the YAML alias *{exc.anchor}; "
            "aliases are not accepted (write the value out)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        raise ParseError(f"front matter is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParseError(f"front matter is not valid TOML: {exc}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ParseError("front matter must be a mapping of keys (title: ..., date: ...)")
    return meta, text[m.end() :]


def render(markdown: str) -> str:
    """Markdown to HTML (raw HTML in the source is escaped, not kept)."""
    return str(_md.render(markdown))


def parse(path: str, opts: Options) -> Parsed:
    """Yield the one Article a Markdown file holds."""
    meta, body = split_front_matter(read_text(path))
    if not meta.get("title"):
        m = _H1.match(body)
        if m:
            meta["title"] = m.group(1)
            body = body[m.end() :]
        else:
            raise ParseError("no title: add 'title: ...' to the front matter")
    stem = slugify(Path(path).stem)
    try:
        yield article_from_record(
            meta,
            opts,
            origin=path,
            body_html=render(body),
            default_guid=f"urn:syndicate:{slugify(str(meta.get('slug') or stem))}",
        )
    except ValueError as exc:
        raise ParseError(str(exc)) from None
