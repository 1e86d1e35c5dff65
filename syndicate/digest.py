"""Digests: who is due now, which articles, render once, personalise.

A subscription is due when its local send hour (and weekday, for weekly
digests) has come in the subscriber's time zone and it has not had that
period yet. Periods are named by the local date of their send moment:
``2026-11-24`` (daily) or ``2026-W48`` (ISO week, weekly). A run that was
missed sends one digest for the newest period, covering the whole gap.

Which articles a digest holds is decided by ARRIVAL ORDER, never by the
clock: every article gets the next number of a store sequence (``seq``) when
it becomes public in the store (at import, or when its embargo ends; see
``store/articles.py``). A digest planned at ``now`` covers the arrival window
``(last_seq, high-water]``: everything that arrived after the subscription's
previous digest, up to what is public now, in its topics, published within
the list's ``max_age_days`` before the period's send moment. The plan
records the window on the outbox row and the high-water mark on the
subscription in one transaction, so each article reaches each subscription
in exactly one digest (the first planned after it arrived) however late it
was imported or however old its date; a missed run, a retry or a replan
never skips or repeats one. The first digest of a subscription holds what
arrived before it and was published since the period before (or since it
joined, if earlier), within the age cap.

Rendering happens once per (list, period, category set, window): templates
are rendered with placeholder tokens, CSS is inlined once, and each
subscriber's greeting and links are substituted with ``str.replace``.
"""

from __future__ import annotations

import html
import re
import textwrap
import tomllib
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import css_inline
import jinja2

from .config import PACKAGE_ROOT, Settings
from .models import Article, NewsList, utcnow
from .render import (
    digest_subject,
    format_date,
    format_number,
    load_strings,
    make_environment,
    pick_language,
    weekday_name,
)
from .store import Store
from .store.arrival import DigestWindow
from .store.outbox import ArchivedDigest, DueCandidate, PlannedDelivery

#: Articles shown in one digest; the rest are "and N more".
MAX_ARTICLES = 20

# Per-subscriber parts: ASCII tokens that survive Jinja escaping and css-inline.
GREETING = "@@SYN-GREETING@@"
UNSUBSCRIBE = "@@SYN-UNSUBSCRIBE@@"
PREFERENCES = "@@SYN-PREFERENCES@@"



@lru_cache(maxsize=1)
def _shipped_strings() -> dict[str, dict[str, Any]]:
    """The shipped ``templates/email/strings.toml``, for the pure helpers below."""
    source = (PACKAGE_ROOT / "templates" / "email" / "strings.toml").read_text(encoding="utf-8")
    return {k: v for k, v in tomllib.loads(source).items() if isinstance(v, dict)}


