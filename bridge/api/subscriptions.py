"""Extension event subscriptions (Telphin's ``/extension/{id}/event/``), the subscription
limits (``/limit/``) and the operator's view of failed deliveries (``/deliveries/``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bridge.api.common import (
    CONFIG_KEY,
    DISPATCHER_KEY,
    PRINCIPAL_KEY,
    STORE_KEY,
    ApiError,
    extension_id,
    json_body,
    route,
)
from bridge.store import DELIVERY_STATES, Subscription

EVENT_TYPES = ("dial-in", "dial-out", "answer", "hangup", "voicemail", "message-in", "message-out")
METHODS = ("GET", "POST")
MAX_URL = 2048


def _sub_id(request: web.Request) -> int:
    raw = request.match_info["sub_id"]
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(404, "not_found", f"no subscription {raw!r}", "id")
    return int(raw)


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
    ext_id = extension_id(request)
    url, event_type, method = validate_subscription(await json_body(request))
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
    ext_id = extension_id(request)
    return web.json_response([s.public() for s in request.app[STORE_KEY].subscriptions(ext_id)])


async def delete_all(request: web.Request) -> web.Response:
    ext_id = extension_id(request)
    request.app[STORE_KEY].delete_subscriptions(ext_id)
    return web.Response(status=204)


def _existing(request: web.Request) -> Subscription:
    ext_id = extension_id(request)
    sub_id = _sub_id(request)
    sub = request.app[STORE_KEY].subscription(ext_id, sub_id)
    if sub is None:
        raise ApiError(404, "not_found", f"extension {ext_id} has no subscription {sub_id}", "id")
    return sub


async def get_one(request: web.Request) -> web.Response:
    return web.json_response(_existing(request).public())


async def put_one(request: web.Request) -> web.Response:
    sub = _existing(request)
    url, event_type, method = validate_subscription(await json_body(request))
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
    principal = request[PRINCIPAL_KEY]
    ids = [e.id for e in config.extensions if principal.covers(e.id)]
    return web.json_response({
        "event_subscriptions": {
            "max_per_extension": config.api.max_subscriptions_per_extension,
            "max_total": config.api.max_subscriptions_total,
            "used_total": store.count(),
            "used_by_extension": {str(i): store.count(i) for i in ids},
        }
    })  # fmt: skip


def _admin(request: web.Request) -> None:
    if request[PRINCIPAL_KEY].extensions is not None:
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
        data = await json_body(request)
        raw = data.get("ids")
        if raw is not None and (not isinstance(raw, list) or not all(isinstance(i, int) for i in raw)):
            raise ApiError(400, "invalid_request", "ids must be a list of delivery ids", "ids")
        ids = raw
    n = request.app[STORE_KEY].retry_failed(ids)
    dispatcher = request.app.get(DISPATCHER_KEY)
    if dispatcher is not None:
        dispatcher.wake()  # type: ignore[attr-defined]
    return web.json_response({"retried": n}, status=201)


def add_routes(app: web.Application) -> None:
    route(app, "POST", "/extension/{extension_id}/event/", create)
    route(app, "GET", "/extension/{extension_id}/event/", list_)
    route(app, "DELETE", "/extension/{extension_id}/event/", delete_all)
    route(app, "GET", "/extension/{extension_id}/event/{sub_id}", get_one)
    route(app, "PUT", "/extension/{extension_id}/event/{sub_id}", put_one)
    route(app, "DELETE", "/extension/{extension_id}/event/{sub_id}", delete_one)
    route(app, "GET", "/limit/", limits)
    app.router.add_get("/deliveries/", list_deliveries)
    app.router.add_post("/deliveries/retry", retry_deliveries)
