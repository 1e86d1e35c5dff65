"""The admin HTTP API under ``/api/v1``, served by ``syndicate serve``.

Every request goes the same way: the API is off (404) while no token exists;
then the bearer token (401 with ``WWW-Authenticate: Bearer``), its rate
(429 with ``Retry-After``), its scope (403); a body must be JSON (415),
under ``[api] max_body_kb`` (413), and fit the endpoint's schema (422 naming
the field); then the handler, in a worker thread with that thread's store.
Every answer is JSON, errors ``{"error": {"field": ..., "message": ...}}``.

The endpoints are described once (``resources.ENDPOINTS``,
``articles.ENDPOINTS``, ``campaigns.ENDPOINTS``): the routes and the OpenAPI document at
``/api/v1/openapi.json`` are both made from that list.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router

from .. import __version__
from ..errors import ConfigError, InputError, NotFound, SyndicateError
from . import articles, campaigns, resources
from .auth import ApiError, LastUsed, RateLimit, TokenCache, require
from .mail import ProcessNoticeSender
from .spec import PREFIX, Call, Endpoint, check_body, doc_path, openapi
from .writes import GroupCommit, in_savepoint, serialise_writes

if TYPE_CHECKING:
    from ..store import Store
    from ..web.context import WebContext

log = logging.getLogger("syndicate.api")

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
_NO_QUERY: Mapping[str, str] = MappingProxyType({})  # no query string: nothing to parse
OFF = "no such endpoint: the API is off until an admin makes a token (`syndicate token create`)"


def endpoints() -> list[Endpoint]:
    """Every operation of the API, in the order the OpenAPI document lists them."""
    return [*resources.ENDPOINTS, *articles.ENDPOINTS, *campaigns.ENDPOINTS]


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    # A newline at the end, so curl's output ends its line in a terminal and one answer is one line.
    body = orjson.dumps(payload, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status, media_type="application/json", headers={**HEADERS, **(headers or {})})


def _error(exc: ApiError) -> Response:
    return json_response(exc.status, exc.body(), exc.headers)


class Api:
    """The API's state in one process: its endpoints, the rate buckets, the notice sender."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.endpoints = endpoints()
        self.limit = RateLimit(self.settings.api_rate, self.settings.api_burst)
        self.last_used = LastUsed()
        self.tokens = TokenCache()
        self.mail = ProcessNoticeSender(self.settings)
        self.writes = GroupCommit(self.settings.db)
        self.max_body = self.settings.api_max_body_kb * 1024
        self._doc: bytes | None = None

    def routes(self) -> list[BaseRoute]:
        by_path: dict[str, dict[str, Endpoint]] = defaultdict(dict)
        for ep in self.endpoints:
            by_path[ep.path][ep.method] = ep
        inner: list[BaseRoute] = [Route("/openapi.json", self.openapi_json, methods=["GET"])]
        # Every method reaches the dispatcher, which answers 405 in JSON itself (Starlette's would be a page).
        inner += [Route(path, self._dispatcher(methods), methods=ALL_METHODS) for path, methods in by_path.items()]
        return [Mount(PREFIX, app=Router(inner, default=self.not_found))]

    def close(self) -> None:
        self.writes.close()
        self.mail.close()

    # -- plumbing ------------------------------------------------------------------

    async def not_found(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        on = await run_in_threadpool(self.ctx.store().has_live_token)
        message = f"no such endpoint {request.url.path}; see {PREFIX}/openapi.json" if on else OFF
        await json_response(404, {"error": {"field": None, "message": message}})(scope, receive, send)

    async def openapi_json(self, request: Request) -> Response:
        if not await run_in_threadpool(self.ctx.store().has_live_token):
            return _error(ApiError(404, OFF))
        if self._doc is None:
            doc = openapi(self.endpoints, __version__, self.settings.base_url.rstrip("/"))
            self._doc = json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
        return Response(self._doc, media_type="application/json", headers={"x-content-type-options": "nosniff"})

    def _dispatcher(self, methods: dict[str, Endpoint]) -> Any:
        async def dispatch(request: Request) -> Response:
            ep = methods.get(request.method)
            if ep is None:
                allow = ", ".join(sorted(methods))
                return _error(ApiError(405, f"{request.method} is not allowed here; use {allow}",
                                       headers={"allow": allow}))
            raw, too_big = (b"", False) if ep.body is None else await self._read(request)
            if ep.grouped:
                return await self._grouped(ep, request, raw, too_big)
            return await run_in_threadpool(self._handle, ep, request, raw, too_big)

        return dispatch

    async def _grouped(self, ep: Endpoint, request: Request, raw: bytes, too_big: bool) -> Response:
        """The whole request as one job of the group commit (its checks, its reads and its write), answered
        after the commit; the notices it queued go to the sender only then."""
        queued: list[int] = []

        def job(store: Store) -> Response:
            return self._handle(ep, request, raw, too_big, store=store, mail=queued.extend,
                                write=lambda work: in_savepoint(store, work))

        try:
            response: Response = await self.writes.run_async(job)
        except Exception:  # the commit failed: nothing of the request is stored (the writer logged why)
            return _error(ApiError(500, "the server failed on this request; its log has the details"))
        self.mail.send(queued)
        return response

    async def _read(self, request: Request) -> tuple[bytes, bool]:
        """The body, or (what was read, True) once it passes the cap (the rest is never read)."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return b"", True
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                return b"", True
            chunks.append(chunk)
        return b"".join(chunks), False

    def _handle(self, ep: Endpoint, request: Request, raw: bytes, too_big: bool, *, store: Store | None = None,
                mail: Callable[[list[int]], None] | None = None,
                write: Callable[[Callable[[Store], Any]], Any] | None = None) -> Response:
        """One request on a worker thread's store (or, for a grouped endpoint, inside the writer's batch)."""
        store = serialise_writes(self.ctx.store()) if store is None else store
        try:
            try:
                token = self.tokens.authenticate(store, request.headers.get("authorization", ""))
            except ApiError:  # a valid token proves the API is on; only a refusal needs to ask
                if not store.has_live_token():
                    raise ApiError(404, OFF) from None
                raise
            wait = self.limit.hit(token.public_id)
            if wait:
                seconds = RateLimit.retry_after(wait)
                raise ApiError(429, f"token {token.name!r} is over its rate ({self.settings.api_rate:g} requests a "
                                    f"second, {self.settings.api_burst} at once; [api] rate and burst); try again in "
                                    f"{seconds} s", headers={"retry-after": seconds})
            if not token.allows(ep.scope):
                require(token, ep.scope, f"{ep.method} {PREFIX}{doc_path(ep.path)}")
            self.last_used.note(store, token)
            body = self._body(ep, request, raw, too_big) if ep.body is not None else {}
            query = request.query_params if request.scope.get("query_string") else _NO_QUERY
            call = Call(store, self.settings, token, dict(request.path_params), query, body,
                        mail or self.mail.send, write or self.writes.run)
            reply = ep.handler(call)
        except ApiError as exc:
            return _error(exc)
        except NotFound as exc:
            return _error(ApiError(404, str(exc)))
        except InputError as exc:
            return _error(ApiError(422, str(exc)))
        except ConfigError as exc:
            log.error("API %s %s: %s", ep.method, request.url.path, exc)
            return _error(ApiError(500, f"the server is not configured for this: {exc}"))
        except SyndicateError as exc:
            return _error(ApiError(409, str(exc)))
        except Exception:
            log.exception("API %s %s failed", ep.method, request.url.path)
            return _error(ApiError(500, "the server failed on this request; its log has the details"))
        return json_response(reply.status, reply.payload)

    def _body(self, ep: Endpoint, request: Request, raw: bytes, too_big: bool) -> dict[str, Any]:
        assert ep.body is not None
        if not raw.strip() and not too_big and not ep.body.get("required"):
            return {}  # every field optional: no body is an empty object (`curl -X POST .../unsubscribe`)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, f"send the body as JSON with 'Content-Type: application/json' (got {ctype or 'none'!r})")
        if too_big:
            raise ApiError(413, f"the body is over {self.settings.api_max_body_kb:,} KB ([api] max_body_kb)")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:  # the standard parser's reading: its messages, and what orjson refuses
            doc = self._parse(raw)       # but JSON allows (lone surrogates, huge integers)
        return check_body(doc, ep.body if ep.checked else {"type": "object"})

    @staticmethod
    def _parse(raw: bytes) -> Any:
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"the body is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        except RecursionError:
            raise ApiError(400, "the body is not valid JSON (nested too deeply)") from None


def routes(ctx: WebContext) -> tuple[list[BaseRoute], Api]:
    """The ``/api/v1`` mount for ``create_app``, and the Api to close at shutdown.

    Example:
        >>> from syndicate.config import Settings
        >>> from syndicate.web.context import WebContext
        >>> mounted, api = routes(WebContext(Settings()))
        >>> [r.path for r in mounted], len(api.endpoints) > 5
        (['/api/v1'], True)
    """
    api = Api(ctx)
    return api.routes(), api
