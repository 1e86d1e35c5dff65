"""Subscribers: addresses, double opt-in, events, tokens, suppression, erasure, preferences."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from syndicate import subscribers as lib
from syndicate.cli import main
from syndicate.config import Secret, Settings
from syndicate.errors import AddressError, InputError, NotFound, TokenError
from syndicate.models import NewsList, utcnow
from syndicate.store import Store


@pytest.fixture
def tin_sang(store: Store) -> NewsList:
    return lib.create_list(store, NewsList(slug="tin-sang", name="Tin sáng", send_hour=7))


@pytest.fixture
def weekly(store: Store) -> NewsList:
    return lib.create_list(
        store, NewsList(slug="weekly-tech", name="Weekly tech", cadence="weekly", weekday=4,
                        categories=["cong-nghe", "khoi-nghiep"], language="en")
    )


# -- addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Bob.Smith@Example.ORG\n", "Bob.Smith@example.org"),
        ("an+news@EXAMPLE.com", "an+news@example.com"),
        ("nguyễn@ví-dụ.example", "nguyễn@ví-dụ.example"),
        ("user@XN--V-DUA.example", "user@vǟ.example"),
        ("ü@München.example", "ü@münchen.example"),
        ("nguye\u0302\u0303n@example.org", "nguyễn@example.org"),  # NFD in, NFC out
    ],
)
def test_addresses_are_normalised(raw: str, expected: str) -> None:
    assert lib.normalize_address(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("bob@", "'bob@' is not an email address: there must be something after the @-sign"),
        ("bob", "'bob' is not an email address: an email address must have an @-sign"),
        ("", "'' is not an email address: it is empty"),
        ("a@b", "'a@b' is not an email address: the part after the @-sign is not valid. It should have a period"),
        ("a b@example.org", "'a b@example.org' is not an email address: the email address contains invalid "
                            "characters before the @-sign: SPACE"),
        ("x@example.invalid", "'x@example.invalid' is not an email address: the part after the @-sign is a "
                              "special-use or reserved name that cannot be used with email"),
    ],
)
def test_bad_addresses_are_rejected_with_a_clear_message(raw: str, message: str) -> None:
    with pytest.raises(AddressError) as info:
        lib.normalize_address(raw)
    assert str(info.value) == message


@hsettings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcXYZ09.+-_@!#~ é", min_size=0, max_size=24).map(lambda s: s + "@Example.org")
       | st.text(alphabet="abc.@-_XY1", max_size=30))
def test_fast_path_agrees_with_email_validator(raw: str) -> None:
    """The shortcut for plain ASCII addresses must give exactly what the full check gives."""
    try:
        full = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=True).normalized
        local, _, domain = full.rpartition("@")
        expected: str | None = f"{local}@{domain.lower()}"
    except EmailNotValidError:
        expected = None
    try:
        got: str | None = lib.normalize_address(raw)
    except AddressError:
        got = None
    assert got == expected


def test_unknown_time_zone_is_rejected(store: Store, settings: Settings, tin_sang: NewsList) -> None:
    with pytest.raises(InputError, match="'Mars/Base' is not an IANA time zone"):
        lib.subscribe(store, settings, "an@example.org", "tin-sang", timezone="Mars/Base")
    assert store.find_subscriber("an@example.org") is None


# -- double opt-in and events -----------------------------------------------------


def test_double_opt_in_then_unsubscribe_records_every_step(store: Store, settings: Settings, tin_sang: NewsList) -> None:
    r = lib.subscribe(store, settings, "An@Example.org", "tin-sang", name="Nguyễn Văn An", source="web",
                      actor="203.0.113.9")
    assert (r.created, r.needs_confirmation, r.subscription.status) == (True, True, "pending")
    assert r.subscriber.email == "An@example.org"
    assert r.subscriber.timezone == settings.timezone
    assert r.subscription.send_hour == 7
    # pending people are not sent anything
    assert list(store.iter_active_subscriptions(tin_sang.id or 0)) == []

    again = lib.subscribe(store, settings, "an@example.org", "tin-sang", source="web")
    assert (again.created, again.subscription.id) == (False, r.subscription.id)

    sid, lid = r.subscriber.id or 0, tin_sang.id or 0
    confirmed = lib.confirm(store, settings, lib.make_token(settings, "confirm", sid, lid, r.subscriber.email))
    assert confirmed.subscription.status == "active" and confirmed.subscription.confirmed is not None
    # a second click is harmless
    assert lib.confirm(store, settings, lib.make_token(settings, "confirm", sid, lid)).created is False
    active = list(store.iter_active_subscriptions(lid))
    assert [(s.id, p.email) for s, p in active] == [(r.subscription.id, "An@example.org")]

    token = lib.unsubscribe_url(settings, sid, lid, "An@example.org").rsplit("/", 1)[1]
    out = lib.unsubscribe_by_token(store, settings, token, actor="198.51.100.7")
    assert out.subscription.status == "unsubscribed"
    lib.unsubscribe_by_token(store, settings, token)  # idempotent: no second event
    events = store.events_for(sid)
    assert [(e.kind, e.source, e.actor) for e in events] == [
        ("subscribe", "web", "203.0.113.9"),
        ("confirm", "web", ""),
        ("unsubscribe", "web", "198.51.100.7"),
    ]
    assert all(e.list_id == lid for e in events)


def test_admin_add_confirmed_is_active_at_once(store: Store, settings: Settings, weekly: NewsList) -> None:
    r = lib.subscribe(store, settings, "emma@example.org", "weekly-tech", confirmed=True, actor="admin",
                      categories=["Công nghệ"])
    assert r.subscription.status == "active" and not r.needs_confirmation
    assert (r.subscription.cadence, r.subscription.weekday, r.subscription.categories) == ("weekly", 4, ["cong-nghe"])
    assert [(e.kind, e.actor, e.detail) for e in store.events_for(r.subscriber.id or 0)] == [
        ("admin-add", "admin", "active")
    ]
    with pytest.raises(InputError, match="does not cover the-thao"):
        lib.subscribe(store, settings, "x@example.org", "weekly-tech", categories=["thể thao"])


def test_unsubscribe_cancels_queued_deliveries(store: Store, settings: Settings, tin_sang: NewsList) -> None:
    from syndicate.store.outbox import PlannedDelivery

    r = lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    sid, lid, sub_id = r.subscriber.id or 0, tin_sang.id or 0, r.subscription.id or 0
    now = utcnow()
    queued, _ = store.plan_deliveries([
        PlannedDelivery(list_id=lid, subscriber_id=sid, subscription_id=sub_id, period="2026-11-25",
                        window_start=now - timedelta(days=1), window_end=now, categories=()),
    ])
    assert queued == 1
    assert [d.status for d in store.deliveries_for(sub_id)] == ["queued"]
    lib.unsubscribe(store, settings, sid, lid, source="cli")
    assert [d.status for d in store.deliveries_for(sub_id)] == ["cancelled"]


# -- suppression ----------------------------------------------------------------------


def test_left_addresses_need_resubscribe(store: Store, settings: Settings, tin_sang: NewsList) -> None:
    r = lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    lib.unsubscribe_address(store, settings, "an@example.org", None, source="cli")
    with pytest.raises(InputError) as info:
        lib.subscribe(store, settings, "AN@example.org", "tin-sang", confirmed=True)
    assert str(info.value) == (
        "an@example.org is unsubscribed from tin-sang; add --resubscribe only if they asked to come back"
    )
    back = lib.resubscribe(store, settings, "an@example.org", "tin-sang", actor="admin")
    assert back.subscription.status == "active"
    assert [e.kind for e in store.events_for(r.subscriber.id or 0)] == ["admin-add", "unsubscribe", "resubscribe"]
    assert store.events_for(r.subscriber.id or 0)[-1].detail == "active, was unsubscribed"


def test_bounces_and_complaints(store: Store, settings: Settings, tin_sang: NewsList, weekly: NewsList) -> None:
    r = lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    sub_id = r.subscription.id or 0
    assert store.record_hard_bounce(sub_id, threshold=2, detail="550 no such user") is False
    assert store.get_subscription_by_id(sub_id).status == "active"
    assert store.record_hard_bounce(sub_id, threshold=2) is True
    assert store.get_subscription_by_id(sub_id).status == "bounced"
    kinds = [e.kind for e in store.events_for(r.subscriber.id or 0)]
    assert kinds == ["admin-add", "hard-bounce", "hard-bounce", "bounce"]
    with pytest.raises(InputError, match="an@example.org is suppressed \\(bounced\\)"):
        lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)

    other = lib.subscribe(store, settings, "binh@example.org", "tin-sang", confirmed=True)
    store.mark_bounced(other.subscription.id or 0, status="complained", source="bounce")
    assert store.suppression(lib.address_hash("Binh@example.org")) == "complained"
    with pytest.raises(InputError, match="binh@example.org is suppressed \\(complained\\)"):
        lib.subscribe(store, settings, "binh@example.org", "weekly-tech", confirmed=True)


# -- tokens ---------------------------------------------------------------------------


def test_tokens_are_bound_to_purpose_subscriber_and_address(
    store: Store, settings: Settings, tin_sang: NewsList
) -> None:
    a = lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    b = lib.subscribe(store, settings, "binh@example.org", "tin-sang", confirmed=True)
    aid, bid, lid = a.subscriber.id or 0, b.subscriber.id or 0, tin_sang.id or 0
    token = lib.make_token(settings, "unsubscribe", aid, lid, "an@example.org")
    assert lib.read_token(settings, token, "unsubscribe") == (aid, lid)

    with pytest.raises(TokenError, match="not valid"):  # wrong purpose
        lib.read_token(settings, token, "preferences")
    # altered by one character (not the last: its low bits are base64 padding that decode the same)
    altered = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    with pytest.raises(TokenError, match="not valid"):
        lib.read_token(settings, altered, "unsubscribe")
    other_key = settings.with_(secret_key=Secret("another-secret-key"))
    with pytest.raises(TokenError, match="not valid"):  # signed elsewhere
        lib.read_token(other_key, token, "unsubscribe")

    # a payload for b signed with a's address hash: acts on nobody
    forged = URLSafeTimedSerializer(settings.require_secret(), salt="syndicate.unsubscribe").dumps(
        [bid, lid, hashlib.sha256(b"an@example.org").hexdigest()[:16]]
    )
    with pytest.raises(TokenError, match="no longer applies"):
        lib.unsubscribe_by_token(store, settings, forged)
    assert store.get_subscription(bid, lid).status == "active"
    assert store.get_subscription(aid, lid).status == "active"

    lib.unsubscribe_by_token(store, settings, token)
    assert store.get_subscription(aid, lid).status == "unsubscribed"
    assert store.get_subscription(bid, lid).status == "active"


def test_confirm_tokens_expire_unsubscribe_tokens_do_not(store: Store, settings: Settings, tin_sang: NewsList) -> None:
    r = lib.subscribe(store, settings, "an@example.org", "tin-sang")
    sid, lid = r.subscriber.id or 0, tin_sang.id or 0
    eight_days_ago = int(time.time()) - 8 * 86400

    class OldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return eight_days_ago

    def old_token(purpose: str) -> str:
        return URLSafeTimedSerializer(settings.require_secret(), salt=f"syndicate.{purpose}", signer=OldSigner).dumps(
            [sid, lid]
        )

    with pytest.raises(TokenError, match="has expired"):
        lib.confirm(store, settings, old_token("confirm"))
    assert store.get_subscription(sid, lid).status == "pending"
    longer = settings.with_(mail_pending_max_age_days=10)
    assert lib.confirm(store, longer, old_token("confirm")).subscription.status == "active"
    assert lib.unsubscribe_by_token(store, settings, old_token("unsubscribe")).subscription.status == "unsubscribed"


def test_missing_secret_is_a_config_error(settings: Settings) -> None:
    from syndicate.errors import ConfigError

    with pytest.raises(ConfigError, match="no secret_key"):
        lib.make_token(settings.with_(secret_key=Secret("")), "confirm", 1, 1)


def test_urls(settings: Settings) -> None:
    url = lib.preferences_url(settings, 3, 4, "an@example.org")
    assert url.startswith("https://news.example.org/preferences/")
    assert lib.read_token(settings, url.rsplit("/", 1)[1], "preferences") == (3, 4)
    assert lib.confirm_url(settings, 3, 4).startswith("https://news.example.org/confirm/")


# -- preferences ----------------------------------------------------------------------


def test_preferences_change_schedule_and_topics(store: Store, settings: Settings, weekly: NewsList) -> None:
    r = lib.subscribe(store, settings, "emma@example.org", "weekly-tech", confirmed=True)
    token = lib.make_token(settings, "preferences", r.subscriber.id or 0, weekly.id or 0, "emma@example.org")
    out = lib.update_preferences(store, settings, token, cadence="daily", send_hour=18, timezone="Europe/Berlin",
                                 categories=["khoi-nghiep"])
    again = store.get_subscription(r.subscriber.id or 0, weekly.id or 0)
    assert (again.cadence, again.send_hour, again.categories) == ("daily", 18, ["khoi-nghiep"])
    assert store.get_subscriber("emma@example.org").timezone == "Europe/Berlin"
    assert out.subscription.id == again.id
    assert store.events_for(r.subscriber.id or 0)[-1].kind == "preferences"
    with pytest.raises(InputError, match="send hour 24"):
        lib.update_preferences(store, settings, token, send_hour=24)
    with pytest.raises(TokenError):
        lib.update_preferences(store, settings, token.replace(token[10], "x" if token[10] != "x" else "y"), cadence="daily")


# -- erasure and purge ------------------------------------------------------------------


def test_erase_keeps_only_a_hash(store: Store, settings: Settings, tin_sang: NewsList, weekly: NewsList) -> None:
    r = lib.subscribe(store, settings, "an@example.org", "tin-sang", name="Nguyễn Văn An", confirmed=True,
                      actor="admin")
    lib.subscribe(store, settings, "an@example.org", "weekly-tech", confirmed=True, actor="admin")
    keep = lib.subscribe(store, settings, "binh@example.org", "tin-sang", confirmed=True)
    sid = r.subscriber.id or 0
    token = lib.make_token(settings, "unsubscribe", sid, tin_sang.id or 0, "an@example.org")
    from syndicate.store.outbox import PlannedDelivery

    now = utcnow()
    store.plan_deliveries([PlannedDelivery(list_id=tin_sang.id or 0, subscriber_id=sid,
                                           subscription_id=r.subscription.id or 0, period="2026-11-25",
                                           window_start=now - timedelta(days=1), window_end=now, categories=())])
    assert len(store.deliveries_for(r.subscription.id or 0)) == 1

    assert lib.erase(store, settings, "AN@example.org ", actor="admin").subscriptions == 2
    with pytest.raises(NotFound):
        store.get_subscriber("an@example.org")
    assert store.subscriptions_of(sid) == [] and store.events_for(sid) == []
    assert store.deliveries_for(r.subscription.id or 0) == []
    dump = "\n".join(store.conn.iterdump())
    assert "an@example.org" not in dump.lower() and "Nguyễn Văn An" not in dump
    assert hashlib.sha256(b"an@example.org").hexdigest() in dump
    assert store.suppression(lib.address_hash("an@example.org")) == "erased"
    # a link from an old email fails cleanly
    with pytest.raises(TokenError, match="no longer applies"):
        lib.unsubscribe_by_token(store, settings, token)
    # the other subscriber is untouched; a new subscriber never reuses the id
    assert store.get_subscriber("binh@example.org").id == keep.subscriber.id
    with pytest.raises(InputError, match="suppressed \\(erased\\)"):
        lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    fresh = lib.subscribe(store, settings, "chi@example.org", "tin-sang")
    assert (fresh.subscriber.id or 0) > sid
    # they may come back through the web form: their confirmation is the consent
    again = lib.subscribe(store, settings, "an@example.org", "tin-sang", source="web")
    assert again.subscription.status == "pending" and again.subscriber.id != sid
    assert store.suppression(lib.address_hash("an@example.org")) == "erased"  # until they confirm
    lib.confirm(store, settings, lib.make_token(settings, "confirm", again.subscriber.id or 0, tin_sang.id or 0))
    assert store.suppression(lib.address_hash("an@example.org")) is None
    assert store.events_for(again.subscriber.id or 0)[-1].detail == "suppression lifted"


def test_web_form_cannot_revive_bounced_or_complaining_addresses(
    store: Store, settings: Settings, tin_sang: NewsList
) -> None:
    r = lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    store.mark_bounced(r.subscription.id or 0, status="complained", suppress=False)
    with pytest.raises(InputError, match="is complained from tin-sang"):
        lib.subscribe(store, settings, "an@example.org", "tin-sang", source="web")
    store.add_suppression(lib.address_hash("x@example.org"), "bounced")
    with pytest.raises(InputError, match="suppressed \\(bounced\\)"):
        lib.subscribe(store, settings, "x@example.org", "tin-sang", source="web")
    assert store.find_subscriber("x@example.org") is None
    # someone who merely unsubscribed may ask again, and stays pending until they confirm
    lib.subscribe(store, settings, "u@example.org", "tin-sang", confirmed=True)
    lib.unsubscribe_address(store, settings, "u@example.org", "tin-sang", source="web")
    back = lib.subscribe(store, settings, "u@example.org", "tin-sang", source="web")
    assert (back.subscription.status, back.needs_confirmation) == ("pending", True)


def test_purge_pending(store: Store, settings: Settings, tin_sang: NewsList) -> None:
    old = lib.subscribe(store, settings, "old@example.org", "tin-sang", now=utcnow() - timedelta(days=9))
    new = lib.subscribe(store, settings, "new@example.org", "tin-sang")
    lib.subscribe(store, settings, "on@example.org", "tin-sang", confirmed=True, now=utcnow() - timedelta(days=30))
    assert lib.purge_pending(store, settings) == 1
    assert store.find_subscription(old.subscriber.id or 0, tin_sang.id or 0) is None
    assert store.find_subscription(new.subscriber.id or 0, tin_sang.id or 0) is not None
    assert store.events_for(old.subscriber.id or 0)[-1].kind == "purge"
    assert lib.purge_pending(store, settings, older_than_days=0, now=utcnow() + timedelta(seconds=5)) == 1


def test_stats_count_statuses_and_growth(store: Store, settings: Settings, tin_sang: NewsList) -> None:
    for i in range(4):
        lib.subscribe(store, settings, f"u{i}@example.org", "tin-sang", confirmed=True)
    lib.subscribe(store, settings, "p@example.org", "tin-sang")
    lib.subscribe(store, settings, "gone@example.org", "tin-sang", confirmed=True, now=utcnow() - timedelta(days=60))
    lib.unsubscribe_address(store, settings, "u0@example.org", "tin-sang", source="cli")
    (row,) = lib.stats(store)
    assert (row.active, row.pending, row.unsubscribed, row.joined, row.left, row.growth) == (4, 1, 1, 4, 1, 3)


# -- CLI --------------------------------------------------------------------------------


def test_cli_confirm_link_is_the_one_the_email_holds(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """The link `subscriber add` prints is the one in the email, even when the clock ticks between the two
    (each used to be signed with its own timestamp: the suite saw them differ when a second turned)."""
    assert cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng"]).exit_code == 0
    clock = iter(range(1_800_000_000, 1_800_100_000, 7))  # every reading of the token clock is 7 s later
    monkeypatch.setattr(lib.time, "time", lambda: float(next(clock)))
    added = cli.invoke(main, ["subscriber", "add", "lan@example.org", "--list", "tin-sang"])
    assert added.exit_code == 0, added.output
    link = added.output.split("confirm link: ")[1].strip()
    (mail,) = (Path("maildir") / "new").iterdir()
    msg = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert link in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_cli_add_show_unsubscribe_erase(cli: CliRunner) -> None:
    assert cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng"]).exit_code == 0
    added = cli.invoke(main, ["subscriber", "add", " Lan@Example.org", "--list", "tin-sang", "--name", "Lan"])
    assert added.exit_code == 0, added.output
    assert "added Lan@example.org on tin-sang: pending" in added.output
    assert "confirm link: http://127.0.0.1:8080/confirm/" in added.output
    assert "confirmation email sent via maildir (<confirm.tin-sang." in added.output
    (mail,) = (Path("maildir") / "new").iterdir()  # the cli fixture works in tmp_path; no SMTP host: Maildir
    msg = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "Lan@example.org"
    link = added.output.split("confirm link: ")[1].strip()
    assert link in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    quiet = cli.invoke(main, ["subscriber", "add", "kim@example.org", "--list", "tin-sang", "--no-email"])
    assert "confirmation email sent" not in quiet.output and len(list((Path("maildir") / "new").iterdir())) == 1

    bad = cli.invoke(main, ["subscriber", "add", "bob@", "--list", "tin-sang"])
    assert bad.exit_code == 65
    assert bad.stderr == "error: 'bob@' is not an email address: there must be something after the @-sign\n"

    cli.invoke(main, ["subscriber", "unsubscribe", "lan@example.org"])
    shown = cli.invoke(main, ["subscriber", "show", "lan@example.org", "--json"])
    data = json.loads(shown.output)
    assert data["subscriber"]["email"] == "Lan@example.org"
    assert [s["status"] for s in data["subscriptions"]] == ["unsubscribed"]
    assert [(e["kind"], e["source"]) for e in data["events"]] == [("subscribe", "cli"), ("unsubscribe", "cli")]
    text = cli.invoke(main, ["subscriber", "show", "lan@example.org"]).output
    assert "history:" in text and "unsubscribe" in text

    refused = cli.invoke(main, ["subscriber", "add", "lan@example.org", "--list", "tin-sang", "--confirmed"])
    assert refused.exit_code == 65 and "--resubscribe" in refused.stderr
    back = cli.invoke(main, ["subscriber", "resubscribe", "lan@example.org", "--list", "tin-sang"])
    assert back.output == "Lan@example.org is active on tin-sang\n"

    erased = cli.invoke(main, ["subscriber", "erase", "lan@example.org", "--yes"])
    assert erased.exit_code == 0, erased.output
    gone = cli.invoke(main, ["subscriber", "show", "lan@example.org"])
    assert gone.stderr == "error: no subscriber 'lan@example.org' (see `syndicate subscriber ls`)\n"
    stats = json.loads(cli.invoke(main, ["stats", "--json"]).output)
    assert stats[0]["slug"] == "tin-sang" and stats[0]["active"] == 0


def test_cli_ls_and_purge(cli: CliRunner) -> None:
    cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng"])
    for addr in ("a@example.org", "b@example.org"):
        cli.invoke(main, ["subscriber", "add", addr, "--list", "tin-sang", "--confirmed"])
    cli.invoke(main, ["subscriber", "add", "c@example.org", "--list", "tin-sang"])
    rows = json.loads(cli.invoke(main, ["subscriber", "ls", "--status", "active", "--json"]).output)["rows"]
    assert [r["email"] for r in rows] == ["a@example.org", "b@example.org"]
    assert len(cli.invoke(main, ["subscriber", "ls", "--limit", "1"]).stdout.splitlines()) == 1
    purged = cli.invoke(main, ["subscriber", "purge-pending", "--older-than", "0"])
    assert purged.exit_code == 0 and "purged" in purged.output


def test_cli_ls_says_how_many_more_rows_exist_beyond_its_limit(cli: CliRunner) -> None:
    cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng"])
    cli.invoke(main, ["list", "create", "tin-toi", "--name", "Tin tối"])
    for i in range(5):
        cli.invoke(main, ["subscriber", "add", f"s{i}@example.org", "--list", "tin-sang", "--confirmed"])
    cli.invoke(main, ["subscriber", "add", "s0@example.org", "--list", "tin-toi"])  # a second row for s0
    cli.invoke(main, ["subscriber", "add", "s9@example.org", "--list", "tin-toi"])
    cli.invoke(main, ["subscriber", "unsubscribe", "s9@example.org", "--list", "tin-toi"])
    short = cli.invoke(main, ["subscriber", "ls", "--limit", "2"])
    assert short.exit_code == 0 and len(short.stdout.splitlines()) == 2
    assert short.stderr == "… and 5 more; use --limit N (0 = all) or --json\n"
    every = cli.invoke(main, ["subscriber", "ls", "--limit", "0"])
    assert len(every.stdout.splitlines()) == 7 and every.stderr == ""
    active = cli.invoke(main, ["subscriber", "ls", "--list", "tin-sang", "--status", "active", "--limit", "4"])
    assert active.stderr == "… and 1 more; use --limit N (0 = all) or --json\n"
    doc = json.loads(cli.invoke(main, ["subscriber", "ls", "--limit", "3", "--json"]).stdout)
    assert doc["total"] == 7 and len(doc["rows"]) == 3
    pending = json.loads(cli.invoke(main, ["subscriber", "ls", "--status", "pending", "--json"]).stdout)
    assert pending["total"] == 1 and [r["email"] for r in pending["rows"]] == ["s0@example.org"]


# -- issue 10: erasure leaves no traces the store can reach -------------------------------------


def test_erase_overwrites_the_bytes_and_empties_the_wal(settings: Settings, tmp_path: Path) -> None:
    """The raw database and WAL files no longer hold the address; what is out of reach is named."""
    from syndicate.mailer import MaildirTransport
    from syndicate.store import open_store

    db = tmp_path / "erase.db"
    store = open_store(db)
    lib.create_list(store, NewsList(slug="tin-sang", name="Tin sáng"))
    for i in range(50):
        lib.subscribe(store, settings, f"someone{i}@example.org", "tin-sang", name=f"Người {i}", confirmed=True)
    lib.subscribe(store, settings, "secret.person@example.org", "tin-sang", name="Bí Mật", confirmed=True,
                  ip="203.0.113.9", user_agent="Firefox/140")
    box = tmp_path / "maildir"
    MaildirTransport(box).write("", b"To: secret.person@example.org\r\nSubject: x\r\n\r\nhello\r\n")
    rep = lib.erase(store, settings.with_(mail_maildir=str(box)), "Secret.Person@example.org")
    assert (rep.subscriptions, rep.wal_emptied) == (1, True)
    assert len(rep.unreachable) == 1 and rep.unreachable[0].startswith(
        f"1 message(s) in the Maildir {box} still carry the address (delete them there): {box}/new/")
    raw = db.read_bytes() + (db.with_name(db.name + "-wal").read_bytes() if db.with_name(db.name + "-wal").exists()
                             else b"")
    assert b"secret.person" not in raw.lower() and "Bí Mật".encode() not in raw and b"203.0.113.9" not in raw
    assert b"someone49@example.org" in raw  # the others are still there, so the check can see addresses
    store.close()


# -- issue 10: proof of consent ---------------------------------------------------------------------


def test_consent_record_keeps_how_and_when_asked_and_confirmed(
    store: Store, settings: Settings, tin_sang: NewsList, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    asked = datetime(2026, 11, 20, 8, tzinfo=UTC)
    r = lib.subscribe(store, settings, "lan@example.org", "tin-sang", source="web", actor="198.51.100.4",
                      ip="198.51.100.4", user_agent="Mozilla/5.0 (Android 14)", now=asked)
    rec = store.consent_for(r.subscription.id or 0)
    assert rec is not None
    assert (rec.asked_at, rec.asked_via, rec.asked_source, rec.asked_ip, rec.asked_user_agent) == (
        asked, "form", "web", "198.51.100.4", "Mozilla/5.0 (Android 14)")
    assert rec.wording == lib.wording_version(tin_sang) and rec.confirmed_at is None
    store.set_confirmation_message_id(r.subscription.id or 0, "<confirm.tin-sang.1@news.example.org>")
    token = lib.make_token(settings, "confirm", r.subscriber.id or 0, tin_sang.id or 0, "lan@example.org")
    lib.confirm(store, settings, token, ip="198.51.100.77", user_agent="Thunderbird/140",
                now=datetime(2026, 11, 20, 9, tzinfo=UTC))
    rec = store.consent_for(r.subscription.id or 0)
    assert rec is not None
    assert (rec.confirmed_at, rec.confirmed_via, rec.confirmed_ip, rec.confirmed_user_agent) == (
        datetime(2026, 11, 20, 9, tzinfo=UTC), "link", "198.51.100.77", "Thunderbird/140")
    assert rec.confirmation_message_id == "<confirm.tin-sang.1@news.example.org>"
    admin = lib.subscribe(store, settings, "kim@example.org", "tin-sang", confirmed=True, actor="root")
    rec = store.consent_for(admin.subscription.id or 0)
    assert rec is not None and (rec.asked_via, rec.asked_source, rec.confirmed_via) == ("admin", "cli", "admin")
    path = tmp_path / "in.csv"
    path.write_text("email,status,confirmed\nminh@example.org,active,2024-05-01T07:00:00Z\n", encoding="utf-8")
    lib.import_csv(store, settings, path, "tin-sang")
    minh = store.get_subscriber("minh@example.org")
    rec = store.consent_for(store.subscriptions_of(minh.id or 0)[0].id or 0)
    assert rec is not None
    assert (rec.asked_via, rec.asked_source, rec.confirmed_via, rec.confirmed_at) == (
        "import", "import:in.csv", "import", datetime(2024, 5, 1, 7, tzinfo=UTC))
    with pytest.raises(NotFound, match="no subscription with id 999"):
        store.set_confirmation_message_id(999, "<x@y>")


def test_the_web_form_records_ip_and_user_agent(settings: Settings, store: Store, tin_sang: NewsList) -> None:
    from test_pages import make_client  # tests/ is on sys.path (rootdir conftest)

    client = make_client(settings)
    r = client.post("/subscribe", data={"email": "web@example.org", "list": "tin-sang"},
                    headers={"user-agent": "Mozilla/5.0 (X11; Linux) Firefox/140.0"})
    assert r.status_code == 200
    who = store.get_subscriber("web@example.org")
    sub = store.subscriptions_of(who.id or 0)[0]
    rec = store.consent_for(sub.id or 0)
    assert rec is not None
    assert (rec.asked_via, rec.asked_ip, rec.asked_user_agent) == (
        "form", "203.0.113.7", "Mozilla/5.0 (X11; Linux) Firefox/140.0")
    token = lib.make_token(settings, "confirm", who.id or 0, tin_sang.id or 0, who.email)
    # GET today; a later change confirms only by POST: whichever confirms, it must record the browser
    for method in ("GET", "POST"):
        client.request(method, f"/confirm/{token}", headers={"user-agent": "Scanner-Proof/1.0"},
                       data={"csrf": ""} if method == "POST" else None)
        if store.get_subscription_by_id(sub.id or 0).status == "active":
            break
    rec = store.consent_for(sub.id or 0)
    assert rec is not None and (rec.confirmed_via, rec.confirmed_ip, rec.confirmed_user_agent) == (
        "link", "203.0.113.7", "Scanner-Proof/1.0")


def test_cli_show_and_consent_export_for_an_auditor(cli: CliRunner, tmp_path: Path) -> None:
    from syndicate.config import load_settings
    from syndicate.store import open_store

    cli.invoke(main, ["list", "create", "tin-sang", "--name", "Tin sáng"])
    settings = load_settings(db=str(tmp_path / "syndicate.db"))
    with open_store(settings.db) as s:
        lib.subscribe(s, settings, "lan@example.org", "tin-sang", source="web", ip="198.51.100.4",  # type: ignore[arg-type]
                      user_agent="=cmd|' /C calc'!A0")
    added = cli.invoke(main, ["subscriber", "add", "kim@example.org", "--list", "tin-sang"])
    assert added.exit_code == 0, added.output
    shown = cli.invoke(main, ["subscriber", "show", "lan@example.org"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    i = lines.index("consent:")
    assert lines[i + 1].startswith("  tin-sang             asked ")
    assert "via form (web) from 198.51.100.4, \"=cmd|' /C calc'!A0\", wording tin-sang:" in lines[i + 1]
    assert lines[i + 2] == "                       not confirmed yet"
    data = json.loads(cli.invoke(main, ["subscriber", "show", "kim@example.org", "--json"]).output)
    [record] = data["consent"]
    assert record["asked_via"] == "admin" and record["confirmation_message_id"].startswith("<confirm.tin-sang.")

    csv_out = cli.invoke(main, ["subscriber", "consent", "--list", "tin-sang"])
    assert csv_out.exit_code == 0, csv_out.output
    rows = list(__import__("csv").reader(csv_out.stdout.splitlines()))
    assert rows[0][:4] == ["email", "list", "status", "asked_at"]
    assert [r[0] for r in rows[1:]] == ["lan@example.org", "kim@example.org"]
    assert rows[1][rows[0].index("asked_user_agent")] == "'=cmd|' /C calc'!A0"  # no formula for the auditor's sheet
    jsonl = cli.invoke(main, ["subscriber", "consent", "--list", "tin-sang", "--format", "jsonl"])
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert records[0]["asked_user_agent"] == "=cmd|' /C calc'!A0" and records[1]["email"] == "kim@example.org"
    assert records[0]["asked_ip"] == "198.51.100.4" and records[0]["confirmed_at"] is None
    missing = cli.invoke(main, ["subscriber", "consent", "--list", "nope"])
    assert missing.exit_code != 0 and "no list with slug 'nope'" in missing.stderr


def test_resubscribe_of_a_pending_suppressed_address_lifts_the_suppression_first(
    store: Store, settings: Settings, tin_sang: NewsList
) -> None:
    """Found by tests/test_consent_state.py: a pending row, then a suppression, then an admin's resubscribe."""
    lib.subscribe(store, settings, "an@example.org", "tin-sang", source="web")
    store.add_suppression(lib.address_hash("an@example.org"), "bounced")
    r = lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True, resubscribe=True)
    assert r.subscription.status == "active"
    assert store.suppression(lib.address_hash("an@example.org")) is None
    assert store.events_for(r.subscriber.id or 0)[-1].detail == "by admin, suppression lifted (was bounced)"


