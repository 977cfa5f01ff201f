"""The REST API's frame: the aiohttp application, authentication, rate limits and errors.

Each resource module (``subscriptions``, ``control``...) adds its routes with
:func:`route`, which serves every path both bare and under ``/api/ver1.0/`` (where
Telphin's clients call it). Requests under ``/extension/``, ``/limit``, ``/deliveries``,
``/calls/`` and ``/api/`` carry ``Authorization: Bearer <token>``; a token may be limited
to some extensions.

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

from aiohttp import web

from bridge.config import ApiToken, Config, token_digest
from bridge.store import Store, StoreError

log = logging.getLogger(__name__)

#: where Telphin's API lives; every resource is served there and at its bare path
PREFIX = "/api/ver1.0"
#: paths that need a bearer token
PROTECTED = ("/extension/", "/limit", "/deliveries", "/calls/", "/api/")

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
        if request.path.startswith(PROTECTED):
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


def route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Serve ``handler`` at ``path`` and at ``/api/ver1.0`` + ``path``."""
    for prefix in ("", PREFIX):
        app.router.add_route(method, prefix + path, handler)


def make_app(config: Config, store: Store) -> web.Application:
    from bridge.api import control, subscriptions

    app = web.Application(middlewares=[errors_and_auth], client_max_size=config.api.max_body_bytes)
    app[CONFIG_KEY] = config
    app[STORE_KEY] = store
    app[TOKENS_KEY] = [(t.digest, t) for t in config.api.tokens]
    app[LIMITER_KEY] = RateLimiter(config.api.rate_limit_per_minute)
    subscriptions.add_routes(app)
    control.add_routes(app)
    add_docs(app)
    return app


def add_docs(app: web.Application) -> None:
    """/openapi.json, and the Swagger UI at /docs with its assets bundled (works offline)."""
    from swagger_ui import api_doc

    from bridge.api.openapi import openapi

    spec = openapi()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/openapi.json", openapi_json)
    api_doc(app, config=spec, url_prefix="/docs", title="ami-bridge API")
