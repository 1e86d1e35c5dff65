"""Suppressions an admin can see and change: list, add, remove, and import a provider's suppression CSV.

A suppression is kept by address hash (so it outlives erasure) and is the
one thing that stops an address on every list: the store's
``add_suppression`` ends the address's active subscriptions with an event
each, and the schema refuses to make a suppressed address active. Removing
one is an admin's decision, recorded as an event; it makes nobody active
again (that takes the person's confirmation or ``subscriber resubscribe``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings
from .errors import AddressError, InputError
from .models import Event, utcnow
from .sanitize import one_line
from .store.consent import Suppression
from .subscribers import address_hash, normalize_address

if TYPE_CHECKING:
    from .store import Store

__all__ = ["REASONS", "Suppression", "SuppressionImport", "suppress", "unsuppress", "suppressions", "canonical_reason"]

#: Reasons an admin may give; ``erased`` is set only by ``subscriber erase``.
REASONS = ("bounced", "complained", "unsubscribed")
_SYNONYMS = {
    "bounced": "bounced", "bounce": "bounced", "hardbounce": "bounced", "hard": "bounced", "cleaned": "bounced",
    "invalid": "bounced", "blocked": "bounced", "dropped": "bounced",
    "complained": "complained", "complaint": "complained", "spam": "complained", "spamreport": "complained",
    "spamcomplaint": "complained", "abuse": "complained", "abusereport": "complained",
    "unsubscribed": "unsubscribed", "unsubscribe": "unsubscribed", "unsub": "unsubscribed",
    "optout": "unsubscribed", "manual": "unsubscribed", "manuallyadded": "unsubscribed",
    "globalunsubscribe": "unsubscribed", "groupunsubscribe": "unsubscribed", "blocklisted": "unsubscribed",
}
_EMAIL_HEADERS = ("email", "emailaddress", "e-mail", "mail", "address", "recipient", "recipientemail")
_REASON_HEADERS = ("reason", "type", "suppressiontype", "suppressionreason", "category", "status", "bouncetype")


def _key(text: str) -> str:
    return "".join(ch for ch in text.strip().lower() if ch.isalnum() or ch == "-")


def canonical_reason(raw: str) -> str | None:
    """The reason a provider's word means (bounced, complained or unsubscribed), or None if unknown.

    Example:
        >>> canonical_reason("Spam Report"), canonical_reason("hard bounce"), canonical_reason("")
        ('complained', 'bounced', 'unsubscribed')
    """
    key = _key(raw).replace("-", "")
    if not key:
        return "unsubscribed"
    return _SYNONYMS.get(key)


def suppress(store: Store, settings: Settings, email: str, reason: str, *, source: str = "cli", actor: str = "",
             now: datetime | None = None) -> int:
    """Suppress an address on every list (an admin's decision, recorded). Returns the subscriptions it stopped."""
    if reason not in REASONS:
        raise InputError(f"reason {reason!r} is not one of {', '.join(REASONS)}")
    address = normalize_address(email)
    return store.add_suppression(address_hash(address), reason, now or utcnow(), source=source,
                                 actor=one_line(actor)[:200], detail=f"suppressed by an admin ({reason})")


def unsuppress(store: Store, settings: Settings, email: str, *, source: str = "cli", actor: str = "") -> str:
    """Lift an address's suppression (an admin's decision, recorded). Returns the reason it had.

    Nobody becomes active by this: their subscriptions stay as they are until
    they confirm again or an admin resubscribes them.
    """
    address = normalize_address(email)
    digest = address_hash(address)
    reason = store.suppression(digest)
    if reason is None:
        raise InputError(f"{address} is not suppressed (see `syndicate suppression ls`)")
    store.remove_suppression(digest, source=source, actor=one_line(actor)[:200],
                             detail=f"suppression lifted by an admin (was {reason})")
    return reason


def suppressions(store: Store, reason: str | None = None) -> Iterator[Suppression]:
    """Every suppression, newest first (streamed), optionally only one reason."""
    return store.iter_suppressions(reason)


@dataclass
class SuppressionImportReport:
    file: str
    rows: int = 0
    added: int = 0
    already: int = 0
    stopped: int = 0  # active subscriptions that ended
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.file}: {self.rows:,} rows; suppressed {self.added:,} addresses "
                f"({self.stopped:,} active subscriptions stopped); {self.already:,} already suppressed; "
                f"{self.errors:,} errors")

    def error_message(self) -> str:
        shown = "; ".join(self.first_errors[:5])
        more = f"; and {self.errors - 5:,} more" if self.errors > 5 else ""
        return f"{shown}{more} (skipped {self.errors:,} of {self.rows:,} rows; the other rows were imported)"


