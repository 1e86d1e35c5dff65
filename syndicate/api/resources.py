"""Lists, subscribers and the outbox report: each handler checks its input and calls the library the CLI calls.

Every rule (double opt-in, suppressions, consent records, erasure) stays in
``syndicate/subscribers.py``; a refusal there becomes a 422 with the same
words the CLI prints, and the field it is about.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .. import subscribers as lib
from ..errors import InputError, NotFound, SyndicateError
from ..models import CADENCES, SUBSCRIPTION_STATUSES, NewsList, Subscriber, Subscription, to_iso
from ..sanitize import one_line
from ..store import Store
from .auth import ApiError, require
from .spec import PAGE, Call, Endpoint, Param, Reply, next_cursor, page_args

# -- shapes -------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    return to_iso(value) if value is not None else None


def list_json(nl: NewsList) -> dict[str, Any]:
    out = asdict(nl)
    out["created"] = _iso(nl.created)
    return out


def subscriber_json(s: Subscriber) -> dict[str, Any]:
    return {"id": s.id, "email": s.email, "name": s.name, "timezone": s.timezone, "locale": s.locale,
            "created": _iso(s.created)}


def subscription_json(s: Subscription, slug: str) -> dict[str, Any]:
    return {"id": s.id, "list": slug, "status": s.status, "cadence": s.cadence, "weekday": s.weekday,
            "send_hour": s.send_hour, "categories": s.categories, "created": _iso(s.created),
            "confirmed": _iso(s.confirmed), "unsubscribed": _iso(s.unsubscribed)}


# Which field a library refusal is about, by the words it starts with (tests pin each message).
_FIELD_OF = (("cadence ", "cadence"), ("weekday ", "weekday"), ("send hour ", "send_hour"),
             ("list ", "categories"))


def refusal(exc: SyndicateError, field: str | None = None) -> ApiError:
    """A library error as the API's answer: 404 for what does not exist, else 422 with the CLI's words."""
    message = str(exc)
    if isinstance(exc, NotFound) and field is None:
        return ApiError(404, message)
    if field is None:
        if "IANA time zone" in message:
            field = "timezone"
        else:
            field = next((f for start, f in _FIELD_OF if message.startswith(start)), None)
    return ApiError(422, message, field)


def _list(call: Call, slug: str, field: str | None = None) -> NewsList:
    try:
        return call.store.get_list(slug)
    except NotFound as exc:
        raise refusal(exc, field) from None


def _subscriber(call: Call) -> Subscriber:
    key = call.path["key"]
    try:
        if key.isdigit():
            return call.store.get_subscriber_by_id(int(key))
        return call.store.get_subscriber(lib.normalize_address(key))
    except InputError:
        raise ApiError(404, f"no subscriber with id or address {key!r}") from None
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None


def _subscriber_reply(call: Call, subscriber: Subscriber, status: int = 200, **extra: Any) -> Reply:
    assert subscriber.id is not None
    slugs = {nl.id: nl.slug for nl in call.store.all_lists()}
    subs = [subscription_json(s, slugs.get(s.list_id, "?")) for s in call.store.subscriptions_of(subscriber.id)]
    return Reply(status, {"subscriber": subscriber_json(subscriber), "subscriptions": subs, **extra})


# -- lists ------------------------------------------------------------------------


def list_lists(call: Call) -> Reply:
    return Reply(200, {"lists": [list_json(nl) for nl in call.store.all_lists()]})


def get_list(call: Call) -> Reply:
    nl = _list(call, call.path["slug"])
    assert nl.id is not None
    counts = {s: call.store.count_subscriptions(nl.id, s) for s in SUBSCRIPTION_STATUSES}
    return Reply(200, {"list": list_json(nl), "subscriptions": counts})


def list_subscribers(call: Call) -> Reply:
    nl = _list(call, call.path["slug"])
    assert nl.id is not None
    status = call.query.get("status") or None
    if status is not None and status not in SUBSCRIPTION_STATUSES:
        raise ApiError(422, f"status {status!r} is not one of {', '.join(SUBSCRIPTION_STATUSES)}", "status")
    limit, after = page_args(call.query)
    rows = call.store.subscriptions_page(nl.id, after=after, limit=limit + 1, status=status)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [{**subscription_json(sub, nl.slug), "subscriber": subscriber_json(person)} for sub, person in rows]
    last = rows[-1][0].id if rows and more else None
    return Reply(200, {"subscriptions": items, "next_cursor": next_cursor(last) if last is not None else None})


# -- subscribers --------------------------------------------------------------------


def create_subscriber(call: Call) -> Reply:
    body = call.body
    confirmed, resubscribe = bool(body.get("confirmed")), bool(body.get("resubscribe"))
    if confirmed:
        require(call.token, "admin", 'asserting consent ("confirmed": true)')
    if resubscribe:
        require(call.token, "admin", 'bringing back an address that left ("resubscribe": true)')
    try:
        email = lib.normalize_address(body["email"])
    except InputError as exc:
        raise refusal(exc, "email") from None
    nl = _list(call, body["list"], "list")  # (subscribe reads it again: one cheap read, and the field is known)
    if body.get("timezone"):
        try:
            lib.check_timezone(body["timezone"])
        except InputError as exc:
            raise refusal(exc, "timezone") from None
    if body.get("categories"):
        try:
            lib.check_categories(body["categories"], nl)
        except InputError as exc:
            raise refusal(exc, "categories") from None
    name = body.get("name", "")

    def signup(store: Store) -> tuple[lib.SubscribeResult, list[int], str]:
        # One write: the subscription, its consent record and its confirmation's outbox row land together.
        with store.transaction(immediate=True):
            r = lib.subscribe(
                store, call.settings, email, nl.slug, name=name, timezone=body.get("timezone"),
                categories=body.get("categories") or None, cadence=body.get("cadence"),
                send_hour=body.get("send_hour"), source="api", actor=call.token.name, confirmed=confirmed,
                resubscribe=resubscribe,
            )
            assert r.subscription.id is not None
            if r.subscription.status == "pending":  # like `subscriber add`: a confirmation, one per few minutes
                [queued] = store.queue_notices("confirm", [r.subscription.id])
                ids = [queued.delivery_id] if queued.delivery_id is not None else []
                return r, ids, "queued" if ids else f"not queued: {queued.reason}"
            ids = store.queued_notices([r.subscription.id])  # the welcome a confirmation queued, if any
            return r, ids, "welcome queued" if ids else "none"

    try:
        r, ids, email_note = call.run_write(signup)
    except InputError as exc:
        raise refusal(exc, None if str(exc).startswith(("cadence ", "send hour ")) else "email") from None
    if call.settings.api_send_at_once:
        call.mail(ids)
    return Reply(201 if r.created else 200, {
        "subscriber": subscriber_json(r.subscriber), "subscription": subscription_json(r.subscription, nl.slug),
        "created": r.created, "email": email_note})


def get_subscriber(call: Call) -> Reply:
    return _subscriber_reply(call, _subscriber(call))


def update_subscriber(call: Call) -> Reply:
    body = call.body
    person = _subscriber(call)
    assert person.id is not None
    per_list = [k for k in ("categories", "cadence", "weekday", "send_hour") if k in body]
    if per_list and not body.get("list"):
        raise ApiError(422, f"{per_list[0]!r} belongs to one subscription: name its 'list' too", "list")
    try:
        if body.get("list"):
            nl = _list(call, body["list"], "list")
            assert nl.id is not None
            if call.store.find_subscription(person.id, nl.id) is None:
                raise ApiError(422, f"{person.email} has no subscription to {nl.slug!r}", "list")
            token = lib.make_token(call.settings, "preferences", person.id, nl.id, person.email)
            lib.update_preferences(
                call.store, call.settings, token, cadence=body.get("cadence"), weekday=body.get("weekday"),
                send_hour=body.get("send_hour"), timezone=body.get("timezone"), categories=body.get("categories"),
                name=body.get("name"), source="api", actor=call.token.name,
            )
        elif "name" in body or "timezone" in body:
            person.timezone = lib.check_timezone(body["timezone"]) if body.get("timezone") else person.timezone
            person.name = one_line(body["name"]) if "name" in body else person.name
            call.store.update_subscriber(person)
    except InputError as exc:
        raise refusal(exc) from None
    return _subscriber_reply(call, call.store.get_subscriber_by_id(person.id))


def unsubscribe_subscriber(call: Call) -> Reply:
    person = _subscriber(call)
    slug = call.body.get("list") or None
    if slug is not None:
        _list(call, slug, "list")
    try:
        lib.unsubscribe_address(call.store, call.settings, person.email, slug, source="api", actor=call.token.name)
    except NotFound as exc:
        raise refusal(exc, "list") from None
    return _subscriber_reply(call, person)


def erase_subscriber(call: Call) -> Reply:
    person = _subscriber(call)
    report = lib.erase(call.store, call.settings, person.email, source="api", actor=call.token.name)
    return Reply(200, {"erased": True, "subscriptions": report.subscriptions, "sent_messages": report.sent_messages,
                       "unreachable": report.unreachable})


# -- reports ------------------------------------------------------------------------


def outbox_report(call: Call) -> Reply:
    slug = call.query.get("list") or None
    if slug is not None:
        _list(call, slug, "list")
    reports = call.store.digest_reports(list_slug=slug, period=call.query.get("period") or None)
    return Reply(200, {"reports": [asdict(r) for r in reports]})


# -- the description --------------------------------------------------------------

_TEXT = {"type": "string"}
_TOPICS = {"type": "array", "items": {"type": "string"}, "description": "Category slugs of the list."}
_SUBSCRIBER_CREATE = {
    "type": "object", "additionalProperties": False, "required": ["email", "list"],
    "properties": {
        "email": {**_TEXT, "description": "The address (internationalised addresses allowed)."},
        "list": {**_TEXT, "description": "The list's slug."},
        "name": _TEXT, "timezone": {**_TEXT, "description": "IANA zone [default: the site's]."},
        "categories": _TOPICS, "cadence": {"type": "string", "enum": list(CADENCES)},
        "send_hour": {"type": "integer", "minimum": 0, "maximum": 23},
        "confirmed": {"type": "boolean", "description": "Consent already given (admin tokens): active, no email."},
        "resubscribe": {"type": "boolean", "description": "Bring back an address that left (admin tokens)."},
    },
}
_SUBSCRIBER_UPDATE = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "list": {**_TEXT, "description": "The subscription to change (needed for categories and schedule)."},
        "name": _TEXT, "timezone": _TEXT, "categories": _TOPICS,
        "cadence": {"type": "string", "enum": list(CADENCES)},
        "weekday": {"type": "integer", "minimum": 0, "maximum": 6},
        "send_hour": {"type": "integer", "minimum": 0, "maximum": 23},
    },
}
_UNSUBSCRIBE = {"type": "object", "additionalProperties": False,
                "properties": {"list": {**_TEXT, "description": "Only this list [default: every list]."}}}

ENDPOINTS = [
    Endpoint("GET", "/lists", "read", "Every list.", list_lists, tag="lists"),
    Endpoint("GET", "/lists/{slug}", "read", "One list and its subscription counts.", get_list, tag="lists"),
    Endpoint("GET", "/lists/{slug}/subscribers", "read", "A list's subscriptions, a page at a time.",
             list_subscribers, query=(*PAGE, Param("status", "Only this status.")), tag="subscribers"),
    Endpoint("POST", "/subscribers", "write", "Subscribe an address: pending and a confirmation email, or "
             "active with \"confirmed\": true (admin).", create_subscriber, body=_SUBSCRIBER_CREATE, status=201,
             tag="subscribers", grouped=True),
    Endpoint("GET", "/subscribers/{key}", "read", "A subscriber (by id or address) and their subscriptions.",
             get_subscriber, tag="subscribers"),
    Endpoint("PATCH", "/subscribers/{key}", "write", "Change a name, time zone, or one subscription's topics "
             "and schedule.", update_subscriber, body=_SUBSCRIBER_UPDATE, tag="subscribers"),
    Endpoint("POST", "/subscribers/{key}/unsubscribe", "write", "Unsubscribe from one list or all, at once.",
             unsubscribe_subscriber, body=_UNSUBSCRIBE, tag="subscribers"),
    Endpoint("DELETE", "/subscribers/{key}", "admin", "Erase a person (GDPR art. 17).", erase_subscriber,
             tag="subscribers"),
    Endpoint("GET", "/reports/outbox", "read", "Per list and period: what was planned and what became of it.",
             outbox_report, query=(Param("list", "Only this list's slug."), Param("period", "Only this period.")),
             tag="reports"),
]
