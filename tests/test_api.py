"""The admin HTTP API in-process (Starlette's TestClient runs the whole app with its lifespan) on a real store.

Confirmation emails go through the real Maildir transport (no SMTP host), so
each test reads what the person would receive. Over uvicorn and aiosmtpd:
tests/e2e/test_api_live.py.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Mount

from syndicate import subscribers
from syndicate.api.auth import RateLimit, create_token
from syndicate.api.spec import PREFIX, doc_path, next_cursor
from syndicate.config import Settings
from syndicate.models import NewsList, utcnow
from syndicate.sender.notices import notice_journal_dir
from syndicate.store import Store, open_store
from syndicate.web import create_app

API = "http://testserver" + PREFIX


class Client:
    """The whole app, its lifespan included, on an event loop in a thread of its own (httpx's ASGI transport)."""

    def __init__(self, app: Starlette, portal: BlockingPortal) -> None:
        self.app = app
        self.portal = portal
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(lambda: self.http.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)


@contextmanager
def serving(settings: Settings) -> Iterator[Client]:
    app = create_app(settings)
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(app.router.lifespan_context(app)):
        client = Client(app, portal)
        try:
            yield client
        finally:
            portal.call(client.http.aclose)


class Api:
    """A client with helpers: ``call(method, path, token, json=...)``; ``wait_mail()`` waits for the sender."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return self.client.request(method, API + path, headers=headers, **kwargs)

    def wait_mail(self) -> None:
        assert self.client.app.state.api.mail.wait_idle(60)

    def inbox(self) -> list[email.message.EmailMessage]:
        self.wait_mail()
        box = mailbox.Maildir(self.settings.mail_maildir, create=True)
        out = [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.iterkeys()]
        return out  # type: ignore[return-value]


@pytest.fixture
def site(settings: Settings, store: Store) -> Settings:
    subscribers.create_list(store, NewsList(slug="tin-sang", name="Tin sáng", categories=["kinh-te", "the-gioi"]))
    return settings


@pytest.fixture
def api(site: Settings) -> Iterator[Api]:
    with serving(site) as client:
        yield Api(client, site)


@pytest.fixture
def tokens(store: Store) -> dict[str, str]:
    return {scope: create_token(store, f"{scope}-token", scope)[1] for scope in ("read", "write", "admin")}


def error(field: str | None, message: str) -> dict[str, Any]:
    return {"error": {"field": field, "message": message}}


# -- off, auth, scopes ----------------------------------------------------------------


def test_the_api_is_off_until_a_token_exists_and_off_again_when_all_are_revoked(api: Api, store: Store) -> None:
    off = "no such endpoint: the API is off until an admin makes a token (`syndicate token create`)"
    for path in ("/lists", "/openapi.json", "/nothing-here"):
        r = api.call("GET", path, None)
        assert (r.status_code, r.json()) == (404, error(None, off))
    _, secret = create_token(store, "cms", "read")
    assert api.call("GET", "/lists", secret).status_code == 200
    store.revoke_token("cms")
    assert api.call("GET", "/lists", secret).status_code == 404


def test_no_token_or_a_wrong_one_is_401_with_a_bearer_challenge(api: Api, tokens: dict[str, str], store: Store) -> None:
    r = api.call("GET", "/lists", None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="syndicate"'
    assert r.json() == error(None, "this endpoint needs a token: send 'Authorization: Bearer <token>' "
                                   "(make one with `syndicate token create`)")
    good = tokens["read"]
    for bad in (good[:-1] + ("A" if good[-1] != "A" else "B"), "syn_00000000_" + "x" * 43, "hello"):
        r = api.call("GET", "/lists", bad)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer realm="syndicate", error="invalid_token"'
        assert r.json() == error(None, "this token is not valid (revoked, mistyped, or never made here)")
    r = api.call("GET", "/lists", None, headers={"authorization": f"Basic {good}"})
    assert (r.status_code, r.json()["error"]["message"]) == (401, "the Authorization header must be 'Bearer <token>'")
    store.revoke_token("read-token")
    assert api.call("GET", "/lists", good).status_code == 401
    assert api.call("GET", "/lists", tokens["write"]).status_code == 200


def test_scopes_read_below_write_below_admin(api: Api, tokens: dict[str, str]) -> None:
    body = {"email": "lan@example.org", "list": "tin-sang"}
    r = api.call("POST", "/subscribers", tokens["read"], json=body)
    assert (r.status_code, r.json()) == (403, error(
        None, "POST /api/v1/subscribers needs a token with scope write; token 'read-token' has scope read"))
    r = api.call("POST", "/subscribers", tokens["write"], json={**body, "confirmed": True})
    assert (r.status_code, r.json()) == (403, error(
        None, 'asserting consent ("confirmed": true) needs a token with scope admin; token \'write-token\' has scope write'))
    assert api.call("DELETE", "/subscribers/1", tokens["write"]).status_code == 403
    assert api.call("POST", "/subscribers", tokens["admin"], json=body).status_code == 201
    assert api.call("GET", "/subscribers/lan@example.org", tokens["read"]).status_code == 200


def test_the_store_keeps_only_a_hash_of_each_token(api: Api, tokens: dict[str, str], settings: Settings, store: Store) -> None:
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = Path(settings.db).read_bytes()
    for secret in tokens.values():
        assert secret.encode() not in raw
        assert secret.split("_")[1].encode() in raw  # the public id is stored


# -- subscribers ------------------------------------------------------------------------


def test_a_created_subscriber_is_pending_and_gets_one_confirmation_email(api: Api, tokens: dict[str, str],
                                                                        store: Store) -> None:
    r = api.call("POST", "/subscribers", tokens["write"],
                 json={"email": "Lan@Example.ORG", "list": "tin-sang", "name": "Lan", "categories": ["kinh-te"]})
    assert r.status_code == 201
    body = r.json()
    assert body["subscriber"]["email"] == "Lan@example.org"
    sub_json = body["subscription"]
    assert (sub_json["list"], sub_json["status"], sub_json["categories"]) == ("tin-sang", "pending", ["kinh-te"])
    assert (body["created"], body["email"]) == (True, "queued")
    [mail] = api.inbox()
    assert mail["To"].addresses[0].addr_spec == "Lan@example.org"
    assert "/confirm/" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    sub = store.subscriptions_of(body["subscriber"]["id"])[0]
    assert sub.id is not None
    consent = store.consent_for(sub.id)
    assert consent is not None and (consent.asked_via, consent.asked_source) == ("admin", "api")
    assert consent.confirmation_message_id == mail["Message-ID"]
    again = api.call("POST", "/subscribers", tokens["write"], json={"email": "lan@example.org", "list": "tin-sang"})
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["email"].startswith("not queued: ")
    assert len(api.inbox()) == 1


def test_a_burst_of_creates_gets_one_confirmation_each_with_its_message_id_recorded(
        api: Api, tokens: dict[str, str], store: Store) -> None:
    """Creates arriving together are sent in batches by the API's one sender (one loop, one transport):
    exactly one Maildir file per person, each Message-ID kept as the proof of consent, no journal left."""
    headers = {"authorization": f"Bearer {tokens['write']}"}

    async def burst(start: int, count: int) -> list[int]:
        replies = await asyncio.gather(*(
            api.client.http.post(API + "/subscribers", headers=headers,
                                 json={"email": f"p{n}@example.org", "list": "tin-sang", "name": f"Người {n}"})
            for n in range(start, start + count)))
        return [r.status_code for r in replies]

    assert api.client.portal.call(burst, 0, 40) == [201] * 40
    api.wait_mail()
    assert api.client.portal.call(burst, 40, 5) == [201] * 5  # a second batch, after the first was sent
    mails = api.inbox()
    by_address = {m["To"].addresses[0].addr_spec: m for m in mails}
    assert len(mails) == len(by_address) == 45
    assert sorted(by_address) == sorted(f"p{n}@example.org" for n in range(45))
    for address, mail in by_address.items():
        [sub] = store.subscriptions_of(store.get_subscriber(address).id)  # type: ignore[arg-type]
        assert sub.id is not None
        consent = store.consent_for(sub.id)
        assert consent is not None and consent.confirmation_message_id == mail["Message-ID"]
        [delivery] = store.deliveries_for(sub.id)
        assert (delivery.status, delivery.message_id) == ("sent", mail["Message-ID"])
    assert list(notice_journal_dir(api.settings).glob("*.log")) == []
    assert list((Path(api.settings.mail_maildir) / "tmp").iterdir()) == []


def test_an_admin_token_may_assert_consent(api: Api, tokens: dict[str, str], store: Store) -> None:
    r = api.call("POST", "/subscribers", tokens["admin"],
                 json={"email": "an@example.org", "list": "tin-sang", "confirmed": True})
    assert r.status_code == 201 and r.json()["subscription"]["status"] == "active"
    mails = api.inbox()
    assert all("/confirm/" not in m.get_body(("plain",)).get_content() for m in mails)  # type: ignore[union-attr]
    sub = store.subscriptions_of(r.json()["subscriber"]["id"])[0]
    assert sub.id is not None
    consent = store.consent_for(sub.id)
    assert consent is not None and (consent.asked_source, consent.confirmed_via) == ("api", "admin")


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"email": "bob@", "list": "tin-sang"}, "email",
     "'bob@' is not an email address: there must be something after the @-sign"),
    ({"email": "bob@example.org", "list": "nope"}, "list", "no list with slug 'nope' (see `syndicate list ls`)"),
    ({"list": "tin-sang"}, "email", "'email' is required"),
    ({"email": 7, "list": "tin-sang"}, "email", "'email' should be text, not a whole number"),
    ({"email": "bob@example.org", "list": "tin-sang", "categories": "kinh-te"}, "categories",
     "'categories' should be a list of text, not text"),
    ({"email": "bob@example.org", "list": "tin-sang", "colour": "red"}, "colour",
     "unknown field 'colour'; known fields: email, list, name, timezone, categories, cadence, send_hour, confirmed, "
     "resubscribe"),
    ({"email": "bob@example.org", "list": "tin-sang", "timezone": "Mars/Base"}, "timezone",
     "'Mars/Base' is not an IANA time zone such as 'Asia/Ho_Chi_Minh' or 'Europe/Berlin'"),
    ({"email": "bob@example.org", "list": "tin-sang", "categories": ["the-thao"]}, "categories",
     "list 'tin-sang' does not cover the-thao; choose from kinh-te, the-gioi"),
    ({"email": "bob@example.org", "list": "tin-sang", "cadence": "hourly"}, "cadence",
     "cadence 'hourly' is not one of daily, weekly"),
    ({"email": "bob@example.org", "list": "tin-sang", "send_hour": 24}, "send_hour",
     "send hour 24 is not between 0 and 23"),
])
def test_bad_fields_get_422_naming_the_field_in_the_cli_s_words(api: Api, tokens: dict[str, str], store: Store,
                                                                 body: dict[str, Any], field: str, message: str) -> None:
    r = api.call("POST", "/subscribers", tokens["write"], json=body)
    assert (r.status_code, r.json()) == (422, error(field, message))
    assert store.count_subscribers() == 0  # nothing half-written


def test_a_suppressed_address_is_refused_unless_an_admin_resubscribes(api: Api, tokens: dict[str, str],
                                                                      site: Settings, store: Store) -> None:
    subscribers.subscribe(store, site, "gone@example.org", "tin-sang", confirmed=True)
    subscribers.unsubscribe_address(store, site, "gone@example.org", "tin-sang")
    body = {"email": "gone@example.org", "list": "tin-sang"}
    r = api.call("POST", "/subscribers", tokens["write"], json=body)
    assert (r.status_code, r.json()) == (422, error(
        "email", "gone@example.org is unsubscribed from tin-sang; add --resubscribe only if they asked to come back"))
    r = api.call("POST", "/subscribers", tokens["write"], json={**body, "resubscribe": True})
    assert r.status_code == 403
    r = api.call("POST", "/subscribers", tokens["admin"], json={**body, "resubscribe": True, "confirmed": True})
    assert r.status_code == 201 and r.json()["subscription"]["status"] == "active"


def test_a_refused_create_among_a_burst_is_answered_alone_and_the_others_get_their_emails(
        api: Api, tokens: dict[str, str], site: Settings, store: Store) -> None:
    """Creates arriving together share the writer's transaction: one refused inside the library (after its
    reads) is rolled back alone, its answer is its own 422, and only the accepted ones reach the sender."""
    subscribers.subscribe(store, site, "gone@example.org", "tin-sang", confirmed=True)
    subscribers.unsubscribe_address(store, site, "gone@example.org", "tin-sang")
    assert api.inbox() == []
    headers = {"authorization": f"Bearer {tokens['write']}"}
    bodies = [{"email": f"q{n}@example.org", "list": "tin-sang"} for n in range(8)]
    bodies[3:3] = [{"email": "gone@example.org", "list": "tin-sang"}]

    async def burst() -> list[httpx.Response]:
        return list(await asyncio.gather(*(api.client.http.post(API + "/subscribers", headers=headers, json=b)
                                           for b in bodies)))

    replies = api.client.portal.call(burst)
    assert [r.status_code for r in replies] == [201, 201, 201, 422, 201, 201, 201, 201, 201]
    assert replies[3].json() == error(
        "email", "gone@example.org is unsubscribed from tin-sang; add --resubscribe only if they asked to come back")
    gone = store.get_subscriber("gone@example.org")
    assert gone.id is not None
    assert [s.status for s in store.subscriptions_of(gone.id)] == ["unsubscribed"]
    assert sorted(m["To"].addresses[0].addr_spec for m in api.inbox()) == sorted(f"q{n}@example.org" for n in range(8))


def test_update_unsubscribe_and_erase(api: Api, tokens: dict[str, str], store: Store) -> None:
    w, a = tokens["write"], tokens["admin"]
    sid = api.call("POST", "/subscribers", a, json={"email": "an@example.org", "list": "tin-sang",
                                                    "confirmed": True}).json()["subscriber"]["id"]
    r = api.call("PATCH", f"/subscribers/{sid}", w, json={"list": "tin-sang", "cadence": "weekly", "weekday": 4,
                                                         "categories": ["the-gioi"], "name": "An"})
    assert r.status_code == 200
    assert r.json()["subscriber"]["name"] == "An"
    assert [(s["cadence"], s["weekday"], s["categories"]) for s in r.json()["subscriptions"]] == [
        ("weekly", 4, ["the-gioi"])]
    r = api.call("PATCH", f"/subscribers/{sid}", w, json={"list": "tin-sang", "weekday": 9})
    assert (r.status_code, r.json()) == (422, error("weekday", "weekday 9 is not between 0 (Monday) and 6 (Sunday)"))
    r = api.call("PATCH", f"/subscribers/{sid}", w, json={"weekday": 3})
    assert (r.status_code, r.json()) == (422, error("list", "'weekday' belongs to one subscription: name its 'list' too"))
    r = api.call("PATCH", "/subscribers/an@example.org", w, json={"timezone": "Europe/Berlin"})
    assert r.json()["subscriber"]["timezone"] == "Europe/Berlin"
    r = api.call("POST", f"/subscribers/{sid}/unsubscribe", w)  # no body: every field is optional, so from all lists
    assert r.status_code == 200 and r.json()["subscriptions"][0]["status"] == "unsubscribed"
    r = api.call("DELETE", f"/subscribers/{sid}", a)
    assert r.status_code == 200 and r.json()["erased"] is True
    assert store.count_subscribers() == 0
    r = api.call("GET", f"/subscribers/{sid}", w)
    assert (r.status_code, r.json()) == (404, error(None, f"no subscriber with id {sid} (erased, or never existed)"))


def test_subscribers_come_a_page_at_a_time_and_every_one_exactly_once(api: Api, tokens: dict[str, str],
                                                                       site: Settings, store: Store) -> None:
    emails = [f"p{n}@example.org" for n in range(7)]
    for address in emails:
        subscribers.subscribe(store, site, address, "tin-sang", confirmed=True)
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        r = api.call("GET", "/lists/tin-sang/subscribers", tokens["read"],
                     params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200
        pages += 1
        seen += [s["subscriber"]["email"] for s in r.json()["subscriptions"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (emails, 3)
    r = api.call("GET", "/lists/tin-sang/subscribers", tokens["read"], params={"cursor": "nonsense"})
    assert (r.status_code, r.json()) == (422, error(
        "cursor", "cursor 'nonsense' is not one this API gave out (pass next_cursor back as it is)"))
    r = api.call("GET", "/lists/tin-sang/subscribers", tokens["read"], params={"limit": "0"})
    assert (r.status_code, r.json()) == (422, error("limit", "limit '0' is not a whole number from 1 to 500"))
    r = api.call("GET", "/lists/tin-sang/subscribers", tokens["read"], params={"cursor": next_cursor(10**6)})
    assert r.json() == {"subscriptions": [], "next_cursor": None}


# -- bodies -----------------------------------------------------------------------------


def test_bodies_must_be_json_under_the_cap(site: Settings, store: Store) -> None:
    _, token = create_token(store, "cms", "write")
    with serving(site.with_(api_max_body_kb=1)) as client:
        api = Api(client, site)
        r = api.call("POST", "/subscribers", token, content=b"email=a@example.org",
                     headers={"content-type": "application/x-www-form-urlencoded"})
        assert (r.status_code, r.json()) == (415, error(
            None, "send the body as JSON with 'Content-Type: application/json' (got 'application/x-www-form-urlencoded')"))
        r = api.call("POST", "/subscribers", token, content=b'{"email": ' + b'"a' * 1000 + b'"}',
                     headers={"content-type": "application/json"})
        assert (r.status_code, r.json()) == (413, error(None, "the body is over 1 KB ([api] max_body_kb)"))
        r = api.call("POST", "/subscribers", token, content=b'{"email": ', headers={"content-type": "application/json"})
        assert (r.status_code, r.json()) == (400, error(
            None, "the body is not valid JSON (Expecting value at line 1 column 11)"))
        r = api.call("POST", "/subscribers", token, json=["a@example.org"])
        assert (r.status_code, r.json()) == (422, error(None, "the body should be a JSON object, not a list"))
        r = api.call("PUT", "/lists", token, json={})
        assert (r.status_code, r.headers["allow"]) == (405, "GET")


def test_a_token_over_its_rate_gets_429_with_retry_after(site: Settings, store: Store) -> None:
    _, busy = create_token(store, "busy", "read")
    _, other = create_token(store, "other", "read")
    with serving(site.with_(api_rate=0.5, api_burst=3)) as client:
        api = Api(client, site)
        assert [api.call("GET", "/lists", busy).status_code for _ in range(3)] == [200, 200, 200]
        r = api.call("GET", "/lists", busy)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "2"
        assert r.json() == error(None, "token 'busy' is over its rate (0.5 requests a second, 3 at once; "
                                       "[api] rate and burst); try again in 2 s")
        assert api.call("GET", "/lists", other).status_code == 200


def test_rate_limit_refills_with_time() -> None:
    now = [0.0]
    limit = RateLimit(2.0, 2, clock=lambda: now[0])
    assert [limit.hit("t") for _ in range(3)] == [0.0, 0.0, 0.5]
    now[0] = 0.5
    assert limit.hit("t") == 0.0
    assert RateLimit.retry_after(0.01) == "1"
    assert RateLimit(0, 1).hit("t") == 0.0  # 0 = unlimited


# -- articles ---------------------------------------------------------------------------

ARTICLE = {"guid": "cms:42", "title": "Hải Phòng khởi nghiệp", "published": "2026-11-20T08:00:00+07:00",
           "body_html": "<p>Người trẻ <b>khởi nghiệp</b>.</p><script>x()</script>", "category": "Kinh tế"}


def test_a_pushed_article_reaches_the_feeds_and_updates_by_guid(api: Api, tokens: dict[str, str], store: Store) -> None:
    w = tokens["write"]
    r = api.call("POST", "/articles", w, json=ARTICLE)
    assert r.status_code == 201 and r.json()["status"] == "new"
    assert "<script>" not in store.get_article("cms:42").body_html
    feed = feedparser.parse(api.client.get("/atom.xml").content)
    assert not feed.bozo and [e.title for e in feed.entries] == ["Hải Phòng khởi nghiệp"]
    assert api.call("POST", "/articles", w, json=ARTICLE).json()["status"] == "unchanged"
    r = api.call("PUT", "/articles/cms:42", w, json={**ARTICLE, "title": "Hải Phòng: mới"})
    assert r.status_code == 200 and r.json()["status"] == "updated"
    assert store.count_articles() == 1
    feed = feedparser.parse(api.client.get("/atom.xml").content)
    assert [e.title for e in feed.entries] == ["Hải Phòng: mới"]
    assert api.call("GET", "/articles/cms:42", tokens["read"]).json()["article"]["title"] == "Hải Phòng: mới"
    assert api.call("DELETE", "/articles/cms:42", w).status_code == 200
    assert feedparser.parse(api.client.get("/atom.xml").content).entries == []
    assert api.call("GET", "/articles/cms:42", w).status_code == 404


def test_a_pushed_article_refreshes_the_published_feeds(api: Api, tokens: dict[str, str], site: Settings,
                                                        store: Store) -> None:
    from syndicate.publish import publish_all

    publish_all(store, site, site.feeds_out)
    assert api.call("POST", "/articles", tokens["write"], json=ARTICLE).json()["feeds_refreshed"] > 0
    feed = feedparser.parse((Path(site.feeds_out) / "atom.xml").read_bytes())
    assert [e.title for e in feed.entries] == ["Hải Phòng khởi nghiệp"]


@pytest.mark.parametrize(("record", "field", "message"), [
    ({"published": "2026-11-20"}, "title", "no title (every article needs a 'title')"),
    ({"title": "T", "published": "soon"}, "published",
     "'published' is 'soon', not a date (use ISO 8601 such as 2026-11-20T08:00:00+07:00)"),
    ({"title": "T"}, "published", "no published date (add 'published' or 'date'; use ISO 8601 such as "
                                  "2026-11-20T08:00:00+07:00)"),
    ({"title": "T", "published": "2026-11-20", "body_html": "<p>" + "x" * 3_000_000}, "body_html",
     "'T' is 3 MB of HTML, over the 2 MB limit for one article (raise [ingest] max_article_mb to allow it); "
     "not imported"),
])
def test_a_bad_article_is_422_in_the_import_s_words(api: Api, tokens: dict[str, str], store: Store,
                                                    record: dict[str, Any], field: str, message: str) -> None:
    r = api.call("POST", "/articles", tokens["write"], json=record)
    assert (r.status_code, r.json()) == (422, error(field, message))
    assert store.count_articles() == 0


def test_put_refuses_a_body_naming_another_guid(api: Api, tokens: dict[str, str]) -> None:
    r = api.call("PUT", "/articles/cms:1", tokens["write"], json={**ARTICLE, "guid": "cms:2"})
    assert (r.status_code, r.json()) == (422, error("guid", "the body's guid 'cms:2' is not the guid in the URL ('cms:1')"))


# -- reports and the document -------------------------------------------------------------


def test_the_outbox_report_is_the_cli_s(api: Api, tokens: dict[str, str], store: Store) -> None:
    api.call("POST", "/subscribers", tokens["write"], json={"email": "lan@example.org", "list": "tin-sang"})
    api.wait_mail()
    r = api.call("GET", "/reports/outbox", tokens["read"], params={"list": "tin-sang"})
    from dataclasses import asdict

    assert r.json() == {"reports": [asdict(x) for x in store.digest_reports(list_slug="tin-sang")]}
    assert r.json()["reports"] and r.json()["reports"][0]["sent"] == 1
    r = api.call("GET", "/reports/outbox", tokens["read"], params={"list": "nope"})
    assert (r.status_code, r.json()) == (422, error("list", "no list with slug 'nope' (see `syndicate list ls`)"))


def test_the_openapi_document_validates_and_lists_every_route(api: Api, tokens: dict[str, str]) -> None:
    r = api.call("GET", "/openapi.json", None)
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    [mount] = [m for m in api.client.app.routes if isinstance(m, Mount) and m.path == PREFIX]
    served = {PREFIX + doc_path(route.path) for route in mount.routes if route.path != "/openapi.json"}  # type: ignore[attr-defined]
    assert served == set(doc["paths"])
    ops = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert ("/api/v1/subscribers", "post") in ops and ("/api/v1/articles/{guid}", "put") in ops
    sub = doc["paths"]["/api/v1/subscribers"]["post"]
    assert sub["security"] == [{"bearer": ["write"]}]
    assert set(sub["responses"]) >= {"201", "401", "403", "413", "415", "422", "429"}


# -- campaigns ----------------------------------------------------------------------------


def test_campaigns_through_the_api(api: Api, tokens: dict[str, str], site: Settings, store: Store) -> None:
    for address in ("a@example.org", "b@example.org", "gone@example.org"):
        subscribers.subscribe(store, site, address, "tin-sang", confirmed=True)
    subscribers.subscribe(store, site, "pending@example.org", "tin-sang")
    subscribers.unsubscribe_address(store, site, "gone@example.org", "tin-sang")
    w, a = tokens["write"], tokens["admin"]
    body = {"list": "tin-sang", "subject": "Gặp mặt cuối năm", "body_markdown": "# Mời bạn\n\nThứ **Bảy** này."}
    r = api.call("POST", "/campaigns", w, json={**body, "subject": "  "})
    assert (r.status_code, r.json()) == (422, error("subject", "the subject is empty; give one with --subject"))
    r = api.call("POST", "/campaigns", w, json={**body, "send_at": "next week"})
    assert (r.status_code, r.json()) == (422, error(
        "send_at", "send_at 'next week' is not an ISO 8601 time such as 2026-12-05T08:00+07:00"))
    r = api.call("POST", "/campaigns", w, json={**body, "list": "nope"})
    assert (r.status_code, r.json()) == (422, error("list", "no list with slug 'nope' (see `syndicate list ls`)"))
    r = api.call("POST", "/campaigns", w, json=body)
    assert r.status_code == 201, r.text
    cid = r.json()["campaign"]["id"]
    assert r.json()["campaign"]["status"] == "draft"
    r = api.call("PATCH", f"/campaigns/{cid}", w, json={"subject": "Gặp mặt cuối năm 2026"})
    assert r.json()["campaign"]["subject"] == "Gặp mặt cuối năm 2026"
    r = api.call("POST", f"/campaigns/{cid}/test", w, json={"to": "editor@example.org"})
    assert r.status_code == 200, r.text
    [test_mail] = api.inbox()
    assert str(test_mail["Subject"]).startswith("[TEST] ")
    assert [x.addr_spec for x in test_mail["To"].addresses] == ["editor@example.org"]
    assert api.call("POST", f"/campaigns/{cid}/send", w).status_code == 403
    r = api.call("POST", f"/campaigns/{cid}/send", a)
    assert (r.status_code, r.json()["queued"]) == (200, 2)  # the two active ones; not the pending, not the one who left
    r = api.call("POST", f"/campaigns/{cid}/send", a)
    assert r.status_code == 409 and r.json()["error"]["message"].startswith(f"campaign {cid} is ")
    report = api.call("GET", f"/campaigns/{cid}/report", tokens["read"]).json()["report"]
    assert (report["planned"], report["queued"], report["sent"]) == (2, 2, 0)
    assert [c["id"] for c in api.call("GET", "/campaigns", tokens["read"], params={"list": "tin-sang"}).json()[
        "campaigns"]] == [cid]
    assert api.call("GET", "/campaigns/999", tokens["read"]).status_code == 404


def test_a_guid_that_is_a_url_works_in_the_path(api: Api, tokens: dict[str, str], store: Store) -> None:
    from urllib.parse import quote

    guid = "https://cms.example.org/bai/42?v=1"
    path = "/articles/" + quote(guid, safe="")
    r = api.call("PUT", path, tokens["write"], json={k: v for k, v in ARTICLE.items() if k != "guid"})
    assert r.status_code == 201, r.text
    assert store.get_article(guid).title == ARTICLE["title"]
    assert api.call("GET", path, tokens["read"]).json()["article"]["guid"] == guid
    assert api.call("DELETE", path, tokens["write"]).status_code == 200
    assert store.count_articles() == 0


def test_checked_tokens_are_kept_but_a_revocation_or_rescope_from_another_process_counts_at_once(
        api: Api, tokens: dict[str, str], settings: Settings) -> None:
    cache = api.client.app.state.api.tokens
    assert api.call("GET", "/lists", tokens["write"]).status_code == 200
    assert api.call("GET", "/lists", tokens["write"]).status_code == 200
    assert len(cache._tokens) == 1  # the second request was answered from memory
    other = open_store(settings.db)  # as `syndicate token revoke` would, from its own connection
    try:
        other.conn.execute("UPDATE api_tokens SET scope = 'read' WHERE name = 'write-token'")
        other.conn.commit()
        r = api.call("POST", "/subscribers", tokens["write"], json={"email": "a@example.org", "list": "tin-sang"})
        assert r.status_code == 403
        other.touch_token(1, utcnow())  # being used is no change: the kept tokens stay
        assert api.call("GET", "/lists", tokens["write"]).status_code == 200
        assert len(cache._tokens) == 1
        other.revoke_token("write-token")
        assert api.call("GET", "/lists", tokens["write"]).status_code == 401
        assert api.call("GET", "/lists", tokens["read"]).status_code == 200
    finally:
        other.close()
