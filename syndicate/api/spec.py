"""The one description of the API: each :class:`Endpoint` is routed, checked and documented from itself.

``syndicate/api/__init__.py`` turns the endpoints into Starlette routes;
:func:`openapi` turns the same list into the OpenAPI 3.1 document served at
``/api/v1/openapi.json``; :func:`check_body` checks a request body against
the endpoint's schema before its handler runs (unknown fields, wrong types,
missing required fields: 422 naming the field).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .auth import ApiError

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Store
    from ..store.tokens import ApiToken

PREFIX = "/api/v1"
MAX_LIMIT = 500
DEFAULT_LIMIT = 100


@dataclass
class Call:
    """What a handler gets: the store of its thread, settings, the caller's token, and the request's parts."""

    store: Store
    settings: Settings
    token: ApiToken
    path: dict[str, str]
    query: Mapping[str, str]
    body: dict[str, Any]
    mail: Callable[[list[int]], None]  # hands queued notice rows to the sender after the answer
    # Runs a write job (its own transaction inside) and returns its value: by default on this thread's store;
    # the server passes its group commit, which runs several requests' jobs in one transaction.
    write: Callable[[Callable[[Store], Any]], Any] | None = None

    def run_write(self, job: Callable[[Store], Any]) -> Any:
        return job(self.store) if self.write is None else self.write(job)


@dataclass(frozen=True)
class Reply:
    status: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class Param:
    """A query parameter."""

    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Endpoint:
    """One operation: method, path (Starlette syntax, under /api/v1), the scope it needs, its handler."""

    method: str
    path: str
    scope: str
    summary: str
    handler: Callable[[Call], Reply]
    body: dict[str, Any] | None = None  # JSON Schema of the request body (an object)
    query: tuple[Param, ...] = ()
    status: int = 200
    result: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    tag: str = ""
    checked: bool = True  # False: the handler's own rules check the fields (an article record: the import's)
    # True: the whole request runs as one job of the group commit, off the worker threads (the hot create path)
    grouped: bool = False

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.strip("_")


PAGE = (Param("limit", f"How many items, 1 to {MAX_LIMIT} [default: {DEFAULT_LIMIT}].",
              {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        Param("cursor", "The next_cursor of the previous page (opaque)."))


def page_args(query: Mapping[str, str]) -> tuple[int, int]:
    """(limit, after id) from ``?limit=&cursor=``; 422 naming the parameter otherwise.

    Example:
        >>> page_args({"limit": "2", "cursor": next_cursor(41)})
        (2, 41)
    """
    raw = query.get("limit", "")
    if raw == "":
        limit = DEFAULT_LIMIT
    elif re.fullmatch(r"[0-9]{1,4}", raw) and 1 <= int(raw) <= MAX_LIMIT:
        limit = int(raw)
    else:
        raise ApiError(422, f"limit {raw!r} is not a whole number from 1 to {MAX_LIMIT}", "limit")
    cursor = query.get("cursor", "")
    if not cursor:
        return limit, 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        text = ""
    if not re.fullmatch(r"after:[0-9]{1,18}", text):
        raise ApiError(422, f"cursor {cursor[:60]!r} is not one this API gave out (pass next_cursor back as it is)",
                       "cursor")
    return limit, int(text[6:])


def next_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode("ascii")).decode("ascii").rstrip("=")


# -- bodies -----------------------------------------------------------------------

_PY: dict[str, type] = {"string": str, "boolean": bool, "integer": int, "array": list, "object": dict}
_NAMES = {"string": "text", "boolean": "true or false", "integer": "a whole number", "array": "a list",
          "object": "an object", "null": "null"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _fits(value: Any, schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    if kind is None:
        return True
    if isinstance(kind, list):
        return any(_fits(value, {**schema, "type": k}) for k in kind)
    if kind == "null" or value is None:
        return kind == "null" and value is None
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if not isinstance(value, _PY[str(kind)]):
        return False
    if isinstance(value, list) and "items" in schema:
        return all(_fits(v, schema["items"]) for v in value)
    return True


def check_body(body: Any, schema: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` if it is an object fitting ``schema``'s properties, else 422 naming the first bad field.

    Example:
        >>> check_body({"email": 3}, {"type": "object", "properties": {"email": {"type": "string"}}})
        Traceback (most recent call last):
        ...
        syndicate.api.auth.ApiError: 'email' should be text, not a whole number
    """
    if not isinstance(body, dict):
        raise ApiError(422, f"the body should be a JSON object, not {_kind(body)}")
    props: Mapping[str, Any] = schema.get("properties", {})
    if schema.get("additionalProperties") is False:
        extra = [k for k in body if k not in props]
        if extra:
            raise ApiError(422, f"unknown field {extra[0]!r}; known fields: {', '.join(props)}", extra[0])
    for name in schema.get("required", []):
        if body.get(name) in (None, ""):
            raise ApiError(422, f"{name!r} is required", name)
    for name, sub in props.items():
        if name in body and not _fits(body[name], sub):
            kinds = sub["type"] if isinstance(sub.get("type"), list) else [sub.get("type")]
            want = " or ".join(_NAMES.get(str(k), str(k)) for k in kinds)
            if sub.get("type") == "array":
                want = "a list of " + _NAMES.get(str(sub.get("items", {}).get("type")), "values")
            raise ApiError(422, f"{name!r} should be {want}, not {_kind(body[name])}", name)
    return body


# -- OpenAPI ----------------------------------------------------------------------

ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["field", "message"], "properties": {
        "field": {"type": ["string", "null"], "description": "The body field or parameter at fault, if one is."},
        "message": {"type": "string", "description": "What is wrong, in the CLI's words."},
    }}},
}
_ERRORS = {
    "401": "No token, or a token that is not valid (WWW-Authenticate: Bearer).",
    "403": "The token's scope does not allow this.",
    "404": "Not found (and every path while no token exists: the API is off).",
    "429": "Too many requests for this token; see Retry-After.",
}
_BODY_ERRORS = {
    "400": "The body is not valid JSON.",
    "413": "The body is over [api] max_body_kb.",
    "415": "The body is not application/json.",
    "422": "A field does not hold what it should; error.field names it.",
}


def doc_path(path: str) -> str:
    """A route's path as OpenAPI writes it: ``{guid:path}`` is ``{guid}``."""
    return re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", path)


def openapi(endpoints: list[Endpoint], version: str, server: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints`` (the same objects the routes are made of)."""
    paths: dict[str, dict[str, Any]] = {}
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for ep in endpoints:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)", ep.path)
        ]
        params += [{"name": p.name, "in": "query", "required": False, "description": p.description,
                    "schema": p.schema} for p in ep.query]
        responses: dict[str, Any] = {
            str(ep.status): {"description": "Done.", "content": {"application/json": {"schema": ep.result}}},
        }
        errors = {**_ERRORS, **(_BODY_ERRORS if ep.body is not None else {"422": _BODY_ERRORS["422"]})}
        responses.update({code: {"description": text, "content": error_ref} for code, text in errors.items()})
        op: dict[str, Any] = {
            "operationId": ep.operation_id, "summary": ep.summary,
            "description": f"Needs a token with scope `{ep.scope}` or above.",
            "security": [{"bearer": [ep.scope]}], "responses": responses,
        }
        if ep.tag:
            op["tags"] = [ep.tag]
        if params:
            op["parameters"] = params
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ep.body}}}
        paths.setdefault(PREFIX + doc_path(ep.path), {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "syndicate admin API", "version": version,
                 "description": "Lists, subscribers, articles and reports. Tokens: `syndicate token create`."},
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token from `syndicate token create --scope ...`."}},
        },
    }
