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
from syndicate.store.arrival import DigestWindow
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
    assert (late.after_seq, late.upto_seq, late.window_end) == (first[0].upto_seq, 4, utc(2026, 11, 24, 0))
    renderer = DigestRenderer(store, settings)
    nl = store.get_list("tin")
    r = renderer.render(nl, late.period, late.categories, late.window)
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
        texts[sid] = renderer.render(nl, p.period, p.categories, p.window).text
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
    args = (nl, "2026-11-21", (), DigestWindow(0, 1, utc(2026, 11, 20), utc(2026, 11, 21)))
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
    window = DigestWindow(0, 1, utc(2026, 11, 20), utc(2026, 11, 21))
    rendered = DigestRenderer(store, custom).render(nl, "2026-11-21", (), window)
    mine = personalise(rendered, "Lan", "https://u/1", "https://p/1")
    assert "Thân gửi Lan," in mine.text and "Thân gửi Lan," in mine.html
    default = DigestRenderer(store, settings).render(nl, "2026-11-21", (), window)
    assert "Xin chào Lan," in personalise(default, "Lan", "https://u/1", "https://p/1").text


# -- arrival order: which articles a digest holds ----------------------------------------


def one(store: Store, guid: str, published: datetime, imported: datetime, category: str = "Xã hội",
        title: str | None = None, body: str = "") -> None:
    store.upsert_articles([Article(guid=guid, title=title or f"Bài {guid}", slug=guid, published=published,
                                   category=category, body_text=body)], now=imported)


def sent_titles(store: Store, settings: Settings, now: datetime) -> dict[str, list[str]]:
    """Plan at ``now`` and render each queued digest: {period: titles}."""
    planned = list(plan(store, now))
    store.plan_deliveries(planned, now=now)
    renderer = DigestRenderer(store, settings, archive=False)
    out: dict[str, list[str]] = {}
    for p in planned:
        if p.skipped:
            out[p.period] = []
            continue
        nl = store.get_list_by_id(p.list_id)
        text = renderer.render(nl, p.period, p.categories, p.window, now).text
        out[p.period] = sorted(line.split(". ", 1)[1] for line in text.splitlines() if line[:1].isdigit() and ". Bài" in line)
    return out


def test_an_article_imported_just_after_a_send_goes_in_the_next_digest(store: Store, settings: Settings) -> None:
    # issue 11: published 08:14, imported 08:16, just after the 08:15 send: no digest ever carried it
    setup(store, settings)  # daily at 07:00 Ho Chi Minh City = 00:00 UTC
    subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    one(store, "early", utc(2026, 11, 23, 23, 50), imported=utc(2026, 11, 23, 23, 51))
    assert sent_titles(store, settings, utc(2026, 11, 24, 0, 0, 30)) == {"2026-11-24": ["Bài early"]}
    one(store, "late", utc(2026, 11, 23, 23, 59), imported=utc(2026, 11, 24, 0, 1))  # just after that send
    assert sent_titles(store, settings, utc(2026, 11, 24, 5)) == {}  # not due again today
    assert sent_titles(store, settings, utc(2026, 11, 25, 0, 5)) == {"2026-11-25": ["Bài late"]}
    assert sent_titles(store, settings, utc(2026, 11, 26, 0, 5)) == {"2026-11-26": []}  # exactly once


def test_old_dates_arrive_within_the_age_cap_and_never_beyond(store: Store, settings: Settings) -> None:
    setup(store, settings, max_age_days=7)
    store.create_list(NewsList(slug="slow", name="Slow", max_age_days=30, send_hour=8))  # an hour later
    subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 1))
    subscribe(store, settings, "an@example.org", "slow", confirmed=True, now=utc(2026, 11, 1))
    assert sent_titles(store, settings, utc(2026, 11, 20, 1, 30)) == {"2026-11-20": []}  # both lists, empty
    one(store, "three-days", utc(2026, 11, 17, 12), imported=utc(2026, 11, 20, 6))  # backdated, imported late
    one(store, "ten-days", utc(2026, 11, 10, 12), imported=utc(2026, 11, 20, 6))  # an archive import
    one(store, "ten-years", utc(2016, 11, 20, 12), imported=utc(2026, 11, 20, 6))
    assert sent_titles(store, settings, utc(2026, 11, 21, 0, 30)) == {"2026-11-21": ["Bài three-days"]}
    # the 30-day list, an hour later, carries the ten-day-old one too, in its first digest after it arrived
    assert sent_titles(store, settings, utc(2026, 11, 21, 1, 30)) == {"2026-11-21": ["Bài ten-days",
                                                                                    "Bài three-days"]}
    for day in (22, 23, 28):
        assert sent_titles(store, settings, utc(2026, 11, day, 1, 30)) == {f"2026-11-{day}": []}


