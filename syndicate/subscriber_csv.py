"""Bulk CSV import and export of subscribers, streamed batch by batch.

:class:`CsvImport` reads a CSV file row by row (header aliases from listmonk
and Mailchimp exports are understood), checks each row with the rules in
:mod:`syndicate.subscribers`, and writes batches of ``BATCH_SIZE`` rows in one
transaction each, so memory stays flat whatever the file size; bad rows are
counted and named in the :class:`ImportReport`. :func:`export_csv` streams
subscriptions back out in the same columns.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from .config import Settings
from .errors import InputError, NotFound
from .models import CADENCES, SUBSCRIPTION_STATUSES, NewsList, from_iso, to_iso, utcnow
from .sanitize import one_line, slugify
from .store.consent import ConsentRecord
from .store.subscribers import ImportRow
from .subscribers import LEFT, address_hash, check_timezone, normalize_address

if TYPE_CHECKING:
    from .store import Store

__all__ = ["EXPORT_COLUMNS", "CONSENT_COLUMNS", "BATCH_SIZE", "ImportReport", "CsvImport", "import_csv",
           "export_csv", "export_consent"]

EXPORT_COLUMNS = ["email", "name", "timezone", "locale", "list", "status", "cadence", "weekday", "send_hour",
                  "categories", "created", "confirmed", "unsubscribed"]
_ALIASES = {
    "email": "email", "emailaddress": "email", "e-mail": "email", "mail": "email", "emailaddr": "email",
    "name": "name", "fullname": "name", "displayname": "name",
    "firstname": "first", "fname": "first", "givenname": "first",
    "lastname": "last", "lname": "last", "surname": "last", "familyname": "last",
    "timezone": "timezone", "tz": "timezone", "timezone_": "timezone",
    "locale": "locale", "language": "locale", "lang": "locale",
    "list": "list", "status": "status", "cadence": "cadence", "weekday": "weekday",
    "sendhour": "send_hour", "hour": "send_hour", "categories": "categories", "topics": "categories",
    "created": "created", "confirmed": "confirmed", "unsubscribed": "unsubscribed",
    "attributes": "attributes", "attribs": "attributes",
}
# listmonk (enabled/disabled/blocklisted) and Mailchimp (subscribed/unsubscribed/cleaned) statuses
_STATUS_ALIASES = {"enabled": "active", "subscribed": "active", "disabled": "unsubscribed",
                   "blocklisted": "unsubscribed", "blacklisted": "unsubscribed", "cleaned": "bounced"}
BATCH_SIZE = 5000
_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}\Z")
#: A cell starting with one of these is a formula to a spreadsheet (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading ``= + - @`` tab or CR (or a quote) gets a ``'`` in front.

    :func:`unneutralise` undoes it, so an export imports back to the same data.

    Example:
        >>> neutralise("=HYPERLINK(1)"), neutralise("Lan"), unneutralise(neutralise("'x"))
        ("'=HYPERLINK(1)", 'Lan', "'x")
    """
    return "'" + value if value.startswith(FORMULA_STARTS + ("'",)) else value


def unneutralise(value: str) -> str:
    """Undo :func:`neutralise`: ``'=x`` -> ``=x``, ``''x`` -> ``'x``; anything else is left alone."""
    if len(value) > 1 and value[0] == "'" and value[1:].startswith(FORMULA_STARTS + ("'",)):
        return value[1:]
    return value


def _header_key(raw: str) -> str:
    return "".join(ch for ch in raw.strip().lower() if ch.isalnum() or ch == "-")


@dataclass
class ImportReport:
    """The summary of one CSV import."""

    file: str
    list_slug: str
    dry_run: bool = False
    rows: int = 0
    new_subscribers: int = 0
    new_subscriptions: int = 0
    resubscribed: int = 0
    pending: int = 0  # subscriptions written as pending, to whom no confirmation email was sent
    duplicates: int = 0
    existing: int = 0
    suppressed: int = 0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    confirmation_email: bool = True  # queue the confirmation email for rows imported as pending
    confirmations_queued: int = 0

    @property
    def skipped(self) -> int:
        return self.duplicates + self.existing + self.suppressed

    def summary(self) -> str:
        verb = "would add" if self.dry_run else "added"
        return (
            f"{self.file}: {self.rows:,} rows; {verb} {self.new_subscriptions:,} subscriptions to {self.list_slug} "
            f"({self.new_subscribers:,} new subscribers, {self.resubscribed:,} resubscribed); skipped "
            f"{self.duplicates:,} duplicates, {self.existing:,} already on the list, {self.suppressed:,} suppressed; "
            f"{self.errors:,} errors"
        ) + self.confirmation_note()

    def confirmation_note(self) -> str:
        """Says plainly whether the pending rows were sent the confirmation email."""
        if self.dry_run:
            return ""
        if not self.confirmation_email:
            return "; no confirmation email queued for pending subscribers (--no-confirmation-email)"
        if self.confirmations_queued:
            n = self.confirmations_queued
            return (f"; queued {n:,} confirmation email{'' if n == 1 else 's'} for the pending subscribers "
                    "(the next `syndicate send` sends them)")
        return ""

    def error_message(self) -> str:
        """One line naming the bad rows, for ``error: ...``."""
        shown = "; ".join(self.first_errors[:5])
        more = f"; and {self.errors - 5:,} more" if self.errors > 5 else ""
        rest = "nothing was written (dry run)" if self.dry_run else "the other rows were imported"
        return f"{shown}{more} (skipped {self.errors:,} of {self.rows:,} rows; {rest})"


