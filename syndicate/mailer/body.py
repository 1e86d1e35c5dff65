"""Body parts as base64: :func:`body_b64`, and :class:`BodyCache`, which splices.

A digest is the same for every subscriber of a group except a few short
personal values (the greeting, two links). :class:`BodyCache` takes the body
as alternating fixed runs and values (``parts[0]``, value, ``parts[2]``,
value, ...), encodes each long fixed run once per *phase* (its offset modulo
57, the bytes in one 76-character base64 line) and builds the rest per
message, so a 50 KB body costs a few joins instead of 900 base64 lines.

The output is byte-for-byte :func:`body_b64` of the joined text. Each step
of :func:`body_b64` (NFC, CRLF line ends, UTF-8) gives the same result run
on the pieces as on the whole when no piece but the first starts with a
non-ASCII character (an ASCII character is a starter no composition or
reordering crosses) and none but the last ends with a CR (which could pair
with the next piece's LF). :meth:`BodyCache.encode` checks that for every
message and falls back to the whole-text path when it does not hold.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from collections.abc import Sequence

__all__ = ["BodyCache", "body_b64"]

_LINE = 57  # input bytes per 76-character base64 line
_MIN_CACHED = _LINE * 8  # shorter fixed runs are cheaper to encode than to look up per phase


def _canonical(text: str) -> bytes:
    """NFC, CRLF line ends, UTF-8 (a lone surrogate becomes ``?``)."""
    data = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return data.encode("utf-8", "replace")


def _b64_lines(data: bytes) -> bytes:
    """``base64.encodebytes`` with CRLF line ends."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def body_b64(text: str) -> bytes:
    """UTF-8 in canonical CRLF form, base64 in 76-character CRLF lines.

    Example:
        >>> body_b64("xin chào\\n")
        b'eGluIGNow6BvDQo=\\r\\n'
    """
    return _b64_lines(_canonical(text))


class _Fixed:
    """One fixed run: its canonical bytes and its encoding per phase."""

    __slots__ = ("raw", "clean_start", "clean_end", "phases")

    def __init__(self, text: str) -> None:
        self.raw = _canonical(text)
        self.clean_start = not text or text[0].isascii()
        self.clean_end = not text.endswith("\r")
        self.phases: dict[int, tuple[bytes, int]] = {}


class BodyCache:
    """Encodes bodies given as fixed runs and personal values, caching the fixed runs.

    One per sender run (a :class:`~syndicate.mailer.message.Mail` names its
    parts in ``text_parts`` and ``html_parts``). Holds at most ``max_bytes``
    of encoded text; past that it starts over, so memory stays flat however
    many groups a run sends.
    """

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        self.max_bytes = max_bytes
        self._fixed: dict[str, _Fixed] = {}
        self._size = 0
        self.spliced = 0  # bodies built from cached runs (for tests and benchmarks)
        self.fallbacks = 0  # bodies encoded whole because a boundary was not safe to split

    def _entry(self, text: str) -> _Fixed:
        entry = self._fixed.get(text)
        if entry is None:
            if self._size > self.max_bytes:
                self._fixed.clear()
                self._size = 0
            entry = self._fixed[text] = _Fixed(text)
            self._size += len(entry.raw)
        return entry

    def _middle(self, entry: _Fixed, head: int) -> tuple[bytes, int]:
        """The whole base64 lines of ``entry.raw[head:]`` and where the rest begins."""
        got = entry.phases.get(head)
        if got is None:
            end = head + (len(entry.raw) - head) // _LINE * _LINE
            got = entry.phases[head] = (_b64_lines(entry.raw[head:end]), end)
            self._size += len(got[0])
        return got

    def encode(self, parts: Sequence[str]) -> bytes:
        """``body_b64("".join(parts))``; even indices are fixed runs, odd ones personal values."""
        if len(parts) < 2:
            return body_b64("".join(parts))
        b2a = binascii.b2a_base64
        out: list[bytes] = []
        carry = b""
        last = len(parts) - 1
        started = False  # a non-empty piece came before this one
        for i, piece in enumerate(parts):
            if i % 2 == 0:
                entry = self._entry(piece)
                if (started and not entry.clean_start) or (i < last and not entry.clean_end):
                    return self._fallback(parts)
                raw = entry.raw
                head = (_LINE - len(carry)) % _LINE
                if len(raw) - head < _MIN_CACHED:
                    carry += raw
                else:
                    if head:
                        out.append(b2a(carry + raw[:head], newline=False))
                        out.append(b"\r\n")
                    middle, rest = self._middle(entry, head)
                    out.append(middle)
                    carry = raw[rest:]
            else:
                if (started and piece and not piece[0].isascii()) or (i < last and piece.endswith("\r")):
                    return self._fallback(parts)
                carry += _canonical(piece)
            started = started or bool(piece)
            if len(carry) >= _LINE:
                cut = len(carry) // _LINE * _LINE
                out.append(_b64_lines(carry[:cut]))
                carry = carry[cut:]
        if carry:
            out.append(b2a(carry, newline=False))
            out.append(b"\r\n")
        self.spliced += 1
        return b"".join(out)

    def _fallback(self, parts: Sequence[str]) -> bytes:
        self.fallbacks += 1
        return body_b64("".join(parts))