def test_an_edit_of_an_article_already_sent_is_not_sent_again(store: Store, settings: Settings) -> None:
    setup(store, settings)
    subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    one(store, "a", utc(2026, 11, 23, 12), imported=utc(2026, 11, 23, 13))
    assert sent_titles(store, settings, utc(2026, 11, 24, 1)) == {"2026-11-24": ["Bài a"]}
    one(store, "a", utc(2026, 11, 23, 12), imported=utc(2026, 11, 24, 9), title="Bài a", body="Sửa lỗi chính tả")
    one(store, "b", utc(2026, 11, 24, 8), imported=utc(2026, 11, 24, 9))
    assert sent_titles(store, settings, utc(2026, 11, 25, 1)) == {"2026-11-25": ["Bài b"]}


def test_a_future_dated_article_waits_for_its_time_then_arrives_once(store: Store, settings: Settings) -> None:
    setup(store, settings)
    subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    one(store, "embargo", utc(2026, 11, 25, 12), imported=utc(2026, 11, 23, 12))  # out on the 25th at noon
    one(store, "now", utc(2026, 11, 23, 11), imported=utc(2026, 11, 23, 12))
    assert sent_titles(store, settings, utc(2026, 11, 24, 1)) == {"2026-11-24": ["Bài now"]}
    assert sent_titles(store, settings, utc(2026, 11, 25, 1)) == {"2026-11-25": []}  # 08:00 local: not yet
    assert sent_titles(store, settings, utc(2026, 11, 26, 1)) == {"2026-11-26": ["Bài embargo"]}
    assert sent_titles(store, settings, utc(2026, 11, 27, 1)) == {"2026-11-27": []}


def test_a_replan_of_a_period_already_planned_skips_nothing(store: Store, settings: Settings) -> None:
    setup(store, settings)
    r = subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    one(store, "a", utc(2026, 11, 23, 12), imported=utc(2026, 11, 23, 13))
    assert sent_titles(store, settings, utc(2026, 11, 24, 1)) == {"2026-11-24": ["Bài a"]}
    one(store, "b", utc(2026, 11, 24, 2), imported=utc(2026, 11, 24, 3))
    sub = store.get_subscription(r.subscriber.id, r.newslist.id)  # type: ignore[arg-type]
    sub.last_period = ""  # e.g. a cadence switched there and back: the period is due again
    store.save_subscription(sub)
    [again] = list(plan(store, utc(2026, 11, 24, 4)))
    assert store.plan_deliveries([again]) == (0, 0)  # the row exists: not a second digest
    assert sent_titles(store, settings, utc(2026, 11, 25, 1)) == {"2026-11-25": ["Bài b"]}  # b is not skipped