def strings(language: str, catalogue: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The email words for a list's language, from ``catalogue`` (an admin's
    override, see :func:`syndicate.render.load_strings`) or the shipped file."""
    return pick_language(catalogue or _shipped_strings(), language)


# -- periods and due time (pure functions) -------------------------------------


@dataclass(frozen=True)
class Period:
    """One digest period: its key, its send moment and the one before (UTC)."""

    key: str
    moment: datetime
    previous: datetime
    local_date: date


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """A time zone by IANA name; an unknown name falls back to UTC."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def send_moment(day: date, hour: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of ``hour``:00 local time on ``day``.

    An hour that does not exist (spring forward) resolves to the instant the
    clock jumps past it; an hour that happens twice (fall back) to the first.

    Example:
        >>> send_moment(date(2026, 11, 1), 7, ZoneInfo("America/New_York")).isoformat()
        '2026-11-01T12:00:00+00:00'
        >>> send_moment(date(2026, 10, 31), 7, ZoneInfo("America/New_York")).isoformat()
        '2026-10-31T11:00:00+00:00'
    """
    return datetime(day.year, day.month, day.day, hour, tzinfo=tz).astimezone(UTC)


def period_key(day: date, cadence: str) -> str:
    """The period a local date belongs to.

    Example:
        >>> period_key(date(2026, 11, 24), "daily"), period_key(date(2026, 11, 24), "weekly")
        ('2026-11-24', '2026-W48')
    """
    if cadence == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return day.isoformat()


def current_period(now: datetime, cadence: str, weekday: int, send_hour: int, tz: ZoneInfo) -> Period:
    """The newest period whose send moment is at or before ``now``.

    Example:
        >>> p = current_period(datetime(2026, 11, 24, 0, 30, tzinfo=UTC), "daily", 0, 7, ZoneInfo("Asia/Ho_Chi_Minh"))
        >>> p.key, p.moment.isoformat()
        ('2026-11-24', '2026-11-24T00:00:00+00:00')
    """
    local = now.astimezone(tz).date()
    step = 7 if cadence == "weekly" else 1
    if cadence == "weekly":
        local -= timedelta(days=(local.weekday() - weekday) % 7)
    moment = send_moment(local, send_hour, tz)
    if moment > now:
        local -= timedelta(days=step)
        moment = send_moment(local, send_hour, tz)
    previous = send_moment(local - timedelta(days=step), send_hour, tz)
    return Period(period_key(local, cadence), moment, previous, local)


def is_newer(key: str, last: str) -> bool:
    """Whether period ``key`` comes after ``last`` (a cadence change counts as new).

    Example:
        >>> is_newer("2026-11-24", "2026-11-23"), is_newer("2026-11-24", "2026-11-24"), is_newer("2026-W48", "")
        (True, False, True)
    """
    if not last:
        return True
    if ("W" in key) != ("W" in last):
        return True
    return key > last


class DueClock:
    """Answers "is this subscription due at ``now``?" with periods cached per
    (zone, cadence, weekday, hour), so 100,000 subscriptions cost a few
    dictionary look-ups each."""

    def __init__(self, now: datetime) -> None:
        self.now = now.astimezone(UTC)
        self._cache: dict[tuple[str, str, int, int], Period] = {}

    def period(self, timezone: str, cadence: str, weekday: int, send_hour: int) -> Period:
        key = (timezone, cadence, weekday, send_hour)
        p = self._cache.get(key)
        if p is None:
            p = current_period(self.now, cadence, weekday, send_hour, zone(timezone))
            self._cache[key] = p
        return p

    def due(self, c: DueCandidate) -> Period | None:
        """The period ``c`` is due for now, or None."""
        p = self.period(c.timezone, c.cadence, c.weekday, c.send_hour)
        if c.since is not None and p.moment < c.since:
            return None  # joined after this period went out: wait for the next one
        if not is_newer(p.key, c.last_period):
            return None
        return p


def window_for(c: DueCandidate, p: Period, newslist: NewsList, high_water: int,
               include_due: bool = False) -> DigestWindow:
    """The articles a digest for period ``p`` holds: those that arrived after the
    subscription's previous digest (``c.last_seq``) up to ``high_water``,
    published within the list's age cap before the send moment. A first
    digest (``last_seq`` None) of a subscription that began during the
    period before holds what was published since that period began; one
    that began earlier, the whole age cap. (Two windows per list and period,
    never one per subscriber: planning and rendering stay grouped.)

    Example:
        >>> c = DueCandidate(1, 1, 1, "daily", 0, 7, (), "", None, datetime(2026, 11, 1, tzinfo=UTC), "UTC", 40)
        >>> p = current_period(datetime(2026, 11, 24, 8, tzinfo=UTC), "daily", 0, 7, ZoneInfo("UTC"))
        >>> w = window_for(c, p, NewsList(slug="s", name="S", max_age_days=7), 52)
        >>> (w.after_seq, w.upto_seq, w.since.isoformat())
        (40, 52, '2026-11-17T07:00:00+00:00')
    """
    since = p.moment - timedelta(days=max(1, newslist.max_age_days))
    if c.last_seq is None and (c.since is None or c.since >= p.previous):
        since = max(since, p.previous)
    return DigestWindow(c.last_seq or 0, max(high_water, c.last_seq or 0), since, p.moment, include_due)


def effective_categories(c_categories: tuple[str, ...] | list[str], newslist: NewsList) -> tuple[str, ...]:
    """The subscription's categories, else the list's, else () meaning all."""
    return tuple(sorted(set(c_categories or newslist.categories or ())))


def plan(store: Store, now: datetime, lists: dict[int, NewsList] | None = None,
         list_id: int | None = None, *, release: bool = True) -> Iterator[PlannedDelivery]:
    """Stream one planned delivery per due subscription (skipped if empty).

    First releases what came due by ``now`` (embargoed articles get their
    arrival number), then reads the high-water mark once: articles arriving
    while the plan runs belong to the next digest. ``release=False`` (dry
    runs, which write nothing) counts what would be released instead.
    Counting articles is cached per (categories, window), so a list with many
    subscribers on few category sets costs a few queries.
    """
    clock = DueClock(now)
    if release:
        store.release_due_articles(now)
    high_water = store.digest_high_water(now)
    if lists is None:
        lists = {nl.id: nl for nl in store.all_lists() if nl.id is not None}
    counts: dict[tuple[tuple[str, ...], DigestWindow], int] = {}
    for c in store.due_subscriptions(list_id=list_id):
        nl = lists.get(c.list_id)
        if nl is None:
            continue
        p = clock.due(c)
        if p is None:
            continue
        window = window_for(c, p, nl, high_water, include_due=not release)
        cats = effective_categories(c.categories, nl)
        key = (cats, window)
        n = counts.get(key)
        if n is None:
            n = store.count_digest_articles(window, cats or None, now=now)
            counts[key] = n
        yield PlannedDelivery(
            list_id=c.list_id, subscriber_id=c.subscriber_id, subscription_id=c.subscription_id, period=p.key,
            window_start=window.since, window_end=window.until, categories=cats, skipped=n == 0,
            after_seq=window.after_seq, upto_seq=window.upto_seq,
        )


@dataclass(frozen=True)
class Outlook:
    """What ``send`` would do for one subscription at a moment (for previews).

    ``note`` is empty when it would send a digest for ``period``; otherwise it
    says, for a person, why not (already sent this period, not due yet,
    nothing new) and when the next one is due. ``show`` says whether
    ``window`` is worth rendering: the digest ``send`` would send, or the one
    it already queued or sent for this period.
    """

    period: Period
    due: bool
    window: DigestWindow
    categories: tuple[str, ...]
    count: int
    note: str = ""
    show: bool = True


def outlook(store: Store, newslist: NewsList, subscription_id: int, email: str, now: datetime) -> Outlook:
    """Whether and what ``send`` would send this subscription at ``now``, writing nothing.

    Reads the subscription as planning does (whatever its status), counts
    embargoed articles due by ``now`` as released, and explains a period
    ``send`` would skip instead of pretending to show an empty digest.
    """
    c = store.due_candidate(subscription_id)
    clock = DueClock(now)
    p = clock.due(c)
    due = p is not None
    if p is None:
        p = clock.period(c.timezone, c.cadence, c.weekday, c.send_hour)
    window = window_for(c, p, newslist, store.digest_high_water(now), include_due=True)
    cats = effective_categories(c.categories, newslist)
    count = store.count_digest_articles(window, cats or None, now=now)
    tz = zone(c.timezone)
    step = timedelta(days=7 if c.cadence == "weekly" else 1)
    nxt = current_period(p.moment + step + timedelta(hours=2), c.cadence, c.weekday, c.send_hour, tz)
    when = nxt.moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
    where = f"{newslist.slug}, {email}"
    if not due and not is_newer(p.key, c.last_period):
        so_far = f"holds {count:,} new {'article' if count == 1 else 'articles'} so far"
        planned = store.planned_window(c.list_id, c.subscriber_id, p.key)
        if planned is not None and planned[0] not in ("skipped", "cancelled"):
            status, window = planned
            note = (f"{where}: the digest for {p.key} is already {status} (shown here as planned); `send` sends "
                    f"nothing more for it. The next one, {nxt.key}, is due at {when} and {so_far}.")
            return Outlook(p, due, window, cats, store.count_digest_articles(window, cats or None, now=now), note)
        note = (f"{where}: the digest for {p.key} was {planned[0] if planned else 'already planned'}; `send` "
                f"sends nothing more for it. The next one, {nxt.key}, is due at {when} and {so_far}.")
    elif not due:
        note = (f"{where}: not due yet: joined after the {p.key} digest went out; the first one, {nxt.key}, "
                f"is due at {when}.")
    elif count == 0:
        note = (f"{where}: nothing new for {p.key} since the last digest (nothing arrived in its topics "
                f"within {newslist.max_age_days} days); `send` would skip this period and send no email.")
    else:
        return Outlook(p, due, window, cats, count)
    return Outlook(p, due, window, cats, count, note, show=False)


# -- rendering -------------------------------------------------------------------


@dataclass(frozen=True)
class ArticleView:
    """What a digest template shows of one article (absolute links)."""

    title: str
    link: str
    summary: str
    summary_wrapped: str
    category: str
    author: str
    published: datetime
    image: str
    image_alt: str
    source: str = ""  # where the article came from ("haiphong.gov.vn"), as every feed carries it


@dataclass(frozen=True)
class RenderedDigest:
    """A digest rendered once, with placeholders for per-subscriber parts."""

    newslist: NewsList
    period: str
    categories_key: str
    subject: str
    html: str
    text: str
    article_count: int
    view_url: str
    language: str
    html_parts: tuple[str, ...] = ()
    text_parts: tuple[str, ...] = ()
    hello: str = ""  # the greeting's words in the list's language ("" = the shipped ones)
    hello_name: str = ""

    def __post_init__(self) -> None:
        if not self.html_parts:
            object.__setattr__(self, "html_parts", tuple(_SLOTS.split(self.html)))
            object.__setattr__(self, "text_parts", tuple(_SLOTS.split(self.text)))


_SLOTS = re.compile(f"({re.escape(GREETING)}|{re.escape(UNSUBSCRIBE)}|{re.escape(PREFERENCES)})")


@dataclass
class Personalised:
    subject: str
    html: str
    text: str
    # the same, as fixed runs (even indices, shared by the group) and personal values,
    # so the mailer can encode the fixed runs once per group
    html_parts: tuple[str, ...] = ()
    text_parts: tuple[str, ...] = ()


def categories_key(cats: tuple[str, ...]) -> str:
    return ",".join(cats)


def period_label(period: str, language: str, local_day: date | None = None, t: dict[str, Any] | None = None) -> str:
    """A period as a reader writes it: a date, or a week.

    Example:
        >>> period_label("2026-11-24", "vi"), period_label("2026-W48", "en")
        ('Thứ Ba, 24/11/2026', 'Week 48, 2026')
    """
    if "-W" in period:
        year, week = period.split("-W")
        return str((t or strings(language))["week"]).format(week=int(week), year=year)
    day = local_day or date.fromisoformat(period)
    return format_date(datetime(day.year, day.month, day.day), language, with_weekday=True)


def _summary(a: Article) -> str:
    text = " ".join((a.summary or a.body_text).split())
    if len(text) > 280:
        text = text[:277].rsplit(" ", 1)[0] + "…"
    return text


class DigestRenderer:
    """Renders digests once per group and personalises them per subscriber."""

    def __init__(self, store: Store, settings: Settings, env: jinja2.Environment | None = None,
                 max_articles: int = MAX_ARTICLES, archive: bool = True) -> None:
        self.store = store
        self.settings = settings
        self.env = env or make_environment(settings)
        self.max_articles = max_articles
        self.archive = archive
        self._inliner = css_inline.CSSInliner(keep_at_rules=True)
        self._words = load_strings(self.env, "email/strings.toml")
        self._cache: dict[tuple[int, str, tuple[str, ...], DigestWindow], RenderedDigest] = {}
        self._lists: dict[int, NewsList] = {}

    def newslist(self, list_id: int) -> NewsList:
        nl = self._lists.get(list_id)
        if nl is None:
            nl = self.store.get_list_by_id(list_id)
            self._lists[list_id] = nl
        return nl

    def render(self, newslist: NewsList, period: str, cats: tuple[str, ...], window: DigestWindow,
               now: datetime | None = None) -> RenderedDigest:
        """The digest for a group (the articles of ``window`` in ``cats``, public at
        ``now``), from cache after the first call."""
        assert newslist.id is not None
        key = (newslist.id, period, cats, window)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        base = self.settings.base_url.rstrip("/")
        lang = newslist.language or self.settings.language
        t = strings(lang, self._words)
        articles = self.store.digest_articles(window, cats or None, now=now, limit=self.max_articles)
        total = len(articles)
        if total >= self.max_articles:
            total = self.store.count_digest_articles(window, cats or None, now=now)
        views = [
            ArticleView(
                title=a.title, link=f"{base}/articles/{a.slug}/", summary=_summary(a),
                summary_wrapped=textwrap.fill(_summary(a), 72, initial_indent="   ", subsequent_indent="   "),
                category=a.category, author=a.author, published=a.published, image=a.image,
                image_alt=a.image_alt or a.title, source=a.source,
            )
            for a in articles
        ]
        label = period_label(period, lang, t=t)
        view_url = f"{base}/archive/{newslist.slug}/{period}"
        if cats:  # readers with their own topics see their own digest in the browser
            view_url += "?topics=" + urllib.parse.quote(categories_key(cats), safe=",-")
        subject = digest_subject(self.settings, t, list=newslist.name, lead=views[0].title if views else label,
                                 date=label, count=format_number(total, lang))
        more = total - len(views)
        ctx = {
            "lang": lang, "t": t, "newslist": newslist, "articles": views, "subject": subject,
            "period_label": label, "greeting": GREETING, "unsubscribe_url": UNSUBSCRIBE,
            "preferences_url": PREFERENCES, "view_url": view_url, "site_url": base + "/",
            "intro": (t["intro"] if len(views) != 1 else t["intro_one"]).format(
                count=format_number(total, lang), list=newslist.name),
            "preheader": " · ".join(v.title for v in views[:3]),
            "more": more, "more_url": base + "/",
            "more_label": t["more"].format(n=format_number(more, lang), site=self.settings.title),
            "footer": t["footer"].format(list=newslist.name),
        }
        html_out = self._inliner.inline(self.env.get_template("email/digest.html").render(ctx))
        text_out = self.env.get_template("email/digest.txt").render(ctx)
        rendered = RenderedDigest(
            newslist=newslist, period=period, categories_key=categories_key(cats), subject=subject,
            html=html_out, text=text_out, article_count=len(views), view_url=view_url, language=lang,
            hello=t["hello"], hello_name=t["hello_name"],
        )
        self._cache[key] = rendered
        if self.archive:
            generic = personalise(rendered, "", f"{base}/unsubscribe", f"{base}/preferences")
            self.store.archive_digest(ArchivedDigest(
                list_id=newslist.id, period=period, categories_key=rendered.categories_key, subject=subject,
                html=generic.html, text=generic.text, article_count=len(views), created=now or utcnow(),
            ))
        return rendered


def greeting(name: str, language: str, t: dict[str, Any] | None = None) -> str:
    """Example:
    >>> greeting("Lan", "vi"), greeting("", "en")
    ('Xin chào Lan,', 'Hello,')
    """
    t = t or strings(language)
    name = " ".join(name.split())
    return str(t["hello_name"]).format(name=name) if name else str(t["hello"])


def personalise(r: RenderedDigest, name: str, unsubscribe_url: str, preferences_url: str) -> Personalised:
    """Substitute one subscriber's greeting and links (HTML-escaped in HTML).

    Example:
        >>> nl = NewsList(slug="s", name="S", id=1)
        >>> r = RenderedDigest(nl, "2026-11-24", "", "S", f"<p>{GREETING}</p>", f"{GREETING}", 1, "", "en")
        >>> personalise(r, "<b>Ann</b>", "u", "p").html
        '<p>Hello &lt;b&gt;Ann&lt;/b&gt;,</p>'
    """
    g = greeting(name, r.language, {"hello": r.hello, "hello_name": r.hello_name} if r.hello else None)
    # The templates were split at the placeholders once; joining is one copy.
    html_values = {GREETING: html.escape(g, quote=False), UNSUBSCRIBE: html.escape(unsubscribe_url),
                   PREFERENCES: html.escape(preferences_url)}
    text_values = {GREETING: g, UNSUBSCRIBE: unsubscribe_url, PREFERENCES: preferences_url}
    hp, tp = r.html_parts, r.text_parts
    html_parts = tuple([hp[i] if i % 2 == 0 else html_values[hp[i]] for i in range(len(hp))])
    text_parts = tuple([tp[i] if i % 2 == 0 else text_values[tp[i]] for i in range(len(tp))])
    return Personalised(subject=r.subject, html="".join(html_parts), text="".join(text_parts),
                        html_parts=html_parts, text_parts=text_parts)


@dataclass
class ConfirmationContent:
    subject: str
    html: str
    text: str
    extra: dict[str, str] = field(default_factory=dict)


def render_notice(settings: Settings, env: jinja2.Environment, kind: str, newslist: NewsList, name: str,
                  action_url: str, unsubscribe_url: str = "", cadence: str = "daily", weekday: int = 0,
                  send_hour: int = 7) -> ConfirmationContent:
    """Render ``confirm`` or ``welcome`` for one subscriber, in the list's language."""
    lang = newslist.language or settings.language
    t = strings(lang, load_strings(env, "email/strings.toml"))
    schedule = (t["schedule_weekly"] if cadence == "weekly" else t["schedule_daily"]).format(
        hour=f"{send_hour:02d}", weekday=weekday_name(weekday, lang))
    subject = t[f"{kind}_subject"].format(list=newslist.name)
    ctx = {
        "lang": lang, "t": t, "newslist": newslist, "subject": subject, "greeting": greeting(name, lang, t),
        "action_url": action_url, "unsubscribe_url": unsubscribe_url, "schedule": schedule,
    }
    html_out = css_inline.CSSInliner(keep_at_rules=True).inline(env.get_template(f"email/{kind}.html").render(ctx))
    return ConfirmationContent(subject, html_out, env.get_template(f"email/{kind}.txt").render(ctx))
