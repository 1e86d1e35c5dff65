"""Bounces: read delivery status notifications (RFC 3464) and apply them.

A digest leaves with a VERP envelope sender (``bounce+<delivery id>-<mac>@...``,
see :func:`syndicate.mailer.verp_address`), so a bounce names its delivery in
the address it comes back to (``To``, ``Delivered-To``, ``X-Original-To``...).
The MAC is checked: a forged or foreign bounce is counted as unmatched and
changes nothing.

Classification: a ``message/delivery-status`` part with ``Action: failed`` and
a ``5.x.x`` status is a hard bounce; ``delayed`` or a ``4.x.x`` status is
soft; ``delivered``/``relayed``/``expanded`` reports and auto-replies are
ignored. A non-standard bounce (no DSN part, but sent by a mailer daemon to
our VERP address) is classified by the first ``n.n.n`` status in its text.

:func:`process_bounces` reads one ``.eml`` file or every message in a
Maildir's ``new/`` folder (moving each processed one to ``cur/`` as seen, so a
rerun never counts it twice) and records each bounce through
``store.record_bounce``. One unreadable message never stops the rest.

Complaints: an RFC 5965 feedback report (``message/feedback-report``, what
mailbox providers' feedback loops send) of type abuse, fraud or other is
matched to its delivery by the VERP return path of the embedded message, or
its Message-ID (a digest's, or a confirmation email's as kept in the consent
record); the subscription becomes ``complained`` and the address is
suppressed on every list, with an event. The same report twice changes
nothing more. A hard bounce counts once per delivery, however often its DSN
arrives. Autoreplies (``X-Autoreply``, ``Precedence: junk|auto_reply``,
``Auto-Submitted`` from a person) are never bounces.

The same mailbox takes the ``mailto:`` half of ``List-Unsubscribe``: digests
point it at ``unsubscribe@<domain>?subject=unsubscribe <token>``, so a message
whose subject carries a valid unsubscribe token unsubscribes that
subscription at once (the token, not the spoofable ``From``, says who).
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, HeaderParser
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings
from .errors import InputError, NotFound, TokenError
from .mailer import clean_text, parse_verp
from .store.subscribers import HARD_BOUNCE_LIMIT
from .subscribers import unsubscribe_by_token

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Bounce", "BounceReport", "Complaint", "parse_bounce", "parse_complaint", "process_bounces",
           "unsubscribe_token"]

_VERP_IN_TEXT = re.compile(r"bounce\+\d{1,18}-[0-9a-fA-F]{10}@[A-Za-z0-9.-]+")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_ADDRESS_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(r"undeliver|returned|failure|not delivered|delivery status|bounce", re.IGNORECASE)
_AUTO_PRECEDENCE = ("junk", "auto_reply", "auto-reply")
#: Feedback types (RFC 5965) that mean "this person complained"; not-spam, virus and auth-failure do not.
COMPLAINT_TYPES = ("abuse", "fraud", "other")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")


@dataclass(frozen=True)
class Bounce:
    """One bounce read from one message."""

    source: str
    delivery_id: int | None  # None: no valid VERP address (foreign or forged)
    recipient: str
    hard: bool
    action: str  # failed | delayed | (empty for a non-DSN bounce)
    status: str  # e.g. 5.1.1
    diagnostic: str

    @property
    def detail(self) -> str:
        parts = [p for p in (self.status, self.diagnostic or self.action) if p]
        return clean_text(" ".join(parts))[:300] or "bounce"


@dataclass(frozen=True)
class Complaint:
    """One complaint (an RFC 5965 feedback report) read from one message."""

    source: str
    delivery_id: int | None  # from the VERP return path, else the embedded Message-ID
    message_id: str  # the complained-about message's Message-ID, if the report kept it
    feedback_type: str  # abuse | fraud | other
    reporter: str  # the report's User-Agent

    @property
    def detail(self) -> str:
        who = f" ({self.reporter})" if self.reporter else ""
        return clean_text(f"{self.feedback_type} report{who}")[:300]


@dataclass
class BounceReport:
    """What :func:`process_bounces` did."""

    messages: int = 0
    hard: int = 0
    soft: int = 0
    ignored: int = 0  # not a bounce (auto-reply, success report, a feedback report that is no complaint)
    unmatched: int = 0  # a bounce or complaint with no valid VERP address or an unknown delivery
    newly_bounced: int = 0  # subscriptions set ``bounced`` by this run
    unsubscribed: int = 0  # mailto: unsubscribe requests carrying a valid token
    complaints: int = 0  # feedback reports matched to a delivery
    newly_complained: int = 0  # subscriptions set ``complained`` by this run
    duplicates: int = 0  # hard bounces for a delivery whose bounce was already counted
    errors: list[str] = field(default_factory=list)
    bounces: list[Bounce] = field(default_factory=list)
    complaint_list: list[Complaint] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.messages} messages: {self.hard} hard, {self.soft} soft bounces, "
            f"{self.ignored} ignored, {self.unmatched} unmatched, "
            f"{self.newly_bounced} subscriptions set bounced, {self.unsubscribed} unsubscribed by email, "
            f"{self.complaints} complaints ({self.newly_complained} subscriptions set complained), "
            f"{self.duplicates} already counted, {len(self.errors)} errors"
        )


def _find_verp(msg: Message, settings: Settings) -> int | None:
    for name in _ADDRESS_HEADERS:
        for value in msg.get_all(name) or []:
            for candidate in _VERP_IN_TEXT.findall(str(value)):
                found = parse_verp(candidate, settings)
                if found is not None:
                    return found
    return None


def _status_blocks(part: Message) -> list[Message]:
    """The field blocks of a message/delivery-status part (per-message first)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [HeaderParser().parsestr(b.strip() + "\n") for b in blocks if b.strip()]


