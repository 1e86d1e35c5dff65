"""Announcements through the API: create, edit, cancel, test, send and report, on syndicate/campaigns.py.

Every rule (subject and body checks, who a send reaches, the outbox rows it
plans) is the campaign module's; a refusal there is a 422 in its words.
Sending plans the outbox rows at once, and ``syndicate send`` (cron)
delivers them, exactly as ``syndicate campaign send``; sending needs an
admin token, since it mails a whole list.
"""

from __future__ import annotations

from datetime import datetime

from .. import campaigns as lib
from ..errors import InputError, NotFound
from .auth import ApiError
from .spec import Call, Endpoint, Param, Reply


def _send_at(call: Call) -> datetime | None:
    raw = call.body.get("send_at")
    if raw is None or raw == "":
        return None
    try:
        when = datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, f"send_at {raw!r} is not an ISO 8601 time such as 2026-12-05T08:00+07:00",
                       "send_at") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=call.settings.tz)


_FIELD_OF = (("the subject", "subject"), ("the body", "body_markdown"), ("send-at", "send_at"),
             ("list ", "categories"))


def _refusal(exc: InputError) -> ApiError:
    message = str(exc)
    return ApiError(422, message, next((f for start, f in _FIELD_OF if message.startswith(start)), None))


def _id(call: Call) -> int:
    raw = call.path["id"]
    if not raw.isdigit():
        raise ApiError(404, f"no campaign with id {raw[:40]!r} (ids are whole numbers)")
    return int(raw)


def list_campaigns(call: Call) -> Reply:
    slug = call.query.get("list") or None
    list_id = None
    if slug is not None:
        try:
            list_id = call.store.get_list(slug).id
        except NotFound as exc:
            raise ApiError(422, str(exc), "list") from None
    return Reply(200, {"campaigns": [lib.campaign_dict(c) for c in call.store.list_campaigns(list_id)]})


def create_campaign(call: Call) -> Reply:
    body = call.body
    try:
        c = lib.create_campaign(call.store, call.settings, list_slug=body["list"], subject=body["subject"],
                                body_markdown=body["body_markdown"], send_at=_send_at(call),
                                categories=body.get("categories") or ())
    except NotFound as exc:
        raise ApiError(422, str(exc), "list") from None
    except InputError as exc:
        raise _refusal(exc) from None
    return Reply(201, {"campaign": lib.campaign_dict(c, with_body=True)})


def get_campaign(call: Call) -> Reply:
    return Reply(200, {"campaign": lib.campaign_dict(call.store.get_campaign(_id(call)), with_body=True)})


def edit_campaign(call: Call) -> Reply:
    body = call.body
    cid = _id(call)
    call.store.get_campaign(cid)  # 404 first
    draft = body.get("send_at") is None and "send_at" in body
    try:
        c = lib.edit_campaign(call.store, cid, subject=body.get("subject"), body_markdown=body.get("body_markdown"),
                              send_at=None if draft else _send_at(call), categories=body.get("categories"),
                              clear_send_at=draft)
    except InputError as exc:
        raise _refusal(exc) from None
    return Reply(200, {"campaign": lib.campaign_dict(c, with_body=True)})


def cancel_campaign(call: Call) -> Reply:
    try:
        c = lib.cancel_campaign(call.store, _id(call))
    except InputError as exc:
        raise ApiError(409, str(exc)) from None
    return Reply(200, {"campaign": lib.campaign_dict(c)})


def test_campaign(call: Call) -> Reply:
    cid = _id(call)
    call.store.get_campaign(cid)
    try:
        message_id = lib.test_campaign(call.store, call.settings, cid, call.body["to"])
    except InputError as exc:
        raise ApiError(422, str(exc), "to") from None
    return Reply(200, {"sent_to": call.body["to"].strip(), "message_id": message_id})


def send_campaign(call: Call) -> Reply:
    cid = _id(call)
    try:
        planned = lib.send_campaign(call.store, call.settings, cid)
    except InputError as exc:
        raise ApiError(409, str(exc)) from None
    return Reply(200, {"campaign": lib.campaign_dict(call.store.get_campaign(cid)), "queued": planned,
                       "note": "`syndicate send` (cron) delivers them"})


def campaign_report(call: Call) -> Reply:
    r = lib.campaign_report(call.store, _id(call))
    return Reply(200, {"report": lib.report_dict(r)})


_TEXT = {"type": "string"}
_TOPICS = {"type": "array", "items": {"type": "string"}, "description": "Only subscribers of these categories."}
_WHEN = {"type": ["string", "null"], "description": "ISO 8601; without an offset, the site's zone. null: a draft."}
_CREATE = {
    "type": "object", "additionalProperties": False, "required": ["list", "subject", "body_markdown"],
    "properties": {"list": _TEXT, "subject": _TEXT, "body_markdown": {**_TEXT, "description": "Markdown."},
                   "send_at": _WHEN, "categories": _TOPICS},
}
_EDIT = {"type": "object", "additionalProperties": False,
         "properties": {"subject": _TEXT, "body_markdown": _TEXT, "send_at": _WHEN, "categories": _TOPICS}}
_TEST = {"type": "object", "additionalProperties": False, "required": ["to"],
         "properties": {"to": {**_TEXT, "description": "The one address to send the [TEST] message to."}}}

ENDPOINTS = [
    Endpoint("GET", "/campaigns", "read", "Campaigns, newest first.", list_campaigns,
             query=(Param("list", "Only this list's slug."),), tag="campaigns"),
    Endpoint("POST", "/campaigns", "write", "A new campaign: a draft, or scheduled with send_at.", create_campaign,
             body=_CREATE, status=201, tag="campaigns"),
    Endpoint("GET", "/campaigns/{id}", "read", "One campaign with its Markdown body.", get_campaign, tag="campaigns"),
    Endpoint("PATCH", "/campaigns/{id}", "write", "Change a draft or scheduled campaign (send_at null: a draft).",
             edit_campaign, body=_EDIT, tag="campaigns"),
    Endpoint("POST", "/campaigns/{id}/cancel", "write", "Cancel a draft or scheduled campaign.", cancel_campaign,
             tag="campaigns"),
    Endpoint("POST", "/campaigns/{id}/test", "write", "Send one [TEST] message to one address now; the real send "
             "is untouched.", test_campaign, body=_TEST, tag="campaigns"),
    Endpoint("POST", "/campaigns/{id}/send", "admin", "Queue it for every active subscriber of its list (an admin "
             "token: it mails a whole list); `syndicate send` delivers.", send_campaign, tag="campaigns"),
    Endpoint("GET", "/campaigns/{id}/report", "read", "Planned, sent, failed, bounced, complained, unsubscribed "
             "after it, clicks.", campaign_report, tag="campaigns"),
]