def test_upgrading_an_old_store_backfills_hashes_and_consent_and_stops_suppressed_actives(tmp_path: Path) -> None:
    """A database made before m002_consent_records: the migration fills in what the new rule needs."""
    import sqlite3

    from syndicate.store import migrations as store_migrations
    from syndicate.store import open_store
    from syndicate.store.outbox import migrations as outbox
    from syndicate.store.subscribers import migrations as subscriber_migrations

    path = tmp_path / "old.db"
    old = open_store(path, migrate=False)
    store_migrations.articles.apply(old.db)
    subscriber_migrations.apply(old.db, stop_before="m002_consent_records")
    outbox.apply(old.db)
    with old.transaction() as conn:
        conn.execute("INSERT INTO lists (slug, name, created) VALUES ('tin', 'Tin', '2026-01-01T00:00:00+00:00')")
        for i, email in enumerate(["an@example.org", "Gone@example.org"], 1):
            conn.execute("INSERT INTO subscribers (email, created) VALUES (?, '2026-01-01T00:00:00+00:00')", [email])
            conn.execute("INSERT INTO subscriptions (subscriber_id, list_id, status, created, confirmed) "
                         "VALUES (?, 1, 'active', '2026-01-02T00:00:00+00:00', '2026-01-03T00:00:00+00:00')", [i])
        conn.execute("INSERT INTO suppressions VALUES (?, 'bounced', '2026-02-01T00:00:00+00:00')",
                     [lib.address_hash("gone@example.org")])
    old.close()

    store = open_store(path)
    try:
        assert [(p.email, s.status) for p, s, _ in store.iter_subscriptions()] == [
            ("an@example.org", "active"), ("Gone@example.org", "bounced")]
        gone = store.get_subscriber("Gone@example.org")
        assert store.events_for(gone.id or 0)[-1].detail == (
            "address was suppressed (bounced) but active; stopped when upgrading")
        rec = store.consent_for(1)
        assert rec is not None and rec.asked_via == "unknown (before consent records)"
        assert rec.confirmed_at is not None and rec.confirmed_at.isoformat() == "2026-01-03T00:00:00+00:00"
        with pytest.raises(sqlite3.IntegrityError, match="suppressed address"):
            store.conn.execute("UPDATE subscriptions SET status = 'active' WHERE id = 2")
    finally:
        store.close()