def _field(block: Message, name: str) -> str:
    value = block.get(name)
    return clean_text(str(value)) if value is not None else ""


def _strip_type(value: str) -> str:
    """``rfc822; a@b.org`` -> ``a@b.org``; ``smtp; 550 ...`` -> ``550 ...``."""
    return value.split(";", 1)[1].strip() if ";" in value else value


def parse_bounce(data: bytes, settings: Settings, source: str = "") -> Bounce | None:
    """The bounce in one raw message, or ``None`` if it is not a bounce.

    Example:
        >>> parse_bounce(b"Subject: Out of office\\r\\n\\r\\nBack on Monday.\\r\\n", Settings()) is None
        True
    """
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    delivery_id = _find_verp(msg, settings)
    recipients: list[tuple[str, str, str, str]] = []  # action, status, recipient, diagnostic
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _status_blocks(part):
            action = _field(block, "Action").lower()
            if not action:
                continue
            recipient = _strip_type(_field(block, "Final-Recipient") or _field(block, "Original-Recipient"))
            m = _STATUS.search(_field(block, "Status"))
            status = m.group(0) if m else ""
            recipients.append((action, status, recipient, _strip_type(_field(block, "Diagnostic-Code"))))
    if recipients:
        failing = [r for r in recipients if r[0] in ("failed", "delayed")]
        if not failing:
            return None  # delivered / relayed / expanded: a success report
        failing.sort(key=lambda r: (r[0] != "failed", not r[1].startswith("5")))
        action, status, recipient, diagnostic = failing[0]
        hard = action == "failed" and (status.startswith("5") or not status)
        return Bounce(source, delivery_id, recipient, hard, action, status, diagnostic[:300])
    # not a DSN: a bounce only if a mailer daemon sent it, or it reached our VERP address
    sender = str(msg.get("From", ""))
    subject = str(msg.get("Subject", ""))
    if is_autoreply(msg) or not _DAEMON.search(sender) or not (delivery_id is not None or
                                                               _BOUNCE_SUBJECT.search(subject)):
        return None  # a vacation reply or other mail, not a bounce
    text = ""
    body = msg.get_body(("plain",))
    if body is not None:
        try:
            content = body.get_content()
            text = content if isinstance(content, str) else ""
        except (LookupError, ValueError):
            text = ""
    m = _STATUS.search(text)
    status = m.group(0) if m else ""
    failed = str(msg.get("X-Failed-Recipients", ""))
    line = next((ln.strip() for ln in text.splitlines() if status and status in ln), "")
    return Bounce(source, delivery_id, clean_text(failed), status.startswith("5"), "", status, clean_text(line)[:300])


