"""The REST API's frame: the aiohttp application, its rate limits and its error answers.

Each resource module (``auth``, ``subscriptions``, ``control``...) adds its routes with
:func:`bridge.api.common.route`, which serves every path both bare and under
``/api/ver1.0/`` (where Telphin's clients call it). Requests under ``/extension/``,
``/limit``, ``/deliveries``, ``/calls/`` and ``/api/`` carry ``Authorization: Bearer
<token>`` (see ``auth``); a token may be limited to some extensions.

REST conventions are Telphin's: 201 on a successful POST, 204 (no body) on DELETE, 200
on GET/PUT. Every error is JSON, never a bare 500: ``{"status": code, "message": text,
"error": code, "field": name?, "detail": text?}``; ``status`` is the machine-readable
code Telphin's clients read (``access_denied``, ``not_found``, ``rate_limit_exceeded``...),
``error`` the bridge's own older code (kept for existing tooling); a 401 says
``"message": "Unauthorized"`` with the reason in ``detail``.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable

from aiohttp import web

from bridge.api.auth import authenticate
from bridge.api.common import CONFIG_KEY, PRINCIPAL_KEY, STORE_KEY, ApiError, Handler
from bridge.config import Config, token_digest
from bridge.store import Store, StoreError

log = logging.getLogger(__name__)

#: paths that need a bearer token
PROTECTED = ("/extension/", "/limit", "/deliveries", "/calls/", "/client/", "/user/", "/api/")
#: paths that are rate limited (without a token: per client address)
LIMITED = (*PROTECTED, "/oauth/")


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
        if request.path.startswith(LIMITED):
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
        if request.path.startswith(PROTECTED):
            request[PRINCIPAL_KEY] = authenticate(request)
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


def make_app(config: Config, store: Store) -> web.Application:
    from bridge.api import auth, control, current_calls, extensions, history, recordings, subscriptions

    app = web.Application(middlewares=[errors_and_auth], client_max_size=config.api.max_body_bytes)
    app[CONFIG_KEY] = config
    app[STORE_KEY] = store
    app[LIMITER_KEY] = RateLimiter(config.api.rate_limit_per_minute)
    auth.setup(app, config)
    subscriptions.add_routes(app)
    extensions.add_routes(app)
    history.add_routes(app)
    recordings.add_routes(app)
    current_calls.add_routes(app)
    control.add_routes(app)
    add_docs(app)
    return app


def reconfigure(app: web.Application, config: Config) -> None:
    """A reload: the API answers with the new configuration from the next request on
    (extensions, tokens and clients, rate limit, public_url, recordings, callback...).
    Tokens issued to a client no longer configured stop working; each rate-limit bucket
    keeps what is left of it, capped at the new limit. ``listen`` and ``max_body_bytes``
    are fixed at start (the caller says they need a restart).

    aiohttp warns when a running application's state changes (it cannot know whether a
    handler would see a half-made change); each value here is replaced whole, between
    two requests' steps, on the event loop's thread: the warning is silenced for that.
    """
    reconfigure_management(app, config)
    limiter = app[LIMITER_KEY]
    limiter.capacity, limiter.rate = (
        float(config.api.rate_limit_per_minute),
        config.api.rate_limit_per_minute / 60,
    )


def reconfigure_management(app: web.Application, config: Config) -> None:
    """A reload, for any listener that checks tokens (the management listener's console
    too): the new configuration, tokens and clients, each replaced whole."""
    from bridge.api import auth

    tokens, clients = auth.index(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app[CONFIG_KEY] = config
        app[auth.TOKENS_KEY] = tokens
        app[auth.CLIENTS_KEY] = clients


def add_docs(app: web.Application) -> None:
    """/openapi.json, and the Swagger UI at /docs with its assets bundled (works offline)."""
    from swagger_ui import api_doc

    from bridge.api.openapi import openapi

    spec = openapi()

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/openapi.json", openapi_json)
    api_doc(app, config=spec, url_prefix="/docs", title="ami-bridge API")