def test_erase_names_digests_already_with_the_relay(store: Store, settings: Settings, tin_sang: NewsList) -> None:
    from syndicate.store.outbox import PlannedDelivery

    r = lib.subscribe(store, settings, "an@example.org", "tin-sang", confirmed=True)
    now = utcnow()
    for p in ("2026-11-24", "2026-11-25"):  # two digests sent, one after the other
        store.plan_deliveries([PlannedDelivery(tin_sang.id or 0, r.subscriber.id or 0, r.subscription.id or 0, p,
                                               now - timedelta(days=1), now, ())])
        claimed = store.claim_deliveries("run1", now, now + timedelta(minutes=5), 10)
        store.mark_sent("run1", [(d.id, f"<d{d.id}@news.example.org>") for d in claimed], now)
    rep = lib.erase(store, settings.with_(smtp_host="smtp.example.net"), "an@example.org")
    assert (rep.subscriptions, rep.sent_messages) == (1, 2)
    assert rep.unreachable == ["2 digest(s) already handed to the relay smtp.example.net; the relay's logs and "
                               "the recipient's mailbox keep their copies"]


def test_consent_export_names_subscriptions_without_a_record(store: Store, settings: Settings,
                                                            tin_sang: NewsList) -> None:
    import io

    from syndicate.models import Subscriber, Subscription
    from syndicate.subscriber_csv import export_consent

    lib.subscribe(store, settings, "an@example.org", "tin-sang", source="web", ip="192.0.2.1")
    bare = store.add_subscriber(Subscriber(email="bare@example.org"))
    store.save_subscription(Subscription(subscriber_id=bare.id or 0, list_id=tin_sang.id or 0))  # no consent path
    out = io.StringIO()
    assert export_consent(store, out, "tin-sang", fmt="jsonl") == 2
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["email"], r["asked_via"], r["asked_ip"]) for r in rows] == [
        ("an@example.org", "form", "192.0.2.1"), ("bare@example.org", "unknown (no record)", "")]
    with pytest.raises(InputError, match="format 'xml' is not one of csv, jsonl"):
        export_consent(store, out, "tin-sang", fmt="xml")


