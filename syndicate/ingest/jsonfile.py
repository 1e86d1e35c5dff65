"""JSON (an array, or ``{"articles": [...]}``) and JSON Lines (one object a line).

Fields are named like :class:`~syndicate.models.Article` (``guid``, ``title``,
``published``, ``body_html`` ...) with common aliases (``id``, ``content``,
``body``, ``html``, ``date``, ``published_at``, ``link``). A bad record is one
error (``file.jsonl line 14: <reason>``); the other records still land.
JSON Lines files are streamed line by line, so a file of any size fits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ParseError
from .common import Options, Parsed, Problem, article_from_record, decode


def _json_reason(exc: json.JSONDecodeError) -> str:
    return f"not valid JSON ({exc.msg} at column {exc.colno})"


def parse_json(path: str, opts: Options) -> Parsed:
    """Yield the Articles of a JSON document, one Problem per bad record."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ParseError(f"cannot read: {exc.strerror or exc}") from None
    try:
        doc: Any = json.loads(decode(raw))
    except json.JSONDecodeError as exc:
        raise ParseError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ParseError("not valid JSON (nested too deeply)") from None
    if isinstance(doc, dict):
        if isinstance(doc.get("articles"), list):
            doc = doc["articles"]
        elif isinstance(doc.get("items"), list):
            doc = doc["items"]
        elif "title" in doc:
            doc = [doc]
        else:
            raise ParseError('expected an array of articles or {"articles": [...]}')
    if not isinstance(doc, list):
        raise ParseError(f'expected an array of articles or {{"articles": [...]}}, got {type(doc).__name__}')
    for n, record in enumerate(doc, 1):
        try:
            yield article_from_record(record, opts, origin=path)
        except ValueError as exc:
            yield Problem("error", f"record {n}", str(exc))


def parse_jsonl(path: str, opts: Options) -> Parsed:
    """Stream the Articles of a JSON Lines file; a bad line is a Problem naming it."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed in finally; a generator holds it
    except OSError as exc:
        raise ParseError(f"cannot read: {exc.strerror or exc}") from None
    loads = json.loads
    try:
        for n, raw in enumerate(fh, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Problem("error", f"line {n}", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
                continue
            try:
                record = loads(line)
            except json.JSONDecodeError as exc:
                yield Problem("error", f"line {n}", _json_reason(exc))
                continue
            except RecursionError:
                yield Problem("error", f"line {n}", "not valid JSON (nested too deeply)")
                continue
            try:
                yield article_from_record(record, opts, origin=path)
            except ValueError as exc:
                yield Problem("error", f"line {n}", str(exc))
    finally:
        fh.close()