def is_autoreply(msg: Message) -> bool:
    """An auto-reply (vacation, out of office) by its headers: ``X-Autoreply``, ``Precedence: junk|auto_reply``,
    or ``Auto-Submitted: auto-replied`` from someone who is not a mail system.

    A message without a DSN part counts as a bounce only if a mailer daemon
    sent it, so a person's "I have returned" reply is never one either.
    """
    if msg.get("X-Autoreply") is not None or msg.get("X-Autorespond") is not None:
        return True
    if str(msg.get("Precedence", "")).strip().lower() in _AUTO_PRECEDENCE:
        return True
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    return auto.startswith("auto-replied") and not _DAEMON.search(str(msg.get("From", "")))


def parse_complaint(data: bytes, settings: Settings, source: str = "") -> Complaint | None:
    """The complaint in an RFC 5965 feedback report, or ``None`` if the message is not a complaint report.

    The complained-about message is found by the VERP return path (in the
    embedded message's ``Return-Path``, the report's ``Original-Mail-From``, or
    the address the report came to), else by its embedded ``Message-ID``
    (the caller looks that up in the outbox). ``delivery_id`` is None when
    neither is ours.

    Example:
        >>> parse_complaint(b"Subject: hi\\r\\n\\r\\nhello\\r\\n", Settings()) is None
        True
    """
    msg = email.message_from_bytes(data, policy=email.policy.default)
    report: Message | None = None
    original: Message | None = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/feedback-report" and report is None:
            blocks = _status_blocks(part)
            report = blocks[0] if blocks else None
        elif ctype in ("message/rfc822", "text/rfc822-headers") and original is None and report is not None:
            original = _embedded(part)
    if report is None:
        return None
    feedback_type = _field(report, "Feedback-Type").lower()
    if feedback_type not in COMPLAINT_TYPES:
        return Complaint(source, None, "", feedback_type or "unknown", "")  # counted as ignored by the caller
    delivery_id = None
    candidates = [_field(report, "Original-Mail-From")]
    if original is not None:
        candidates[:0] = [str(v) for v in original.get_all("Return-Path") or []]
    for value in candidates:
        for found in _VERP_IN_TEXT.findall(value):
            delivery_id = parse_verp(found, settings)
            if delivery_id is not None:
                break
        if delivery_id is not None:
            break
    if delivery_id is None:
        delivery_id = _find_verp(msg, settings)
    message_id = ""
    if original is not None:
        m = _MESSAGE_ID.search(str(original.get("Message-ID", "")))
        message_id = m.group(0) if m else ""
    return Complaint(source, delivery_id, message_id, feedback_type, _field(report, "User-Agent")[:100])