@hsettings(max_examples=int(os.environ.get("SYNDICATE_EXAMPLES", "200")), deadline=None)
@given(purpose=st.sampled_from(sorted(lib.PURPOSES)), sid=st.integers(0, 2**53), lid=st.integers(0, 2**31),
       email=st.sampled_from(["", "an@example.org", "Ngô.Lan@Example.ORG"]) | st.emails(),
       stamp=st.integers(1, 2**40), secret=st.text(min_size=1, max_size=40))
@example(purpose="confirm", sid=1111111111111111, lid=1111111111, email="", stamp=1, secret="k")  # compressed
def test_tokens_are_byte_for_byte_what_itsdangerous_makes(purpose: str, sid: int, lid: int, email: str, stamp: int,
                                                          secret: str) -> None:
    """make_token signs with a key derived once; its bytes must stay those of URLSafeTimedSerializer.dumps."""

    class At(TimestampSigner):
        def get_timestamp(self) -> int:
            return stamp

    s = Settings(secret_key=Secret(secret))
    payload: list[object] = [sid, lid] + ([lib.address_hash(email)[:16]] if email else [])
    expected = URLSafeTimedSerializer(secret, salt=f"syndicate.{purpose}", signer=At).dumps(payload)
    assert lib.make_token(s, purpose, sid, lid, email, now=stamp) == expected
