"""Extension event subscriptions (Telphin's ``/extension/{id}/event/``), the subscription
limits (``/limit/``) and the view of deliveries: failed ones (``/deliveries/``), every
attempt, resending one delivery, recovering a subscription's failed ones, enabling a
disabled subscription again."""

from __future__ import annotations

import dataclasses
import time
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
    row_id,
)
from bridge.api.history import gmt, parse_time
from bridge.delivery.request import new_whsec, whsec_problem
from bridge.store import DELIVERY_STATES, Subscription

EVENT_TYPES = ("dial-in", "dial-out", "answer", "hangup", "voicemail", "message-in", "message-out")
METHODS = ("GET", "POST")
MAX_URL = 2048
#: the bridge's own optional fields of a subscription (Telphin's are url, event_type, method)
OPTIONS = ("secret", "rate_limit", "ordering", "max_in_flight")
ORDERINGS = ("strict", "parallel")
#: requests in flight of a parallel subscription without max_in_flight, and the most allowed
PARALLEL_DEFAULT, PARALLEL_MAX = 10, 100


def _sub_id(request: web.Request) -> int:
    raw = request.match_info["sub_id"]
    found = row_id(raw)
    if found is None:
        raise ApiError(404, "not_found", f"no subscription {raw!r}", "id")
    return found


def validate_subscription(data: dict[str, Any]) -> tuple[str, str, str]:
    """(url, event_type, method) from a request body, or ApiError naming the field."""
    unknown = sorted(set(data) - {"url", "event_type", "method", *OPTIONS})
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
    if any(ord(c) < 0x20 or c == "\x7f" for c in url):  # never a valid URL; PostgreSQL refuses a NUL
        raise ApiError(400, "invalid_request", "url must not contain control characters: percent-encode "
                       "them (a NUL is %00)", "url")  # fmt: skip
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as err:
        raise ApiError(400, "invalid_request", f"url is not a valid URL: {err}", "url") from err
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(400, "invalid_request", "url must be an absolute http:// or https:// URL", "url")
    return url, event_type, method


def validate_options(data: dict[str, Any], sub: Subscription, now: float, overlap: float) -> Subscription:
    """``sub`` with the bridge's optional fields the body gives (those it leaves out keep
    their values), or ApiError naming the field. A new ``secret`` replaces the one ``sub``
    has, which keeps signing for ``overlap`` seconds (a rotation)."""
    changes: dict[str, Any] = {}
    if "secret" in data:
        secret = data["secret"]
        if secret == "generate":
            secret = new_whsec()
        elif secret is not None and (not isinstance(secret, str) or not secret.startswith("whsec_")):
            raise ApiError(400, "invalid_request", 'secret must be "generate", a Standard Webhooks '
                           'secret "whsec_<base64>" or null (sign with the bridge\'s delivery.secret)',
                           "secret")  # fmt: skip
        elif secret is not None and (problem := whsec_problem(secret)):
            raise ApiError(400, "invalid_request", f"secret: {problem}", "secret")
        if secret is None:
            changes.update(secret=None, previous_secret=None, previous_until=0.0)
        elif secret != sub.secret:
            changes["secret"] = secret
            if sub.secret is not None:
                changes.update(previous_secret=sub.secret, previous_until=now + overlap)
    if "rate_limit" in data:
        rate = data["rate_limit"]
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0
                                 or rate > 1e6):  # fmt: skip
            raise ApiError(400, "invalid_request",
                           "rate_limit must be a number of requests per second above 0 (at most 1000000), "
                           "or null for no limit", "rate_limit")  # fmt: skip
        changes["rate_limit"] = None if rate is None else float(rate)
    ordering = data.get("ordering", sub.ordering)
    if ordering not in ORDERINGS:
        raise ApiError(400, "invalid_request", 'ordering must be "strict" (one request at a time, in '
                       'order) or "parallel" (up to max_in_flight at once, in any order)',
                       "ordering")  # fmt: skip
    changes["ordering"] = ordering
    if ordering == "strict":
        if data.get("max_in_flight", 1) != 1:
            raise ApiError(400, "invalid_request", "max_in_flight needs \"ordering\": \"parallel\" (strict "
                           "order sends one request at a time)", "max_in_flight")  # fmt: skip
        changes["max_in_flight"] = 1
    else:
        default = sub.max_in_flight if sub.ordering == "parallel" else PARALLEL_DEFAULT
        most = data.get("max_in_flight", default)
        if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= PARALLEL_MAX:
            why = f"max_in_flight must be an integer from 1 to {PARALLEL_MAX}"
            raise ApiError(400, "invalid_request", why, "max_in_flight")
        changes["max_in_flight"] = most
    return dataclasses.replace(sub, **changes)


def _with_secret(sub: Subscription, before: str | None) -> dict[str, object]:
    """The subscription as answered, with its secret when this request set one."""
    public = sub.public()
    if sub.secret is not None and sub.secret != before:
        public["secret"] = sub.secret
    return public