class CsvImport:
    """A streamed CSV import. Iterate it to run it: it yields once per batch
    (rows done so far), so a progress bar can follow; ``report`` holds the result.

    Rows are read with the csv module one at a time and written in batches of
    ``batch_size`` (one transaction each), so memory stays flat whatever the
    file size.
    """

    def __init__(
        self, store: Store, settings: Settings, path: Path, list_slug: str | None, *, confirmed: bool = False,
        resubscribe: bool = False, dry_run: bool = False, errors_path: Path | None = None, actor: str = "",
        batch_size: int = BATCH_SIZE, now: datetime | None = None, confirmation_email: bool = True,
    ) -> None:
        self.store, self.settings, self.path = store, settings, path
        self.list_slug = list_slug
        self.confirmed, self.resubscribe, self.dry_run = confirmed, resubscribe, dry_run
        self.errors_path, self.actor, self.batch_size = errors_path, actor, batch_size
        self.now = now or utcnow()
        self.report = ImportReport(file=str(path), list_slug=list_slug or "the lists named in the file", dry_run=dry_run,
                                   confirmation_email=confirmation_email)
        self.lists: dict[str, NewsList] = {}
        if list_slug is not None:
            self.lists[list_slug] = store.get_list(list_slug)
        if not path.is_file():
            raise InputError(f"{path}: no such file")

    def estimated_batches(self) -> int:
        """How many batches the file holds, counted from its line breaks (fast, approximate)."""
        lines = 0
        with self.path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                lines += chunk.count(b"\n")
        return max(1, lines // self.batch_size + 1)

    def run(self) -> ImportReport:
        for _ in self:
            pass
        return self.report

    def __iter__(self) -> Iterator[int]:
        baseline = self.store.import_baseline()
        source = f"import:{self.path.name}"
        errors_fh = self.errors_path.open("w", encoding="utf-8", newline="") if self.errors_path else None
        try:
            with self.path.open("rb") as fh:
                reader = csv.reader(self._decoded(fh))
                try:
                    header = next(reader)
                except StopIteration:
                    raise InputError(f"{self.path}: the file is empty; it needs a header row with an 'email' column") from None
                except (UnicodeDecodeError, csv.Error) as exc:
                    raise InputError(f"{self.path} line 1: cannot read the header: {exc}") from None
                columns = self._columns(header)
                err_writer = csv.writer(errors_fh) if errors_fh else None
                if err_writer:
                    err_writer.writerow([*header, "reason"])
                batch: list[ImportRow] = []
                for row, line in self._rows(reader):
                    self.report.rows += 1
                    try:
                        batch.append(self._parse(row, line, columns))
                    except InputError as exc:
                        self._reject(err_writer, row, line, str(exc))
                    if len(batch) >= self.batch_size:
                        self._flush(batch, baseline, source, err_writer)
                        batch = []
                        yield self.report.rows
                if batch:
                    self._flush(batch, baseline, source, err_writer)
                yield self.report.rows
        finally:
            if errors_fh:
                errors_fh.close()

    def _decoded(self, fh: BinaryIO) -> Iterator[str]:
        """The file's lines as text, so a bad byte is reported on its own line (a BOM is dropped)."""
        for number, raw in enumerate(fh, 1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{self.path} line {number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at position "
                    f"{exc.start + 1}); save the file as UTF-8 CSV"
                ) from None

    def _rows(self, reader: Any) -> Iterator[tuple[list[str], int]]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(f"{self.path} line {reader.line_num}: {exc}") from None
            if row and any(cell.strip() for cell in row):
                yield row, reader.line_num

    def _columns(self, header: list[str]) -> dict[str, int]:
        columns: dict[str, int] = {}
        for i, raw in enumerate(header):
            key = _ALIASES.get(_header_key(raw))
            if key and key not in columns:
                columns[key] = i
        if "email" not in columns:
            raise InputError(
                f"{self.path} line 1: no email column (expected a header such as 'email' or 'Email Address'; "
                f"found {', '.join(repr(h) for h in header[:8])})"
            )
        if self.list_slug is None and "list" not in columns:
            raise InputError(f"{self.path}: name a list with --list SLUG (the file has no 'list' column)")
        return columns

    def _reject(self, writer: Any, row: list[str], line: int, reason: str) -> None:
        self.report.errors += 1
        if len(self.report.first_errors) < 5:
            self.report.first_errors.append(f"{self.path} line {line}: {reason}")
        if writer:
            writer.writerow([*row, reason])

    def _parse(self, row: list[str], line: int, columns: dict[str, int]) -> ImportRow:
        def cell(key: str) -> str:
            i = columns.get(key)
            if i is None or i >= len(row):
                return ""
            value = row[i]
            return (unneutralise(value) if value[:1] == "'" else value).strip()

        email = normalize_address(cell("email"))
        name = cell("name") or " ".join(p for p in (cell("first"), cell("last")) if p)
        timezone, locale = cell("timezone"), cell("locale")
        if "attributes" in columns and cell("attributes"):
            try:
                attrs = json.loads(cell("attributes"))
            except ValueError:
                raise InputError("the attributes column is not JSON") from None
            if isinstance(attrs, dict):
                timezone = timezone or str(attrs.get("timezone", "") or attrs.get("tz", ""))
                locale = locale or str(attrs.get("locale", "") or attrs.get("language", ""))
                name = name or str(attrs.get("name", ""))
        name = one_line(name)
        if len(name) > 200:
            raise InputError(f"name is {len(name):,} characters long; at most 200")
        locale = locale.strip()
        if locale and not _LOCALE.match(locale):
            raise InputError(f"locale {locale!r} is not a language tag such as 'vi' or 'en-US'")
        out = ImportRow(line=line, email=email, email_hash=address_hash(email), name=name,
                        timezone=check_timezone(timezone) if timezone else "", locale=locale, raw=row)
        out.list_slug = cell("list") if self.list_slug is None else self.list_slug
        if not out.list_slug:
            raise InputError("the list column is empty")
        for key in ("created", "confirmed", "unsubscribed"):
            text = cell(key)
            if text:
                try:
                    if not text.isascii():
                        raise ValueError(text)
                    when = from_iso(text)
                except ValueError:
                    raise InputError(f"{key} {text!r} is not an ISO 8601 time") from None
                if when > self.now + timedelta(days=1):
                    raise InputError(f"{key} {text!r} is in the future")
                setattr(out, key, when)
        status = cell("status").lower()
        status = _STATUS_ALIASES.get(status, status)
        if status and status not in ("pending", "active", *LEFT):
            raise InputError(f"status {status!r} is not one of pending, active, {', '.join(LEFT)}")
        if status == "active" and out.confirmed is None and not self.confirmed:
            # consent must be shown, never assumed, and an active person is never silently demoted
            raise InputError("status 'active' but no confirmed date; add --confirmed if they already consented, "
                             "or leave the status empty to import them as pending")
        if status:
            out.status = status
        else:
            out.status = "active" if self.confirmed else "pending"
        cadence = cell("cadence").lower()
        if cadence and cadence not in CADENCES:
            raise InputError(f"cadence {cadence!r} is not one of {', '.join(CADENCES)}")
        out.cadence = cadence
        for key, top in (("weekday", 6), ("send_hour", 23)):
            text = cell(key)
            if text:
                if not (text.isascii() and text.isdigit()) or int(text) > top:
                    raise InputError(f"{key} {text!r} is not a whole number from 0 to {top}")
                setattr(out, key, int(text))
        nl = self.lists.get(out.list_slug)
        if nl is None:
            try:
                nl = self.lists[out.list_slug] = self.store.get_list(out.list_slug)
            except NotFound:
                raise InputError(f"no list with slug {out.list_slug!r}") from None
        cats = cell("categories")
        if cats:
            parts = [c for c in cats.replace(",", ";").split(";") if c.strip()]
            out.categories = sorted({slugify(c) for c in parts})
            if any(slugify(c) == "untitled" and c.strip().lower() != "untitled" for c in parts):
                raise InputError(f"categories {cats!r} has no usable topic name")
            extra = [c for c in out.categories if nl.categories and c not in nl.categories]
            if extra:
                raise InputError(f"list {nl.slug!r} does not cover {', '.join(extra)}")
        return out

    def _flush(self, batch: list[ImportRow], baseline: int, source: str, writer: Any) -> None:
        # Rows go in file order (one run of rows per list at a time, all in one transaction), so
        # subscribers and subscriptions get ids in the order of the file: export then import
        # gives back the same file, rows in the same order.
        runs: list[list[ImportRow]] = []
        for r in batch:
            if runs and runs[-1][0].list_slug == r.list_slug:
                runs[-1].append(r)
            else:
                runs.append([r])
        with self.store.transaction(immediate=not self.dry_run):
            for rows in runs:
                self._write_run(rows, baseline, source, writer)

    def _write_run(self, rows: list[ImportRow], baseline: int, source: str, writer: Any) -> None:
        nl = self.lists[rows[0].list_slug]
        outcome = self.store.import_batch(
            nl, rows, source=source, actor=self.actor, resubscribe=self.resubscribe, baseline=baseline,
            now=self.now, write=not self.dry_run,
        )
        rep = self.report
        if rep.confirmation_email and not self.dry_run and outcome.new_subscriptions:
            assert nl.id is not None  # the pending rows this batch made get their confirmation email
            rep.confirmations_queued += self.store.queue_import_confirmations(
                nl.id, [r.email for r in rows], baseline, self.now)
        rep.new_subscribers += outcome.new_subscribers
        rep.new_subscriptions += outcome.new_subscriptions
        rep.resubscribed += outcome.resubscribed
        rep.pending += outcome.pending
        for r, reason in outcome.skipped:
            if reason.startswith("duplicate"):
                rep.duplicates += 1
            elif reason.startswith("suppressed") or "--resubscribe" in reason:
                rep.suppressed += 1
            else:
                rep.existing += 1
            if writer:
                writer.writerow([*r.raw, reason])


def import_csv(store: Store, settings: Settings, path: Path, list_slug: str | None, **options: Any) -> ImportReport:
    """Import subscribers from a CSV file in one call (see :class:`CsvImport` for options)."""
    return CsvImport(store, settings, path, list_slug, **options).run()


def export_csv(store: Store, out: TextIO, *, list_slug: str | None = None, status: str | None = None) -> int:
    """Write subscriptions as CSV that :func:`import_csv` reads back to the same data. Returns rows written.

    Cells a spreadsheet would run as a formula are neutralised (see :func:`neutralise`).
    """
    if status is not None and status not in SUBSCRIPTION_STATUSES:
        raise InputError(f"status {status!r} is not one of {', '.join(SUBSCRIPTION_STATUSES)}")
    list_id = store.get_list(list_slug).id if list_slug else None
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    for person, sub, slug in store.iter_subscriptions(list_id, status, only_subscribed=True):
        assert sub is not None
        writer.writerow([neutralise(str(cell)) for cell in (
            person.email, person.name, person.timezone, person.locale, slug, sub.status, sub.cadence, sub.weekday,
            sub.send_hour, ";".join(sub.categories), _iso_or_blank(sub.created), _iso_or_blank(sub.confirmed),
            _iso_or_blank(sub.unsubscribed),
        )])
        n += 1
    return n


def _iso_or_blank(value: datetime | None) -> str:
    return to_iso(value) if value is not None else ""


CONSENT_COLUMNS = ["email", "list", "status", "asked_at", "asked_via", "asked_source", "asked_ip", "asked_user_agent",
                   "wording", "confirmed_at", "confirmed_via", "confirmed_ip", "confirmed_user_agent",
                   "confirmation_message_id"]
CONSENT_FORMATS = ("csv", "jsonl")


def consent_row(email: str, slug: str, status: str, rec: ConsentRecord) -> dict[str, str | None]:
    """One consent record as the auditor's export shows it (times in UTC ISO 8601, None when unknown)."""
    return {
        "email": email, "list": slug, "status": status,
        "asked_at": to_iso(rec.asked_at) if rec.asked_at else None, "asked_via": rec.asked_via,
        "asked_source": rec.asked_source, "asked_ip": rec.asked_ip, "asked_user_agent": rec.asked_user_agent,
        "wording": rec.wording, "confirmed_at": to_iso(rec.confirmed_at) if rec.confirmed_at else None,
        "confirmed_via": rec.confirmed_via, "confirmed_ip": rec.confirmed_ip,
        "confirmed_user_agent": rec.confirmed_user_agent, "confirmation_message_id": rec.confirmation_message_id,
    }


def export_consent(store: Store, out: TextIO, list_slug: str, *, fmt: str = "csv") -> int:
    """Write every consent record of a list, streamed, as CSV (formulas neutralised) or JSON Lines.

    Returns how many records were written.
    """
    if fmt not in CONSENT_FORMATS:
        raise InputError(f"format {fmt!r} is not one of {', '.join(CONSENT_FORMATS)}")
    nl = store.get_list(list_slug)
    assert nl.id is not None
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(CONSENT_COLUMNS)
    n = 0
    for email, status, rec in store.iter_consent(nl.id):
        row = consent_row(email, nl.slug, status, rec)
        if writer:
            writer.writerow([neutralise(row[c] or "") for c in CONSENT_COLUMNS])
        else:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    return n