class SuppressionImport:
    """Import a provider's suppression CSV (SES, SendGrid, Mailgun, Mailchimp...): an email column and an
    optional reason column, headers matched liberally. Iterate it to run it (it yields rows done per batch)."""

    def __init__(self, store: Store, settings: Settings, path: Path, *, actor: str = "", batch_size: int = 1000,
                 now: datetime | None = None) -> None:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        self.store, self.settings, self.path, self.actor = store, settings, path, actor
        self.batch_size, self.now = batch_size, now or utcnow()
        self.report = SuppressionImportReport(file=str(path))

    def estimated_batches(self) -> int:
        with self.path.open("rb") as fh:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        return max(1, lines // self.batch_size + 1)

    def run(self) -> SuppressionImportReport:
        for _ in self:
            pass
        return self.report

    def __iter__(self) -> Iterator[int]:
        try:
            fh = self.path.open(encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read it: {exc.strerror}") from None
        with fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
                email_col, reason_col = self._columns(header)
                batch: list[tuple[int, str, str]] = []
                for row in reader:
                    if not any(c.strip() for c in row):
                        continue
                    self.report.rows += 1
                    line = reader.line_num
                    try:
                        address = normalize_address(row[email_col] if email_col < len(row) else "")
                        raw_reason = row[reason_col] if reason_col is not None and reason_col < len(row) else ""
                        reason = canonical_reason(raw_reason)
                        if reason is None:
                            raise InputError(f"reason {raw_reason.strip()!r} is not one we know (bounce, "
                                             "complaint/spam, unsubscribe)")
                    except (AddressError, InputError) as exc:
                        self._reject(line, str(exc))
                        continue
                    batch.append((line, address, reason))
                    if len(batch) >= self.batch_size:
                        self._flush(batch)
                        batch = []
                        yield self.report.rows
                if batch:
                    self._flush(batch)
            except StopIteration:
                raise InputError(f"{self.path}: the file is empty; it needs a header row with an email column") from None
            except UnicodeDecodeError as exc:
                raise InputError(f"{self.path}: not UTF-8 text ({exc.reason}); save the file as UTF-8 CSV") from None
            except csv.Error as exc:
                raise InputError(f"{self.path} line {reader.line_num}: {exc}") from None
        self.store.add_event(Event(kind="suppression-import", at=self.now, source=f"import:{self.path.name}",
                                   actor=one_line(self.actor)[:200],
                                   detail=f"{self.report.added} added, {self.report.already} already suppressed"))
        yield self.report.rows

    def _columns(self, header: list[str]) -> tuple[int, int | None]:
        keys = [_key(h).replace("-", "") for h in header]
        email = next((i for i, k in enumerate(keys) if k in {h.replace("-", "") for h in _EMAIL_HEADERS}), None)
        if email is None:
            raise InputError(f"{self.path} line 1: no email column (expected a header such as 'email' or "
                             f"'Email Address'; found {', '.join(repr(h) for h in header[:8])})")
        reason = next((i for i, k in enumerate(keys) if k in _REASON_HEADERS), None)
        return email, reason

    def _reject(self, line: int, reason: str) -> None:
        self.report.errors += 1
        if len(self.report.first_errors) < 5:
            self.report.first_errors.append(f"{self.path} line {line}: {reason}")

    def _flush(self, batch: list[tuple[int, str, str]]) -> None:
        with self.store.transaction(immediate=True):
            for _line, address, reason in batch:
                digest = address_hash(address)
                if self.store.suppression(digest) is not None:
                    self.report.already += 1
                    continue
                self.report.added += 1
                self.report.stopped += self.store.add_suppression(
                    digest, reason, self.now, source=f"import:{self.path.name}", actor=one_line(self.actor)[:200],
                    detail=f"provider suppression list ({reason})", quiet=True)