async def _guard(request: web.Request, url: str) -> None:
    from bridge.delivery.guard import check_host, parse_networks

    allow = parse_networks(request.app[CONFIG_KEY].delivery.allow_networks)
    why = await check_host(urlsplit(url).hostname or "", allow)
    if why:
        raise ApiError(400, "invalid_request", f"url refused: {why}; an operator can allow it with "
                       "delivery.allow_networks", "url")  # fmt: skip


async def create(request: web.Request) -> web.Response:
    ext_id = extension_id(request, cluster=True)
    data = await json_body(request)
    url, event_type, method = validate_subscription(data)
    overlap = request.app[CONFIG_KEY].delivery.secret_rotation_overlap
    options = validate_options(data, Subscription(0, ext_id, event_type, url, method), time.time(), overlap)
    store, api = request.app[STORE_KEY], request.app[CONFIG_KEY].api
    if store.count(ext_id) >= api.max_subscriptions_per_extension:
        raise ApiError(409, "limit_exceeded",
                       f"extension {ext_id} already has {api.max_subscriptions_per_extension} subscriptions "
                       "(the maximum, see GET /limit/)")  # fmt: skip
    if store.count() >= api.max_subscriptions_total:
        most = api.max_subscriptions_total
        raise ApiError(409, "limit_exceeded", f"the bridge already has {most} subscriptions (the maximum)")
    await _guard(request, url)
    sub = store.add_subscription(ext_id, event_type, url, method, secret=options.secret,
                                 rate_limit=options.rate_limit, ordering=options.ordering,
                                 max_in_flight=options.max_in_flight)  # fmt: skip
    return web.json_response(_with_secret(sub, None), status=201)


async def list_(request: web.Request) -> web.Response:
    ext_id = extension_id(request, cluster=True)
    return web.json_response([s.public() for s in request.app[STORE_KEY].subscriptions(ext_id)])


async def delete_all(request: web.Request) -> web.Response:
    ext_id = extension_id(request, cluster=True)
    request.app[STORE_KEY].delete_subscriptions(ext_id)
    return web.Response(status=204)


def _existing(request: web.Request) -> Subscription:
    ext_id = extension_id(request, cluster=True)
    sub_id = _sub_id(request)
    sub = request.app[STORE_KEY].subscription(ext_id, sub_id)
    if sub is None:
        raise ApiError(404, "not_found", f"extension {ext_id} has no subscription {sub_id}", "id")
    return sub


async def get_one(request: web.Request) -> web.Response:
    return web.json_response(_existing(request).public())


async def put_one(request: web.Request) -> web.Response:
    sub = _existing(request)
    data = await json_body(request)
    url, event_type, method = validate_subscription(data)
    overlap = request.app[CONFIG_KEY].delivery.secret_rotation_overlap
    changed = dataclasses.replace(sub, event_type=event_type, url=url, method=method, enabled=True)
    new = validate_options(data, changed, time.time(), overlap)
    await _guard(request, url)
    request.app[STORE_KEY].update_subscription(new)
    return web.json_response(_with_secret(new, sub.secret))


async def get_secret(request: web.Request) -> web.Response:
    """The subscription's own signing secret (null: it is signed with delivery.secret), and
    until when the one it replaced still signs."""
    sub = _existing(request)
    until = sub.previous_until if sub.previous_secret and sub.previous_until > time.time() else None
    return web.json_response({"secret": sub.secret, "previous_valid_until": until})


async def rotate_secret(request: web.Request) -> web.Response:
    """A new signing secret (given as {"secret": "whsec_..."}, or generated); the old one
    keeps signing for delivery.secret_rotation_overlap seconds."""
    sub = _existing(request)
    data = await json_body(request) if request.can_read_body else {}
    unknown = sorted(set(data) - {"secret"})
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field {unknown[0]!r}", unknown[0])
    if data.get("secret", "generate") is None:
        raise ApiError(400, "invalid_request", 'secret must be "generate" or "whsec_<base64>"', "secret")
    overlap = request.app[CONFIG_KEY].delivery.secret_rotation_overlap
    new = validate_options({"secret": data.get("secret", "generate")}, sub, time.time(), overlap)
    request.app[STORE_KEY].update_subscription(new)
    until = new.previous_until if new.previous_secret else None
    return web.json_response({"secret": new.secret, "previous_valid_until": until}, status=201)


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


# ---- issue 18: attempts, resend, recover, enable -----------------------------------------

#: the most attempts one list returns
MAX_ATTEMPTS_LISTED = 1000


def _wake(request: web.Request) -> None:
    dispatcher = request.app.get(DISPATCHER_KEY)
    if dispatcher is not None:
        dispatcher.wake()  # type: ignore[attr-defined]


def _attempt_json(row: dict[str, Any]) -> dict[str, Any]:
    body = row.pop("body")
    return {**row, "time": gmt(int(row["at"] * 1_000_000)),
            "response": bytes(body).decode("utf-8", "replace")}  # fmt: skip


def _delivery(request: web.Request) -> dict[str, Any]:
    """The ``{delivery_id}`` of the path: a delivery of a subscription the token covers."""
    raw = request.match_info["delivery_id"]
    delivery_id = row_id(raw)
    found = request.app[STORE_KEY].delivery(delivery_id) if delivery_id is not None else None
    if (
        found is None
        or found["extension_id"] is None
        or not request[PRINCIPAL_KEY].covers(found["extension_id"])
    ):
        raise ApiError(
            404, "not_found", f"no delivery {raw!r} (or its subscription was deleted)", "delivery_id"
        )
    return found


