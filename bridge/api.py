"""The REST API: Telphin-compatible extension event subscriptions, over aiohttp.

``POST/GET/DELETE /extension/{id}/event/``, ``GET/PUT/DELETE /extension/{id}/event/{sub}``
and ``GET /limit/``. Every request carries ``Authorization: Bearer <token>``; a token
may be limited to some extensions.

REST conventions are Telphin's: 201 on a successful POST, 204 (no body) on DELETE, 200
on GET/PUT. Every error is JSON, never a bare 500: ``{"status": code, "message": text,
"error": code, "field": name?, "detail": text?}``; ``status`` is the machine-readable
code Telphin's clients read (``access_denied``, ``not_found``, ``rate_limit_exceeded``...),
``error`` the bridge's own older code (kept for existing tooling); a 401 says
``"message": "Unauthorized"`` with the reason in ``detail``.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bridge.config import ApiToken, Config, token_digest
from bridge.store import DELIVERY_STATES, Store, StoreError, Subscription

log = logging.getLogger(__name__)

EVENT_TYPES = ("dial-in", "dial-out", "answer", "hangup", "voicemail", "message-in", "message-out")
METHODS = ("GET", "POST")
MAX_URL = 2048

CONFIG_KEY = web.AppKey("config", Config)
STORE_KEY = web.AppKey("store", Store)
TOKENS_KEY = web.AppKey("tokens", list)
TOKEN_KEY = web.RequestKey("token", ApiToken)
DISPATCHER_KEY = web.AppKey("dispatcher", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: the bridge's own error codes whose Telphin-style ``status`` is spelt differently
TELPHIN_STATUS = {"forbidden": "access_denied", "rate_limited": "rate_limit_exceeded"}


class ApiError(Exception):
    """An answer other than success: HTTP status, error code, message, and the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": TELPHIN_STATUS.get(self.code, self.code), "message": self.message,
                                "error": self.code}  # fmt: skip
        if self.status == 401:
            body["message"], body["detail"] = "Unauthorized", self.message
        if self.field:
            body["field"] = self.field
        return body

    def response(self) -> web.Response:
        headers = {"WWW-Authenticate": 'Bearer realm="ami-bridge"'} if self.status == 401 else None
        return web.json_response(self.body(), status=self.status, headers=headers)


def _authorize(request: web.Request) -> ApiToken:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>'")
    given = token_digest(token.strip())
    found: ApiToken | None = None
    # compare against every token, in constant time each, so timing says nothing
    for digest, tok in request.app[TOKENS_KEY]:
        if hmac.compare_digest(digest, given):
            found = tok
    if found is None:
        raise ApiError(401, "unauthorized", "unknown bearer token")
    return found


