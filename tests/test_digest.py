"""Who is due when (time zones, DST, weekly, missed runs), which articles, render once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from syndicate.config import Settings
from syndicate.digest import (
    DigestRenderer,
    DueClock,
    current_period,
    is_newer,
    period_key,
    personalise,
    plan,
    send_moment,
)
from syndicate.models import Article, NewsList
from syndicate.store import Store
from syndicate.store.outbox import DueCandidate
from syndicate.subscribers import subscribe, update_preferences

NY = ZoneInfo("America/New_York")
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def cand(**kw: Any) -> DueCandidate:
    base: dict[str, Any] = dict(subscription_id=1, subscriber_id=1, list_id=1, cadence="daily", weekday=0,
                                send_hour=7, categories=(), last_period="", last_sent_at=None, since=T0,
                                timezone="Asia/Ho_Chi_Minh")
    base.update(kw)
    return DueCandidate(**base)


def due_key(now: datetime, **kw: Any) -> str | None:
    p = DueClock(now).due(cand(**kw))
    return p.key if p else None


def test_daily_due_at_the_local_hour_in_each_time_zone() -> None:
    # 07:00 in Ho Chi Minh City is 00:00 UTC; in New York (EST) 12:00 UTC.
    assert due_key(utc(2026, 11, 23, 23, 59)) == "2026-11-23"  # yesterday's digest, not sent yet
    assert due_key(utc(2026, 11, 23, 23, 59), last_period="2026-11-23") is None
    assert due_key(utc(2026, 11, 24, 0, 0), last_period="2026-11-23") == "2026-11-24"
    assert due_key(utc(2026, 11, 24, 11, 59), timezone="America/New_York", last_period="2026-11-23") is None
    assert due_key(utc(2026, 11, 24, 12, 0), timezone="America/New_York", last_period="2026-11-23") == "2026-11-24"
    # the date line: 07:00 on the 24th in Kiritimati (UTC+14) is 17:00 UTC on the 23rd
    assert due_key(utc(2026, 11, 23, 17, 0), timezone="Pacific/Kiritimati", last_period="2026-11-23") == "2026-11-24"


def test_dst_change_in_new_york() -> None:
    # DST ends on Sunday 1 November 2026 at 02:00: 07:00 EDT is 11:00 UTC, 07:00 EST is 12:00 UTC.
    assert send_moment(date(2026, 10, 31), 7, NY) == utc(2026, 10, 31, 11)
    assert send_moment(date(2026, 11, 1), 7, NY) == utc(2026, 11, 1, 12)
    kw = dict(timezone="America/New_York", last_period="2026-10-31")
    assert due_key(utc(2026, 11, 1, 11, 30), **kw) is None  # 06:30 EST: not yet
    assert due_key(utc(2026, 11, 1, 12, 0), **kw) == "2026-11-01"
    p = current_period(utc(2026, 11, 1, 12, 0), "daily", 0, 7, NY)
    assert p.moment - p.previous == timedelta(hours=25)  # the window spans the extra hour
    # 01:00 happens twice on that day (fold): the first one counts, once
    assert send_moment(date(2026, 11, 1), 1, NY) == utc(2026, 11, 1, 5)
    # spring forward (8 March 2026): 02:00 does not exist; the digest still goes out that day, once
    moment = send_moment(date(2026, 3, 8), 2, NY)
    assert moment.astimezone(NY).date() == date(2026, 3, 8)
    assert due_key(moment, timezone="America/New_York", send_hour=2, last_period="2026-03-07", since=None) == "2026-03-08"


def test_weekly_cadence_uses_the_iso_week_of_the_local_date() -> None:
    assert period_key(date(2026, 11, 23), "weekly") == "2026-W48"
    assert period_key(date(2027, 1, 1), "weekly") == "2026-W53"
    kw = dict(cadence="weekly", weekday=0, send_hour=8, timezone="Europe/Berlin", last_period="2026-W47")
    assert due_key(utc(2026, 11, 23, 6, 59), **kw) is None  # Monday 07:59 in Berlin
    assert due_key(utc(2026, 11, 23, 7, 0), **kw) == "2026-W48"
    assert due_key(utc(2026, 11, 27, 12, 0), **kw) == "2026-W48"  # Friday: still owed this week's
    assert due_key(utc(2026, 11, 27, 12, 0), **{**kw, "last_period": "2026-W48"}) is None
    p = current_period(utc(2026, 11, 27, 12, 0), "weekly", 0, 8, ZoneInfo("Europe/Berlin"))
    assert p.moment - p.previous == timedelta(days=7)
    assert is_newer("2026-W48", "2026-11-20")  # a cadence change counts as a new period


def test_no_digest_for_a_period_that_went_out_before_joining() -> None:
    joined = utc(2026, 11, 24, 3, 0)  # 10:00 local, after today's 07:00
    assert due_key(utc(2026, 11, 24, 4, 0), since=joined) is None
    assert due_key(utc(2026, 11, 25, 0, 0), since=joined) == "2026-11-25"


# -- with a store ---------------------------------------------------------------------


def setup(store: Store, settings: Settings, **list_kw: Any) -> NewsList:
    return store.create_list(NewsList(slug="tin", name="Tin nhanh", **list_kw))


def articles(store: Store, when: list[datetime], category: str = "Xã hội", prefix: str = "a") -> None:
    store.upsert_articles([
        Article(guid=f"{prefix}{i}", title=f"Bài {prefix}{i}", slug=f"{prefix}-{i}", published=t, category=category)
        for i, t in enumerate(when)
    ])


def test_missed_runs_send_one_digest_covering_the_gap(store: Store, settings: Settings) -> None:
    setup(store, settings)
    subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    articles(store, [utc(2026, 11, 20, 12), utc(2026, 11, 21, 12), utc(2026, 11, 22, 12), utc(2026, 11, 23, 12)])
    first = list(plan(store, utc(2026, 11, 21, 1)))  # 21st, 08:00 local
    assert [p.period for p in first] == ["2026-11-21"]
    store.plan_deliveries(first)
    assert list(plan(store, utc(2026, 11, 21, 5))) == []  # same period: nothing more
    # cron is down on the 22nd and 23rd; on the 24th one digest covers the gap
    [late] = list(plan(store, utc(2026, 11, 24, 2)))
    assert late.period == "2026-11-24"
    assert (late.window_start, late.window_end) == (utc(2026, 11, 21, 0), utc(2026, 11, 24, 0))
    renderer = DigestRenderer(store, settings)
    nl = store.get_list("tin")
    r = renderer.render(nl, late.period, late.categories, late.window_start, late.window_end)
    assert r.article_count == 3 and r.text.index("Bài a3") < r.text.index("Bài a1")
    assert "Bài a0" not in r.text  # already in the first digest


def test_empty_digest_is_recorded_as_skipped(store: Store, settings: Settings) -> None:
    setup(store, settings)
    r = subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    queued, skipped = store.plan_deliveries(plan(store, utc(2026, 11, 21, 1)))
    assert (queued, skipped) == (0, 1)
    [d] = store.deliveries_for(r.subscription.id)  # type: ignore[arg-type]
    assert (d.status, d.period) == ("skipped", "2026-11-21")
    sub = store.get_subscription(r.subscriber.id, r.newslist.id)  # type: ignore[arg-type]
    assert sub.last_period == "2026-11-21" and sub.last_sent_at == utc(2026, 11, 21, 0)
    assert store.claim_deliveries("x", utc(2026, 11, 21, 1), utc(2026, 11, 21, 2), 10) == []


def test_categories_subscription_else_list_else_all(store: Store, settings: Settings) -> None:
    setup(store, settings, categories=["kinh-te", "the-thao"])
    everyone = subscribe(store, settings, "all@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    sport = subscribe(store, settings, "sport@example.org", "tin", categories=["the-thao"], confirmed=True,
                      now=utc(2026, 11, 20))
    articles(store, [utc(2026, 11, 20, 10)], "Kinh tế", "k")
    articles(store, [utc(2026, 11, 20, 11)], "Thể thao", "t")
    articles(store, [utc(2026, 11, 20, 12)], "Giải trí", "g")  # not on the list at all
    planned = {p.subscription_id: p for p in plan(store, utc(2026, 11, 21, 1))}
    assert planned[everyone.subscription.id].categories == ("kinh-te", "the-thao")  # type: ignore[index]
    assert planned[sport.subscription.id].categories == ("the-thao",)  # type: ignore[index]
    renderer = DigestRenderer(store, settings)
    nl = store.get_list("tin")
    texts = {}
    for sid, p in planned.items():
        texts[sid] = renderer.render(nl, p.period, p.categories, p.window_start, p.window_end).text
    assert "Bài k0" in texts[everyone.subscription.id] and "Bài t0" in texts[everyone.subscription.id]
    assert "Bài g0" not in texts[everyone.subscription.id]
    assert "Bài t0" in texts[sport.subscription.id] and "Bài k0" not in texts[sport.subscription.id]
    # a list without categories: all of them
    store.create_list(NewsList(slug="all", name="All"))
    r = subscribe(store, settings, "x@example.org", "all", confirmed=True, now=utc(2026, 11, 20))
    [p] = [p for p in plan(store, utc(2026, 11, 21, 1)) if p.subscription_id == r.subscription.id]
    assert p.categories == () and not p.skipped


def test_render_once_per_group_and_personalise_safely(store: Store, settings: Settings) -> None:
    nl = setup(store, settings, language="en")
    articles(store, [utc(2026, 11, 20, 10)])
    renderer = DigestRenderer(store, settings)
    args = (nl, "2026-11-21", (), utc(2026, 11, 20), utc(2026, 11, 21))
    first = renderer.render(*args)
    assert renderer.render(*args) is first  # cached: rendered once
    mine = personalise(first, "<img src=x onerror=alert(1)>", "https://u/1?a=1&b=2", "https://p/1")
    assert "<img src=x" not in mine.html and "Hello &lt;img src=x onerror=alert(1)&gt;," in mine.html
    assert 'href="https://u/1?a=1&amp;b=2"' in mine.html
    assert "Hello <img src=x onerror=alert(1)>," in mine.text and "https://u/1?a=1&b=2" in mine.text
    assert "@@SYN" not in mine.html + mine.text
    assert 'alt="Bài a0"' in first.html or "<img" not in first.html.split("<body", 1)[1]
    assert first.subject == "Tin nhanh: Bài a0" and "Saturday, 21 November 2026" in first.text  # the lead headline


def test_preferences_change_moves_the_schedule(store: Store, settings: Settings) -> None:
    setup(store, settings)
    r = subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    from syndicate.subscribers import make_token

    token = make_token(settings, "preferences", r.subscriber.id, r.newslist.id)  # type: ignore[arg-type]
    update_preferences(store, settings, token, send_hour=18, timezone="America/New_York")
    articles(store, [utc(2026, 11, 20, 12)])
    assert list(plan(store, utc(2026, 11, 20, 22, 59))) == []  # 17:59 in New York
    assert [p.period for p in plan(store, utc(2026, 11, 20, 23, 0))] == ["2026-11-20"]


@pytest.mark.parametrize("hour", [0, 6, 23])
def test_period_moment_never_after_now(hour: int) -> None:
    for offset in range(0, 48 * 60, 37):
        now = utc(2026, 11, 1) + timedelta(minutes=offset)
        for tz in (NY, HCM, ZoneInfo("Australia/Lord_Howe")):
            p = current_period(now, "daily", 0, hour, tz)
            assert p.previous < p.moment <= now < p.moment + timedelta(hours=26)


def test_admin_wording_overrides_the_shipped_email_strings(store: Store, settings: Settings, tmp_path: Any) -> None:
    from pathlib import Path

    shipped = (Path(__file__).resolve().parent.parent / "templates" / "email" / "strings.toml").read_text("utf-8")
    (tmp_path / "mine" / "email").mkdir(parents=True)
    (tmp_path / "mine" / "email" / "strings.toml").write_text(
        shipped.replace('hello_name = "Xin chào {name},"', 'hello_name = "Thân gửi {name},"'), encoding="utf-8")
    custom = settings.with_(mail_templates_dir=str(tmp_path / "mine"))
    nl = setup(store, custom, language="vi")
    articles(store, [utc(2026, 11, 20, 10)])
    rendered = DigestRenderer(store, custom).render(nl, "2026-11-21", (), utc(2026, 11, 20), utc(2026, 11, 21))
    mine = personalise(rendered, "Lan", "https://u/1", "https://p/1")
    assert "Thân gửi Lan," in mine.text and "Thân gửi Lan," in mine.html
    default = DigestRenderer(store, settings).render(nl, "2026-11-21", (), utc(2026, 11, 20), utc(2026, 11, 21))
    assert "Xin chào Lan," in personalise(default, "Lan", "https://u/1", "https://p/1").text