def test_first_digest_holds_the_period_before_or_since_joining(store: Store, settings: Settings) -> None:
    setup(store, settings)
    one(store, "before", utc(2026, 11, 10, 12), imported=utc(2026, 11, 10, 13))
    one(store, "week", utc(2026, 11, 21, 12), imported=utc(2026, 11, 21, 13))
    one(store, "day", utc(2026, 11, 23, 12), imported=utc(2026, 11, 23, 13))
    subscribe(store, settings, "old@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    subscribe(store, settings, "new@example.org", "tin", confirmed=True, now=utc(2026, 11, 23, 20))
    for day in (15, 18, 19, 22):
        subscribe(store, settings, f"d{day}@example.org", "tin", confirmed=True, now=utc(2026, 11, day, 5))
    planned = {p.subscriber_id: p for p in plan(store, utc(2026, 11, 24, 1))}
    renderer = DigestRenderer(store, settings, archive=False)
    nl = store.get_list("tin")
    texts = {k: renderer.render(nl, p.period, p.categories, p.window).text for k, p in planned.items()}
    assert "Bài week" in texts[1] and "Bài day" in texts[1] and "Bài before" not in texts[1]  # the whole cap
    assert "Bài day" in texts[2] and "Bài week" not in texts[2]  # joined last night: the period before
    # however many first digests, at most two windows per list and period: planning and rendering stay grouped
    assert len({p.window for p in planned.values()}) == 2


def test_digest_preview_says_when_send_would_skip(cli: Any, tmp_path: Any) -> None:
    from syndicate.cli import main
    from syndicate.config import load_settings
    from syndicate.store import open_store

    store = open_store(tmp_path / "syndicate.db")
    settings = load_settings()
    store.create_list(NewsList(slug="tin", name="Tin nhanh"))
    subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    store.close()
    args = ["digest", "preview", "lan@example.org", "--list", "tin", "--at"]
    empty = cli.invoke(main, [*args, "2026-11-24T08:00:00+07:00"])
    assert empty.exit_code == 0, empty.output
    assert empty.output == (
        "tin, lan@example.org: nothing new for 2026-11-24 since the last digest (nothing arrived in its topics "
        "within 7 days); `send` would skip this period and send no email.\n")
    assert "0 new" not in empty.output and "0 tin" not in empty.output
    assert cli.invoke(main, ["send", "--at", "2026-11-24T08:00:00+07:00"]).exit_code == 0
    with open_store(tmp_path / "syndicate.db") as s:
        one(s, "a", utc(2026, 11, 24, 2), imported=utc(2026, 11, 24, 2))  # type: ignore[arg-type]
    skipped = cli.invoke(main, [*args, "2026-11-24T10:00:00+07:00"])
    assert skipped.output == (
        "tin, lan@example.org: the digest for 2026-11-24 was skipped; `send` sends nothing more "
        "for it. The next one, 2026-11-25, is due at 2026-11-25 07:00 +07 and holds 1 new article so far.\n")
    out = cli.invoke(main, [*args, "2026-11-25T07:00:00+07:00", "--out", "d.txt"])
    assert out.exit_code == 0 and "(2026-11-25, 1 articles)" in out.output and (tmp_path / "d.txt").exists()
    assert cli.invoke(main, ["send", "--at", "2026-11-25T07:00:00+07:00"]).exit_code == 0
    sent = cli.invoke(main, [*args, "2026-11-25T09:00:00+07:00"])  # the digest that went out, with a note
    assert sent.exit_code == 0 and "1. Bài a" in sent.stdout and "Đây là tin mới từ Tin nhanh." in sent.stdout
    assert sent.stderr == (
        "tin, lan@example.org: the digest for 2026-11-25 is already sent (shown here as planned); `send` sends "
        "nothing more for it. The next one, 2026-11-26, is due at 2026-11-26 07:00 +07 and holds 0 new articles "
        "so far.\n")


def test_the_age_cap_is_a_list_setting(cli: Any, tmp_path: Any) -> None:
    from syndicate.cli import main

    made = cli.invoke(main, ["list", "create", "tin", "--name", "Tin", "--max-age-days", "3"])
    assert made.exit_code == 0, made.output
    shown = cli.invoke(main, ["list", "show", "tin", "--json"])
    assert '"max_age_days": 3' in shown.output
    assert cli.invoke(main, ["list", "update", "tin", "--max-age-days", "30"]).exit_code == 0
    assert '"max_age_days": 30' in cli.invoke(main, ["list", "show", "tin", "--json"]).output
    bad = cli.invoke(main, ["list", "update", "tin", "--max-age-days", "0"])
    assert bad.exit_code == 2 and "0 is not in the range 1<=x<=36500" in bad.output
    (tmp_path / "lists.toml").write_text('[[list]]\nslug = "tuan"\nname = "Tuần"\nmax_age_days = 0\n', "utf-8")
    toml = cli.invoke(main, ["list", "create", "--from", str(tmp_path / "lists.toml")])
    assert toml.exit_code == 65  # EX_DATAERR, as every bad input
    assert toml.output == "error: max_age_days 0 is not a whole number of days from 1 to 36500\n"
    for value in ("1e400", '"7"', "99999999999999999999", "true"):
        (tmp_path / "lists.toml").write_text(f'[[list]]\nslug = "tuan"\nname = "Tuần"\nmax_age_days = {value}\n',
                                             "utf-8")
        hostile = cli.invoke(main, ["list", "create", "--from", str(tmp_path / "lists.toml")])
        assert hostile.exit_code == 65 and hostile.output.startswith("error: max_age_days "), hostile.output
    (tmp_path / "lists.toml").write_text('[[list]]\nslug = "tuan"\nname = "Tuần"\nmax_age_days = 14\n', "utf-8")
    assert cli.invoke(main, ["list", "create", "--from", str(tmp_path / "lists.toml")]).exit_code == 0
    assert '"max_age_days": 14' in cli.invoke(main, ["list", "show", "tuan", "--json"]).output
    # `article list` shows scheduled articles to the admin; the feeds and pages do not
    from syndicate.store import open_store

    with open_store(tmp_path / "syndicate.db") as store:
        one(store, "later", datetime(2099, 1, 1, tzinfo=UTC), imported=datetime(2026, 11, 24, tzinfo=UTC))  # type: ignore[arg-type]
    assert "later" in cli.invoke(main, ["article", "list"]).output


def test_a_dry_run_counts_what_came_due_and_releases_nothing(store: Store, settings: Settings) -> None:
    from syndicate.mailer import MemoryTransport
    from syndicate.sender import run_send

    setup(store, settings)
    subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    one(store, "soon", utc(2026, 11, 23, 12), imported=utc(2026, 11, 22, 12))  # embargoed when imported
    article_id = store.get_article("soon").id or 0
    report = run_send(store, settings.with_(mail_sender_address="tin@news.example.org"), MemoryTransport(),
                      now=utc(2026, 11, 24, 1), dry_run=True)
    assert (report.queued, report.skipped) == (1, 0)  # it came due: the digest would carry it
    assert store.arrival_seq(article_id) is None and store.deliveries_for(1) == []  # nothing written
    transport = MemoryTransport()
    sent = run_send(store, settings.with_(mail_sender_address="tin@news.example.org"), transport,
                    now=utc(2026, 11, 24, 1))
    assert sent.sent == 1 and store.arrival_seq(article_id) == 1
    import email
    import email.policy

    msg = email.message_from_bytes(transport.sent[0][2], policy=email.policy.default)
    assert "/articles/soon" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_an_outbox_row_planned_before_arrival_order_keeps_its_published_window(store: Store, settings: Settings) -> None:
    from syndicate.store.outbox import PlannedDelivery

    nl = setup(store, settings)
    r = subscribe(store, settings, "lan@example.org", "tin", confirmed=True, now=utc(2026, 11, 20))
    one(store, "in", utc(2026, 11, 23, 12), imported=utc(2026, 11, 23, 13))
    one(store, "out", utc(2026, 11, 22, 12), imported=utc(2026, 11, 23, 13))
    assert r.subscription.id is not None and r.subscriber.id is not None and nl.id is not None
    store.plan_deliveries([PlannedDelivery(nl.id, r.subscriber.id, r.subscription.id, "2026-11-24",
                                           utc(2026, 11, 23), utc(2026, 11, 24), ())])  # no seq: an old row
    [d] = store.claim_deliveries("me", utc(2026, 11, 24, 1), utc(2026, 11, 24, 2), 10)
    assert d.after_seq is None
    text = DigestRenderer(store, settings, archive=False).render(nl, d.period, d.categories, d.window).text
    assert "Bài in" in text and "Bài out" not in text


def test_imports_while_planning_are_neither_skipped_nor_repeated(store: Store, settings: Settings) -> None:
    """Another process imports while `send` plans: each article lands in exactly one digest window."""
    import threading

    from syndicate.store import open_store
    from syndicate.store.subscribers import email_hash

    nl = setup(store, settings)
    assert nl.id is not None
    with store.transaction() as conn:  # 1,500 subscribers, so a plan runs long enough to interleave
        conn.executemany("INSERT INTO subscribers (id, email, email_hash, created) "
                         "VALUES (?, ?, ?, '2026-11-01T00:00:00+00:00')",
                         [(i, f"r{i}@example.org", email_hash(f"r{i}@example.org")) for i in range(1, 1501)])
        conn.executemany("INSERT INTO subscriptions (subscriber_id, list_id, status, created, confirmed) "
                         "VALUES (?, ?, 'active', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00')",
                         [(i, nl.id) for i in range(1, 1501)])
    stop = threading.Event()
    imported: list[int] = []
    failures: list[BaseException] = []

    def importer() -> None:
        try:
            with open_store(settings.db) as other:
                n = 0
                while not stop.is_set() and n < 2000:
                    n += 1
                    one(other, f"c{n}", utc(2026, 11, 20, 12), imported=utc(2026, 11, 20, 13))  # type: ignore[arg-type]
                    imported.append(n)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    thread = threading.Thread(target=importer)
    thread.start()
    try:
        for day in range(21, 26):
            store.plan_deliveries(plan(store, utc(2026, 11, day, 1)), batch=250)
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not failures and not thread.is_alive()
    store.plan_deliveries(plan(store, utc(2026, 11, 26, 1)))  # one more after the importer stopped
    high = store.digest_high_water(utc(2026, 11, 26, 1))
    assert high == len(imported) > 0
    windows: dict[int, list[tuple[int, int]]] = {}
    # A digest still queued when the next period is planned is superseded: the new one carries its window.
    # Skipped rows (nothing new) carry no article; what matters is the digests that go out.
    for row in store.conn.execute("SELECT subscription_id, after_seq, upto_seq FROM deliveries "
                                  "WHERE status != 'skipped' ORDER BY id"):
        windows.setdefault(row[0], []).append((row[1], row[2]))
    assert len(windows) == 1500
    for got in windows.values():  # (each holds at least its last, queued digest)  # contiguous from the first live digest to the end: every seq exactly once
        assert got[0][0] == 0 and got[-1][1] == high
        assert all(a[1] == b[0] for a, b in zip(got, got[1:], strict=False)), got