async def delivery_attempts(request: web.Request) -> web.Response:
    """Every attempt of one delivery, oldest first."""
    d = _delivery(request)
    rows = request.app[STORE_KEY].attempts(delivery_id=d["id"])
    return web.json_response([_attempt_json(r) for r in rows])


async def subscription_attempts(request: web.Request) -> web.Response:
    """A subscription's attempts since ``since`` (GMT time), newest first, at most ``limit``."""
    sub = _existing(request)
    q = request.query
    since = parse_time(q["since"], "since") / 1_000_000 if "since" in q else 0.0
    raw = q.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ATTEMPTS_LISTED:
        raise ApiError(
            400, "invalid_request", f"limit must be a number from 1 to {MAX_ATTEMPTS_LISTED}", "limit"
        )
    rows = request.app[STORE_KEY].attempts(subscription_id=sub.id, since=since, limit=int(raw))
    return web.json_response([_attempt_json(r) for r in rows])


async def resend(request: web.Request) -> web.Response:
    """Send a delivered or failed delivery again, as a new delivery of the same event
    (with the same idempotency key / webhook-id)."""
    d = _delivery(request)
    store = request.app[STORE_KEY]
    if d["state"] == "pending":
        raise ApiError(409, "conflict", f"delivery {d['id']} is still pending: it will be sent anyway")
    sub = store.subscription_by_id(d["subscription_id"])
    if sub is None or not sub.enabled:
        path = f"/extension/{d['extension_id']}/event/{d['subscription_id']}/enable"
        raise ApiError(409, "conflict", f"subscription {d['subscription_id']} is disabled: enable it first "
                       f"(POST {path})")  # fmt: skip
    new = store.resend(d["id"])
    if new is None:  # sent meanwhile, or pruned
        raise ApiError(409, "conflict", f"delivery {d['id']} cannot be resent now")
    _wake(request)
    return web.json_response({"id": new.id, "resent": d["id"], "idempotency_key": new.idempotency_key},
                             status=201)  # fmt: skip


async def recover(request: web.Request) -> web.Response:
    """Put back in the queue every failed delivery of the subscription whose event is not
    older than ``since`` (GMT time): {"since": "2026-12-04 09:30:00"}."""
    sub = _existing(request)
    data = await json_body(request)
    unknown = sorted(set(data) - {"since"})
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field {unknown[0]!r}", unknown[0])
    if not isinstance(data.get("since"), str):
        raise ApiError(
            400, "invalid_request", "since is required: a GMT time like 2026-12-04 09:30:00", "since"
        )
    since = parse_time(data["since"], "since")
    if not sub.enabled:
        raise ApiError(409, "conflict", f"subscription {sub.id} is disabled: enable it first "
                       f"(POST /extension/{sub.extension_id}/event/{sub.id}/enable)")  # fmt: skip
    n = request.app[STORE_KEY].recover(sub.id, since)
    if n:
        _wake(request)
    return web.json_response({"recovered": n}, status=201)


async def enable(request: web.Request) -> web.Response:
    """Enable a subscription disabled by a 410 or by ``delivery.disable_after``."""
    sub = _existing(request)
    request.app[STORE_KEY].enable_subscription(sub.extension_id, sub.id)
    dispatcher = request.app.get(DISPATCHER_KEY)
    if dispatcher is not None and not sub.enabled:
        dispatcher.enabled(sub)  # type: ignore[attr-defined]
    return web.json_response({**sub.public(), "enabled": True})


def add_routes(app: web.Application) -> None:
    route(app, "POST", "/extension/{extension_id}/event/", create)
    route(app, "GET", "/extension/{extension_id}/event/", list_)
    route(app, "DELETE", "/extension/{extension_id}/event/", delete_all)
    route(app, "GET", "/extension/{extension_id}/event/{sub_id}", get_one)
    route(app, "PUT", "/extension/{extension_id}/event/{sub_id}", put_one)
    route(app, "DELETE", "/extension/{extension_id}/event/{sub_id}", delete_one)
    route(app, "GET", "/extension/{extension_id}/event/{sub_id}/secret", get_secret)
    route(app, "POST", "/extension/{extension_id}/event/{sub_id}/secret/rotate", rotate_secret)
    route(app, "GET", "/limit/", limits)
    app.router.add_get("/deliveries/", list_deliveries)
    app.router.add_post("/deliveries/retry", retry_deliveries)
    route(app, "POST", "/extension/{extension_id}/event/{sub_id}/enable", enable)
    route(app, "GET", "/extension/{extension_id}/event/{sub_id}/attempts/", subscription_attempts)
    route(app, "POST", "/extension/{extension_id}/event/{sub_id}/recover", recover)
    app.router.add_get("/deliveries/{delivery_id}/attempts/", delivery_attempts)
    app.router.add_post("/deliveries/{delivery_id}/resend", resend)