class RateLimiter:
    """A token bucket per client key: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> tuple[bool, int, int, int]:
        """(allowed, remaining, seconds until the window resets (the bucket is full again),
        seconds until one more request is allowed)."""
        now = self.clock()
        tokens, last = self.buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self.buckets) > 100_000:  # a flood of distinct keys must not grow memory
            self.buckets.clear()
        self.buckets[key] = (tokens, now)
        retry = 0 if tokens >= 1.0 else math.ceil((1.0 - tokens) / self.rate)
        return allowed, int(tokens), math.ceil((self.capacity - tokens) / self.rate), retry


LIMITER_KEY = web.AppKey("limiter", RateLimiter)


def _rate_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset)}  # fmt: skip


@web.middleware
async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    headers: dict[str, str] = {}
    try:
        if request.path.startswith(("/extension/", "/limit", "/deliveries", "/calls/")):
            # limit per token (its digest: the token itself is never kept or logged)
            auth = request.headers.get("Authorization", "")
            key = token_digest(auth).hex() if auth else f"ip:{request.remote}"
            allowed, remaining, reset, retry = request.app[LIMITER_KEY].take(key)
            headers = _rate_headers(int(request.app[LIMITER_KEY].capacity), remaining, reset)
            if not allowed:
                resp = ApiError(429, "rate_limited", f"too many requests; retry in {retry} s").response()
                resp.headers.update(headers)
                resp.headers["Retry-After"] = str(retry)
                return resp
            request[TOKEN_KEY] = _authorize(request)
        response = await handler(request)
        response.headers.update(headers)
        return response
    except ApiError as err:
        resp = err.response()
        resp.headers.update(headers)
        return resp
    except web.HTTPRequestEntityTooLarge:
        return ApiError(413, "too_large", "request body too large").response()
    except web.HTTPException as exc:
        if exc.status >= 400:
            return ApiError(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason).response()
        raise
    except StoreError as err:
        log.error("store error: %s", err)
        return ApiError(503, "store_unavailable", "the store cannot be written; try again later").response()
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return ApiError(500, "internal_error", "unexpected error; it has been logged").response()


def _extension_id(request: web.Request) -> int:
    raw = request.match_info["extension_id"]
    token: ApiToken = request[TOKEN_KEY]
    if not (raw.isascii() and raw.isdigit()) or request.app[CONFIG_KEY].extension(int(raw)) is None:
        raise ApiError(404, "not_found", f"no extension {raw!r}", "extension_id")
    ext_id = int(raw)
    if token.extensions is not None and ext_id not in token.extensions:
        raise ApiError(403, "forbidden", f"this token does not cover extension {ext_id}", "extension_id")
    return ext_id


def _sub_id(request: web.Request) -> int:
    raw = request.match_info["sub_id"]
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(404, "not_found", f"no subscription {raw!r}", "id")
    return int(raw)


async def _body(request: web.Request) -> dict[str, Any]:
    ctype = request.content_type
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", f"send application/json, not {ctype or 'nothing'}")
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object {url, event_type, method}")
    return data


def validate_subscription(data: dict[str, Any]) -> tuple[str, str, str]:
    """(url, event_type, method) from a request body, or ApiError naming the field."""
    unknown = sorted(set(data) - {"url", "event_type", "method"})
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field {unknown[0]!r}", unknown[0])
    for name in ("url", "event_type", "method"):
        if name not in data:
            raise ApiError(400, "invalid_request", f"{name} is required", name)
        if not isinstance(data[name], str):
            raise ApiError(400, "invalid_request", f"{name} must be a string", name)
    url, event_type, method = data["url"].strip(), data["event_type"], data["method"].upper()
    if event_type not in EVENT_TYPES:
        raise ApiError(
            400, "invalid_request", f"event_type must be one of {', '.join(EVENT_TYPES)}", "event_type"
        )
    if method not in METHODS:
        raise ApiError(400, "invalid_request", "method must be GET or POST", "method")
    if len(url) > MAX_URL:
        raise ApiError(400, "invalid_request", f"url is longer than {MAX_URL} characters", "url")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as err:
        raise ApiError(400, "invalid_request", f"url is not a valid URL: {err}", "url") from err
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(400, "invalid_request", "url must be an absolute http:// or https:// URL", "url")
    return url, event_type, method


async def _guard(request: web.Request, url: str) -> None:
    from bridge.delivery.guard import check_host, parse_networks

    allow = parse_networks(request.app[CONFIG_KEY].delivery.allow_networks)
    why = await check_host(urlsplit(url).hostname or "", allow)
    if why:
        raise ApiError(400, "invalid_request", f"url refused: {why}; an operator can allow it with "
                       "delivery.allow_networks", "url")  # fmt: skip


async def create(request: web.Request) -> web.Response:
    ext_id = _extension_id(request)
    url, event_type, method = validate_subscription(await _body(request))
    store, api = request.app[STORE_KEY], request.app[CONFIG_KEY].api
    if store.count(ext_id) >= api.max_subscriptions_per_extension:
        raise ApiError(409, "limit_exceeded",
                       f"extension {ext_id} already has {api.max_subscriptions_per_extension} subscriptions "
                       "(the maximum, see GET /limit/)")  # fmt: skip
    if store.count() >= api.max_subscriptions_total:
        most = api.max_subscriptions_total
        raise ApiError(409, "limit_exceeded", f"the bridge already has {most} subscriptions (the maximum)")
    await _guard(request, url)
    sub = store.add_subscription(ext_id, event_type, url, method)
    return web.json_response(sub.public(), status=201)


async def list_(request: web.Request) -> web.Response:
    ext_id = _extension_id(request)
    return web.json_response([s.public() for s in request.app[STORE_KEY].subscriptions(ext_id)])


async def delete_all(request: web.Request) -> web.Response:
    ext_id = _extension_id(request)
    request.app[STORE_KEY].delete_subscriptions(ext_id)
    return web.Response(status=204)


def _existing(request: web.Request) -> Subscription:
    ext_id = _extension_id(request)
    sub_id = _sub_id(request)
    sub = request.app[STORE_KEY].subscription(ext_id, sub_id)
    if sub is None:
        raise ApiError(404, "not_found", f"extension {ext_id} has no subscription {sub_id}", "id")
    return sub


async def get_one(request: web.Request) -> web.Response:
    return web.json_response(_existing(request).public())


async def put_one(request: web.Request) -> web.Response:
    sub = _existing(request)
    url, event_type, method = validate_subscription(await _body(request))
    await _guard(request, url)
    new = Subscription(sub.id, sub.extension_id, event_type, url, method)
    request.app[STORE_KEY].update_subscription(new)
    return web.json_response(new.public())


async def delete_one(request: web.Request) -> web.Response:
    sub = _existing(request)
    request.app[STORE_KEY].delete_subscription(sub.extension_id, sub.id)
    return web.Response(status=204)


async def limits(request: web.Request) -> web.Response:
    config, store = request.app[CONFIG_KEY], request.app[STORE_KEY]
    token: ApiToken = request[TOKEN_KEY]
    ids = [e.id for e in config.extensions if token.extensions is None or e.id in token.extensions]
    return web.json_response({
        "event_subscriptions": {
            "max_per_extension": config.api.max_subscriptions_per_extension,
            "max_total": config.api.max_subscriptions_total,
            "used_total": store.count(),
            "used_by_extension": {str(i): store.count(i) for i in ids},
        }
    })  # fmt: skip


def _admin(request: web.Request) -> None:
    if request[TOKEN_KEY].extensions is not None:
        raise ApiError(403, "forbidden", "only a token without an extensions list may manage deliveries")


async def list_deliveries(request: web.Request) -> web.Response:
    """Deliveries by state (default: failed), for inspection."""
    _admin(request)
    state = request.query.get("state", "failed")
    if state not in DELIVERY_STATES:
        raise ApiError(400, "invalid_request", "state must be pending, delivered or failed", "state")
    return web.json_response(request.app[STORE_KEY].deliveries(state))


async def retry_deliveries(request: web.Request) -> web.Response:
    """Put failed deliveries back in the queue: all, or {"ids": [...]}."""
    _admin(request)
    ids: list[int] | None = None
    if request.can_read_body:
        data = await _body(request)
        raw = data.get("ids")
        if raw is not None and (not isinstance(raw, list) or not all(isinstance(i, int) for i in raw)):
            raise ApiError(400, "invalid_request", "ids must be a list of delivery ids", "ids")
        ids = raw
    n = request.app[STORE_KEY].retry_failed(ids)
    dispatcher = request.app.get(DISPATCHER_KEY)
    if dispatcher is not None:
        dispatcher.wake()  # type: ignore[attr-defined]
    return web.json_response({"retried": n}, status=201)


def make_app(config: Config, store: Store) -> web.Application:
    app = web.Application(middlewares=[errors_and_auth], client_max_size=config.api.max_body_bytes)
    app[CONFIG_KEY] = config
    app[STORE_KEY] = store
    app[TOKENS_KEY] = [(t.digest, t) for t in config.api.tokens]
    app[LIMITER_KEY] = RateLimiter(config.api.rate_limit_per_minute)
    r = app.router
    r.add_post("/extension/{extension_id}/event/", create)
    r.add_get("/extension/{extension_id}/event/", list_)
    r.add_delete("/extension/{extension_id}/event/", delete_all)
    r.add_get("/extension/{extension_id}/event/{sub_id}", get_one)
    r.add_put("/extension/{extension_id}/event/{sub_id}", put_one)
    r.add_delete("/extension/{extension_id}/event/{sub_id}", delete_one)
    r.add_get("/limit/", limits)
    r.add_get("/deliveries/", list_deliveries)
    r.add_post("/deliveries/retry", retry_deliveries)
    from bridge import control

    control.add_routes(app)
    add_docs(app)
    return app


def add_docs(app: web.Application) -> None:
    """/openapi.json, and the Swagger UI at /docs with its assets bundled (works offline)."""
    from swagger_ui import api_doc

    from bridge.openapi import openapi

    spec = openapi()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/openapi.json", openapi_json)
    api_doc(app, config=spec, url_prefix="/docs", title="ami-bridge API")