def _embedded(part: Message) -> Message | None:
    """The headers of the message a report carries (a message/rfc822 part or text/rfc822-headers)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    return HeaderParser().parsestr(text.lstrip("\r\n"), headersonly=True)


_UNSUBSCRIBE = re.compile(r"^\s*(?:re:\s*)*unsubscribe\s+([A-Za-z0-9_.-]{20,300})\s*$", re.IGNORECASE)


def unsubscribe_token(data: bytes) -> str | None:
    """The token of a ``mailto:`` unsubscribe request (its subject), or None.

    Example:
        >>> unsubscribe_token(b"Subject: unsubscribe WzEsMSwiYWJjIl0.awZk.sig-abcdefghij\\r\\n\\r\\n")
        'WzEsMSwiYWJjIl0.awZk.sig-abcdefghij'
    """
    subject = BytesHeaderParser(policy=email.policy.default).parsebytes(data).get("Subject", "")
    found = _UNSUBSCRIBE.match(" ".join(str(subject).split()))
    return found.group(1) if found else None


def _maildir_new(path: Path) -> list[Path]:
    if not (path / "new").is_dir() or not (path / "cur").is_dir():
        raise InputError(f"{path} is a folder but not a Maildir (it needs new/ and cur/)")
    return sorted(p for p in (path / "new").iterdir() if p.is_file() and not p.name.startswith("."))


def _mark_seen(path: Path) -> None:
    name = path.name.split(":", 1)[0] + ":2,S"
    os.replace(path, path.parent.parent / "cur" / name)


def process_bounces(store: Store, settings: Settings, path: str | Path) -> BounceReport:
    """Read DSNs from a Maildir (its ``new/`` messages) or one file, and record them.

    Example:
        >>> report = process_bounces(store, settings, "bounces/")  # doctest: +SKIP
        >>> report.summary()  # doctest: +SKIP
        '3 messages: 1 hard, 1 soft bounces, 1 ignored, 0 unmatched, 0 subscriptions set bounced, 0 errors'
    """
    path = Path(path)
    if path.is_dir():
        files, maildir = _maildir_new(path), True
    elif path.is_file():
        files, maildir = [path], False
    else:
        raise InputError(f"{path} does not exist (give a Maildir folder or one .eml file)")
    report = BounceReport()
    for file in files:
        report.messages += 1
        try:
            data = file.read_bytes()
            token = unsubscribe_token(data)
            complaint = None if token else parse_complaint(data, settings, str(file))
            bounce = None if token or complaint else parse_bounce(data, settings, str(file))
        except (OSError, ValueError, LookupError) as exc:
            report.errors.append(f"{file}: cannot read it as a message: {exc}")
            continue
        if complaint is not None:
            _apply_complaint(store, complaint, report)
        elif token:
            try:
                unsubscribe_by_token(store, settings, token, source="email")
                report.unsubscribed += 1
            except (TokenError, NotFound):
                report.unmatched += 1
        elif bounce is None:
            report.ignored += 1
        elif bounce.delivery_id is None:
            report.unmatched += 1
            report.bounces.append(bounce)
        else:
            try:
                outcome = store.record_delivery_bounce(bounce.delivery_id, bounce.hard, bounce.detail)
            except NotFound:
                report.unmatched += 1
                report.bounces.append(bounce)
            else:
                if outcome is None:  # this delivery's bounce was counted already
                    report.duplicates += 1
                    report.bounces.append(bounce)
                    if maildir:
                        _seen(file, report)
                    continue
                report.bounces.append(bounce)
                if bounce.hard:
                    report.hard += 1
                else:
                    report.soft += 1
                if bounce.hard and outcome.status == "bounced":
                    # the store sets ``bounced`` exactly when the count reaches the limit
                    report.newly_bounced += outcome.hard_bounces == HARD_BOUNCE_LIMIT
        if maildir:
            _seen(file, report)
    return report


def _seen(file: Path, report: BounceReport) -> None:
    try:
        _mark_seen(file)
    except OSError as exc:
        report.errors.append(f"{file}: processed but cannot move it to cur/: {exc.strerror}")


def _apply_complaint(store: Store, complaint: Complaint, report: BounceReport) -> None:
    if complaint.feedback_type not in COMPLAINT_TYPES:
        report.ignored += 1
        return
    delivery_id = complaint.delivery_id
    if delivery_id is None and complaint.message_id:
        delivery_id = store.delivery_by_message_id(complaint.message_id)
    confirmation = None
    if delivery_id is None and complaint.message_id:  # a complaint about the confirmation email itself
        confirmation = store.subscription_by_confirmation_message_id(complaint.message_id)
    if delivery_id is None and confirmation is None:
        report.unmatched += 1
        report.complaint_list.append(complaint)
        return
    try:
        if delivery_id is not None:
            changed = store.record_complaint(delivery_id, complaint.detail)
        else:
            assert confirmation is not None
            changed = store.record_subscription_complaint(confirmation, f"{complaint.detail} about the confirmation email")
    except NotFound:
        report.unmatched += 1
    else:
        report.complaints += 1
        report.newly_complained += changed
    report.complaint_list.append(Complaint(complaint.source, delivery_id, complaint.message_id,
                                           complaint.feedback_type, complaint.reporter))

