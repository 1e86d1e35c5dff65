"""Rendering an announcement into the list's email frame, once per campaign.

The body is Markdown (markdown-it-py), turned into HTML and cleaned with nh3
(:func:`syndicate.sanitize.clean_html`), then put in ``email/campaign.html``
and ``email/campaign.txt``: the same masthead, footer, postal address,
unsubscribe and preferences links and text part as a digest, in the list's
language. The result is a :class:`~syndicate.digest.RenderedDigest` with the
digest's per-subscriber placeholders, so the sender personalises and
encodes it exactly as it does a digest.

Click tracking (only when the list opts in): every ``http(s)`` link of the
body is stored for the campaign and its ``href`` becomes ``/r/<token>`` on
``serve``, a token signed with the site's secret over (campaign id, link id),
and, only when the list also keeps per-person stats, the subscriber id.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any

import css_inline
import jinja2
from itsdangerous import BadSignature, URLSafeSerializer
from markdown_it import MarkdownIt
from markupsafe import Markup

from .config import Settings
from .digest import GREETING, PREFERENCES, UNSUBSCRIBE, RenderedDigest, strings
from .models import NewsList
from .render import format_date, load_strings
from .sanitize import clean_html, html_to_text
from .store.campaigns import Campaign, Tracking

_HREF = re.compile(r'href="(https?://[^"]+)"')
_LINK = re.compile(r'<a\s[^>]*?href="([^"]+)"[^>]*>(.*?)</a>', re.S)
_CLICK_SALT = "syndicate.click"
_NO_TRACKING = Tracking()


def _spell_link(m: re.Match[str]) -> str:
    """A link in the text part: its words, then its address (unless they are the address)."""
    url, words = m.group(1), m.group(2)
    if html.unescape(re.sub(r"<[^>]+>", "", words)).strip() == html.unescape(url):
        return words
    return f"{words} ({url})"


def archive_period(campaign_id: int) -> str:
    """The campaign's key in the list's web archive (beside the digests' periods).

    Example:
        >>> archive_period(7)
        'campaign-7'
    """
    return f"campaign-{campaign_id}"


def markdown_html(body_md: str) -> str:
    """Markdown to clean HTML (raw HTML in it is sanitised like any article's).

    Example:
        >>> markdown_html("Hi **all** <script>x()</script>")
        '<p>Hi <strong>all</strong> </p>'
    """
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    return clean_html(md.render(body_md)).strip()


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.require_secret(), salt=_CLICK_SALT)


def click_token(settings: Settings, campaign_id: int, link_id: int, subscriber_id: int | None = None) -> str:
    data: list[int] = [campaign_id, link_id] if subscriber_id is None else [campaign_id, link_id, subscriber_id]
    return str(_serializer(settings).dumps(data))


def read_click_token(settings: Settings, token: str) -> tuple[int, int, int | None] | None:
    """(campaign id, link id, subscriber id or None), or None for a token we did not sign."""
    try:
        data = _serializer(settings).loads(token)
    except BadSignature:
        return None
    if (not isinstance(data, list) or len(data) not in (2, 3)
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in data)):
        return None
    return int(data[0]), int(data[1]), (int(data[2]) if len(data) == 3 else None)


def body_links(body_html: str) -> list[str]:
    """The distinct http(s) links of a cleaned body, in order (HTML entities decoded)."""
    return list(dict.fromkeys(html.unescape(u) for u in _HREF.findall(body_html)))


def track_links(settings: Settings, body_html: str, campaign_id: int, link_ids: dict[str, int],
                subscriber_id: int | None = None) -> str:
    """Point each stored link of the body at the signed redirect."""
    base = settings.base_url.rstrip("/")

    def swap(m: re.Match[str]) -> str:
        link_id = link_ids.get(html.unescape(m.group(1)))
        if link_id is None:
            return m.group(0)
        return f'href="{base}/r/{click_token(settings, campaign_id, link_id, subscriber_id)}"'

    return _HREF.sub(swap, body_html)


class CampaignRenderer:
    """Renders campaigns in their list's frame; one rendering per campaign (per person with per-person stats)."""

    def __init__(self, settings: Settings, env: jinja2.Environment) -> None:
        self.settings = settings
        self.env = env
        self._words = load_strings(env, "email/strings.toml")
        self._inliner = css_inline.CSSInliner(keep_at_rules=True)

    def render(self, newslist: NewsList, c: Campaign, *, tracking: Tracking = _NO_TRACKING,
               link_ids: dict[str, int] | None = None, subscriber_id: int | None = None,
               subject_prefix: str = "", when: datetime | None = None) -> RenderedDigest:
        s = self.settings
        base = s.base_url.rstrip("/")
        lang = newslist.language or s.language
        t: dict[str, Any] = strings(lang, self._words)
        body = markdown_html(c.body_md)
        text_body = html_to_text(_LINK.sub(_spell_link, body))
        if tracking.track_clicks and link_ids:
            body = track_links(s, body, c.id, link_ids, subscriber_id if tracking.per_person_stats else None)
        subject = " ".join((subject_prefix + c.subject).split())
        view_url = f"{base}/archive/{newslist.slug}/{archive_period(c.id)}"
        ctx = {
            "lang": lang, "t": t, "newslist": newslist, "subject": subject, "body": Markup(body),
            "text_body": text_body,
            "date_label": format_date(when or c.planned_at or c.send_at or c.created, lang),
            "greeting": GREETING, "unsubscribe_url": UNSUBSCRIBE, "preferences_url": PREFERENCES,
            "view_url": view_url, "site_url": base + "/", "footer": t["footer"].format(list=newslist.name),
            "tracking_note": (t.get("tracking_person") if tracking.per_person_stats else t.get("tracking_clicks"))
            if tracking.track_clicks else "",
            "preheader": " ".join(html_to_text(body).split())[:140],
        }
        html_out = self._inliner.inline(self.env.get_template("email/campaign.html").render(ctx))
        text_out = self.env.get_template("email/campaign.txt").render(ctx)
        return RenderedDigest(
            newslist=newslist, period=f"campaign:{c.id}", categories_key="", subject=subject, html=html_out,
            text=text_out, article_count=0, view_url=view_url, language=lang, hello=t["hello"],
            hello_name=t["hello_name"],
        )
