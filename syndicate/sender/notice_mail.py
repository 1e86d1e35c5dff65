"""Turning a claimed notice row (confirmation or welcome email) into bytes.

The drain builds digests with :class:`~syndicate.sender.build.MessageBuilder`
and notices with :class:`NoticeBuilder`; both go out through the same claim,
journal, retry and backoff path. A notice's links are made when it is built
(a confirmation link is signed then, so a retry carries a fresh one), its
Message-ID is stable per outbox row and its return path is the row's VERP
address, so a bounce of a confirmation counts like a bounce of a digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2

from .. import subscribers as subs
from ..config import Settings
from ..digest import ConfirmationContent, render_notice
from ..mailer import AUTOMATIC_HEADERS, DkimKeyring, Mail, list_headers, render_mail, verp_address
from ..models import NewsList
from ..store import Store
from ..store.notices import NOTICE_KINDS
from ..store.outbox import ClaimedDelivery
from .build import address_domain, atom


def notice_message_id(kind: str, newslist: NewsList, subscriber_id: int, delivery_id: int, domain: str) -> str:
    """Stable per outbox row, so a resend of the same row can be recognised.

    Example:
        >>> notice_message_id("welcome", NewsList(slug="tin-sang", name="x"), 7, 42, "news.example.org")
        '<welcome.tin-sang.7.42@news.example.org>'
    """
    return f"<{kind}.{atom(newslist.slug)}.{subscriber_id}.{delivery_id}@{domain}>"


# The personal parts a notice frame leaves open: plain ASCII words that survive templating, escaping and inlining.
_NAME, _ACTION, _UNSUB = "SYNxNOTICExNAMEx7f3a", "SYNxNOTICExACTIONx7f3a", "SYNxNOTICExUNSUBx7f3a"
_SLOTS = re.compile(f"({_NAME}|{_ACTION}|{_UNSUB})")
# Characters an HTML parser changes on the way in (newlines, NUL, other controls): such a value gets a full render.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufeff]|\r")
# A value rendered with a quote and an ampersand shows which context the frame put it in once css-inline
# serialised the page again: text escapes only the ampersand, an attribute the quote too.
_PROBE = '"&'
_IN_TEXT, _IN_ATTRIBUTE = '"&amp;', "&quot;&amp;"


def _text_escape(value: str) -> str:
    """As css-inline (html5ever) writes a text node."""
    return value.replace("&", "&amp;").replace("\xa0", "&nbsp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute_escape(value: str) -> str:
    """As css-inline (html5ever) writes an attribute value."""
    return value.replace("&", "&amp;").replace("\xa0", "&nbsp;").replace('"', "&quot;")


@dataclass(frozen=True)
class NoticeFrame:
    """A confirmation or welcome email rendered and inlined once, split at its personal parts.

    ``html_parts``/``text_parts`` alternate fixed runs and slot names; ``html_attr`` marks, per HTML slot, whether
    it sits in an attribute. ``None`` parts mean the frame could not be split safely: every message renders in full.
    """

    subject: str
    named: bool
    html_parts: tuple[str, ...] | None
    html_attr: tuple[bool, ...]
    text_parts: tuple[str, ...] | None

    def splice(self, name: str, action_url: str, unsubscribe_url: str) -> ConfirmationContent | None:
        """The notice for one person, or None when it needs a full render."""
        if self.html_parts is None or self.text_parts is None or bool(name.split()) != self.named:
            return None
        name = " ".join(name.split())
        values = {_NAME: name, _ACTION: action_url, _UNSUB: unsubscribe_url}
        if any(_UNSAFE.search(v) for v in values.values()):
            return None
        out, slot = [], 0
        for i, part in enumerate(self.html_parts):
            if i % 2 == 0:
                out.append(part)
            else:
                out.append((_attribute_escape if self.html_attr[slot] else _text_escape)(values[part]))
                slot += 1
        text = "".join(part if i % 2 == 0 else values[part] for i, part in enumerate(self.text_parts))
        return ConfirmationContent(self.subject, "".join(out), text)


def _signature(env: jinja2.Environment, kind: str) -> tuple[tuple[str, int], ...]:
    """The notice's template files and their modification times, so an admin's edit makes a new frame."""
    loader = env.loader
    if not isinstance(loader, jinja2.FileSystemLoader):
        return ()
    found = []
    for name in (f"email/{kind}.html", f"email/{kind}.txt", "email/_notice.html", "email/strings.toml"):
        for base in loader.searchpath:
            path = Path(base) / name
            try:
                found.append((str(path), path.stat().st_mtime_ns))
                break
            except OSError:
                continue
    return tuple(found)


def _split_html(plain: str, probed: str) -> tuple[tuple[str, ...], tuple[bool, ...]] | None:
    """Split the HTML at its slots and tell text from attribute slots, from a render whose values ended in _PROBE."""
    parts = tuple(_SLOTS.split(plain))
    probed_parts = re.split(f"(?:{_NAME}|{_ACTION}|{_UNSUB})((?:{re.escape(_IN_ATTRIBUTE)}|{re.escape(_IN_TEXT)})?)",
                            probed)
    if len(probed_parts) != len(parts):
        return None
    contexts = probed_parts[1::2]
    if any(c not in (_IN_TEXT, _IN_ATTRIBUTE) for c in contexts):
        return None  # e.g. inside <style> or a comment: no escaping rule is known there
    return parts, tuple(c == _IN_ATTRIBUTE for c in contexts)


# Shared by every builder of the process (the API's sender makes one per batch): environments by (settings, cwd),
# frames by (settings, cwd, frame key). Both are small; they are emptied when they grow past a few hundred.
_ENVS: dict[tuple[Settings, str], jinja2.Environment] = {}
_FRAMES: dict[tuple[object, ...], NoticeFrame] = {}


class NoticeBuilder:
    """Builds the confirmation and welcome emails of claimed outbox rows."""

    def __init__(self, store: Store, settings: Settings, signer: DkimKeyring | None = None) -> None:
        self.store = store
        self.settings = settings
        self.signer = signer if signer is not None else DkimKeyring.from_settings(settings)
        self._env: jinja2.Environment | None = None
        self._lists: dict[int, NewsList] = {}
        self._signatures: dict[str, tuple[tuple[str, int], ...]] = {}  # a builder lives for one drain
        self._near: dict[tuple[object, ...], NoticeFrame] = {}  # frames this builder used, by a cheap key
        try:  # settings made in code may hold a list; then this builder keeps its own caches
            hash(settings)
            self._envs, self._frames = _ENVS, _FRAMES
        except TypeError:
            self._envs, self._frames = {}, {}

    def env(self) -> jinja2.Environment:
        if self._env is None:
            from ..render import make_environment

            key = (self.settings, str(Path.cwd()))  # the templates are looked up under the cwd too
            found = self._envs.get(key)
            if found is None:
                if len(self._envs) > 16:
                    self._envs.clear()
                found = self._envs[key] = make_environment(self.settings)
            self._env = found
        return self._env

    def newslist(self, list_id: int) -> NewsList:
        if list_id not in self._lists:
            self._lists[list_id] = self.store.get_list_by_id(list_id)
        return self._lists[list_id]

    def mail_for(self, d: ClaimedDelivery, date: datetime) -> Mail:
        if d.kind not in NOTICE_KINDS:
            raise ValueError(f"delivery {d.id} is a {d.kind!r}, not a notice")
        s = self.settings
        nl = self.newslist(d.list_id)
        sub = self.store.find_subscription(d.subscriber_id, d.list_id)
        issued = d.created  # the links are dated when the row was queued
        unsub = subs.unsubscribe_url(s, d.subscriber_id, d.list_id, d.email, issued=issued)
        if d.kind == "confirm":
            action = subs.confirm_url(s, d.subscriber_id, d.list_id, d.email, issued=issued)
        else:
            action = subs.preferences_url(s, d.subscriber_id, d.list_id, d.email, issued=issued)
        schedule = (sub.cadence, sub.weekday, sub.send_hour) if sub else (nl.cadence, nl.weekday, nl.send_hour)
        content = self.content(d.kind, nl, d.name, action, unsub, schedule)
        from_addr = nl.sender_address or s.mail_sender_address
        domain = address_domain(from_addr)
        headers: list[tuple[str, str]] = list(AUTOMATIC_HEADERS)
        if d.kind == "welcome":  # list mail from now on: one-click unsubscribe works from the first one
            return_domain = address_domain("x@" + (s.mail_return_path_domain or domain))
            headers = list_headers(
                nl.name, f"{atom(nl.slug)}.{domain}", unsub,
                f"mailto:unsubscribe@{return_domain}?subject=unsubscribe%20{unsub.rsplit('/', 1)[1]}",
            ) + headers
        if s.mail_feedback_id:
            headers.append(("Feedback-ID", f"{atom(nl.slug)}:{d.kind}:{atom(s.mail_feedback_id)}"))
        return Mail(
            from_name=nl.sender_name or s.mail_sender_name, from_addr=from_addr, to_name=d.name, to_addr=d.email,
            subject=content.subject, text=content.text, html=content.html,
            message_id=notice_message_id(d.kind, nl, d.subscriber_id, d.id, domain), date=date, headers=headers,
            return_path=verp_address(s, d.id, domain),
        )

    def content(self, kind: str, nl: NewsList, name: str, action_url: str, unsubscribe_url: str,
                schedule: tuple[str, int, int]) -> ConfirmationContent:
        """The notice's words and markup: spliced into a cached frame, or rendered in full when it cannot be."""
        near = (kind, nl.id, bool(name.split()), schedule)  # this builder's lists do not change while it lives
        frame = self._near.get(near)
        if frame is None:
            frame = self._near[near] = self.frame(kind, nl, bool(name.split()), schedule)
        spliced = frame.splice(name, action_url, unsubscribe_url)
        if spliced is not None:
            return spliced
        return self.render(kind, nl, name, action_url, unsubscribe_url, schedule)

    def render(self, kind: str, nl: NewsList, name: str, action_url: str, unsubscribe_url: str,
               schedule: tuple[str, int, int]) -> ConfirmationContent:
        """The full render, what every spliced notice must equal."""
        cadence, weekday, send_hour = schedule
        return render_notice(self.settings, self.env(), kind, nl, name, action_url, unsubscribe_url=unsubscribe_url,
                             cadence=cadence, weekday=weekday, send_hour=send_hour)

    def frame(self, kind: str, nl: NewsList, named: bool, schedule: tuple[str, int, int]) -> NoticeFrame:
        """One frame per (kind, list as it is now, language, schedule, named or not, template files)."""
        env = self.env()
        signature = self._signatures.get(kind)
        if signature is None:  # looked at once per drain: an edit shows from the next batch on
            signature = self._signatures[kind] = _signature(env, kind)
        key = (self.settings, str(Path.cwd()), kind, repr(nl), named, schedule, signature)
        found = self._frames.get(key)
        if found is not None:
            return found
        name = _NAME if named else ""
        plain = self.render(kind, nl, name, _ACTION, _UNSUB, schedule)
        probed = self.render(kind, nl, name + _PROBE if named else "", _ACTION + _PROBE, _UNSUB + _PROBE, schedule)
        split = _split_html(plain.html, probed.html)
        text_parts = tuple(_SLOTS.split(plain.text))
        frame = NoticeFrame(plain.subject, named, split[0] if split else None, split[1] if split else (), text_parts)
        # Proof on a sample with everything that needs escaping: a frame that does not give the full render's
        # bytes (an admin's template that filters a slot, say) is never used.
        sample = ("Ngô <Ánh> & \"Lan\" 'x'" if named else "", "https://x.example/c?a=1&b=\"2\"<3>",
                  "https://x.example/u?a='1'&b=2")
        if frame.splice(*sample) != self.render(kind, nl, *sample, schedule):
            frame = NoticeFrame(plain.subject, named, None, (), None)
        if len(self._frames) > 256:
            self._frames.clear()
        self._frames[key] = frame
        return frame

    def build(self, d: ClaimedDelivery, date: datetime) -> tuple[Mail, bytes]:
        mail = self.mail_for(d, date)
        return mail, render_mail(mail, self.signer)
