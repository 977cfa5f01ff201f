"""The console's pages and JSON at ``/dashboard``, with or without a login.

On the management listener (``management.listen``, loopback by default) the console
needs no login unless ``management.login`` asks for one; on the API's listener it
always does (``api.console``). A login trades an API token, or an OAuth client's id and
secret, for a session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS, expiring
with ``management.session_ttl`` or the token); what the console shows is then scoped
to that token's extensions. Every action (resend, logout) is a POST carrying the
session's CSRF token in ``X-CSRF-Token``, from the console's own origin.

A listener on loopback answers only requests whose ``Host`` is a loopback name: a web
page cannot reach it by DNS rebinding.

Paths: ``GET /dashboard`` (the console, or the login page), ``/dashboard/app.js``,
``/dashboard/app.css``, ``/dashboard/login.js``, ``/dashboard/vendor/...`` (uPlot),
``POST /dashboard/login``, ``POST /dashboard/logout``, ``GET /dashboard/me`` (who, and
the CSRF token), ``GET /dashboard/state`` and
``/dashboard/stream`` (calls and events, see :mod:`bridge.hub`), ``GET
/dashboard/deliveries`` (health per subscription, failed deliveries), ``POST
/dashboard/deliveries/{id}/resend``, ``GET /dashboard/series`` (the charts' data).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge.api.auth import TOKENS_KEY, client_principal, configured_client, token_principal
from bridge.api.common import ApiError, Handler, Principal, row_id
from bridge.config import token_digest
from bridge.console.health import DeliveryHealth
from bridge.console.sessions import Session, Sessions
from bridge.console.timeline import Timeline
from bridge.hub import SCOPE_KEY, STATIC, EventHub
from bridge.hub import add_routes as add_hub_routes
from bridge.store import Store

log = logging.getLogger(__name__)

COOKIE = "ami_bridge_console"
#: failed deliveries the console lists at most
FAILED_SHOWN = 200


@dataclass
class Console:
    """What the console shows, shared by the listeners that serve it."""

    hub: EventHub
    store: Store
    timeline: Timeline = field(default_factory=Timeline)
    health: DeliveryHealth = field(default_factory=DeliveryHealth)
    sessions: Sessions = field(default_factory=Sessions)
    session_ttl: float = 8 * 3600
    #: called after a resend, so the dispatcher sends it now
    wake: Callable[[], None] | None = None
    clock: Callable[[], float] = time.time
    #: the CSRF token of a console without login (one per process)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))


@dataclass(frozen=True, slots=True)
class _Mode:
    login: bool
    #: Host names a loopback listener answers to (None: any)
    hosts: frozenset[str] | None


CONSOLE_KEY = web.AppKey("console", Console)
_MODE_KEY = web.AppKey("console_mode", _Mode)
SESSION_KEY = web.RequestKey("console_session", object)
#: the console without login acts as this (every extension)
OPERATOR = Principal("operator", None, "console")

_PUBLIC = {
    "/dashboard/login.js": ("login.js", "text/javascript"),
    "/dashboard/vendor/uPlot.iife.min.js": ("vendor/uPlot.iife.min.js", "text/javascript"),
    "/dashboard/vendor/uPlot.min.css": ("vendor/uPlot.min.css", "text/css"),
}
#: what anyone may fetch: the login itself, and code and style without any data
_OPEN = frozenset({"/dashboard/login", "/dashboard/app.js", "/dashboard/app.css"})
#: the security headers of every console answer: no framing, no other origin's scripts
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def loopback_hosts(host: str) -> frozenset[str] | None:
    """The ``Host`` names (without the port) a listener on ``host`` accepts: loopback
    names when it is on loopback (DNS rebinding cannot then point a web page at it), any
    name otherwise."""
    try:
        if not ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        if host != "localhost":
            return None
    return frozenset({"127.0.0.1", "localhost", "[::1]"})


def _host_name(host: str) -> str:
    """``Host`` without its port: ``127.0.0.1:8081`` -> ``127.0.0.1``, ``[::1]:8081`` -> ``[::1]``."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _file(name: str, content_type: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        path = STATIC / name
        try:
            body = path.read_bytes()
        except OSError:
            return web.Response(status=404, text=f"{name} is missing: run scripts/fetch-assets and reinstall")
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_HEADERS)

    return handler


def _session(request: web.Request) -> Session | None:
    console = request.app[CONSOLE_KEY]
    return console.sessions.get(request.cookies.get(COOKIE), console.clock())


def _still_configured(app: web.Application, session: Session) -> bool:
    """Whether the token or client a session was opened with is still in the configuration."""
    principal = session.principal
    if principal.kind == "oauth":
        client = configured_client(app, principal.client_id)
        return client is not None and principal.extensions == (
            None if client.extensions is None else frozenset(client.extensions)
        )
    return any(d == session.token_digest and p == principal for d, p in app[TOKENS_KEY])


def _error(status: int, code: str, message: str) -> web.Response:
    resp = ApiError(status, code, message).response()
    resp.headers.update(_HEADERS)
    return resp


@web.middleware
async def console_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host check on loopback listeners; the login, scope and CSRF checks of /dashboard."""
    mode = request.app[_MODE_KEY]
    if mode.hosts is not None and _host_name(request.host.lower()) not in mode.hosts:
        return web.Response(status=421, text="this listener answers to loopback names only "
                            "(http://127.0.0.1:<port>/): check management.listen")  # fmt: skip
    path = request.path
    if path != "/dashboard" and not path.startswith("/dashboard/"):
        return await handler(request)
    if path in _PUBLIC or path in _OPEN:
        return await handler(request)
    console = request.app[CONSOLE_KEY]
    if mode.login:
        session = _session(request)
        if session is not None and not _still_configured(request.app, session):
            console.sessions.close(request.cookies.get(COOKIE))  # a reload removed its token or client
            session = None
        if session is None:
            if path == "/dashboard" and request.method == "GET":
                return await _file("login.html", "text/html")(request)
            return _error(401, "unauthorized", "log in at /dashboard first (the session has ended)")
        principal, csrf = session.principal, session.csrf
    else:
        principal, csrf = OPERATOR, console.csrf
    if request.method == "POST":
        given = request.headers.get("X-CSRF-Token", "")
        origin = request.headers.get("Origin")
        if not hmac.compare_digest(csrf.encode(), given.encode()) or (
            origin is not None and origin.split("://", 1)[-1].lower() != request.host.lower()
        ):
            return _error(403, "forbidden", "missing or wrong X-CSRF-Token (reload the console)")
    request[SCOPE_KEY] = principal
    response = await handler(request)
    response.headers.update({k: v for k, v in _HEADERS.items() if k not in response.headers})
    return response


async def _login(request: web.Request) -> web.Response:
    """A form with ``token``, or ``client_id`` and ``client_secret``: a session cookie."""
    console, mode = request.app[CONSOLE_KEY], request.app[_MODE_KEY]
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1].lower() != request.host.lower():
        return _error(403, "forbidden", "log in from the console's own page")
    if not mode.login:
        return _error(404, "not_found", "this console needs no login (management.login is off)")
    try:
        form = await request.post()
    except (ValueError, UnicodeDecodeError):
        return _error(400, "invalid_request", "send a form: token, or client_id and client_secret")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    now = console.clock()
    try:
        if fields.get("token"):
            principal = token_principal(request.app, fields["token"].strip(), now)
        elif fields.get("client_id") and fields.get("client_secret"):
            principal = client_principal(request.app, fields["client_id"], fields["client_secret"])
        else:
            return _error(400, "invalid_request", "give a token, or a client_id and its client_secret")
    except ApiError as err:
        log.info("console login refused from %s: %s", request.remote, err.message)
        return _error(401, "unauthorized", err.message)
    digest = token_digest(fields["token"].strip()) if principal.kind == "static" else None
    session_id, session = console.sessions.open(principal, now, console.session_ttl, digest)
    resp = web.json_response({"client_id": principal.client_id, "expires_at": session.expires_at},
                             headers=_HEADERS)  # fmt: skip
    resp.set_cookie(COOKIE, session_id, max_age=max(1, int(session.expires_at - now)), path="/dashboard",
                    httponly=True, samesite="Strict", secure=request.secure)  # fmt: skip
    log.info("console login: %s from %s", principal.client_id, request.remote)
    return resp


async def _logout(request: web.Request) -> web.Response:
    request.app[CONSOLE_KEY].sessions.close(request.cookies.get(COOKIE))
    resp = web.json_response({"logged_out": True})
    resp.del_cookie(COOKIE, path="/dashboard")
    return resp


def _scope(request: web.Request) -> Principal:
    principal = request[SCOPE_KEY]
    assert isinstance(principal, Principal)
    return principal


async def _me(request: web.Request) -> web.Response:
    """Who the console is for, and the CSRF token its actions send."""
    mode, principal = request.app[_MODE_KEY], _scope(request)
    session = _session(request) if mode.login else None
    csrf = session.csrf if session is not None else request.app[CONSOLE_KEY].csrf
    exts = None if principal.extensions is None else sorted(principal.extensions)
    return web.json_response({"client_id": principal.client_id, "extensions": exts, "csrf": csrf,
                              "login": mode.login,
                              "expires_at": None if session is None else session.expires_at})  # fmt: skip


async def _deliveries(request: web.Request) -> web.Response:
    """Every subscription in scope with its health, and the newest failed deliveries."""
    console, principal = request.app[CONSOLE_KEY], _scope(request)
    now = console.clock()
    counts = console.store.delivery_counts()
    reasons = console.store.disabled_reasons()
    subs = []
    for sub in console.store.all_subscriptions():
        if not principal.covers(sub.extension_id):
            continue
        pending, failed = counts.get(sub.id, (0, 0))
        health = console.health.view(sub.id, now)
        if not sub.enabled:
            state = "disabled"
        elif health["failing_since"] is not None:
            state = "failing"
        elif pending:
            state = "sending"
        else:
            state = "ok"
        subs.append({**sub.public(), "extension_id": sub.extension_id, "state": state,
                     "disabled_reason": reasons.get(sub.id), "pending": pending, "failed": failed,
                     **health})  # fmt: skip
    failed_list = console.store.failed_deliveries(principal.extensions, FAILED_SHOWN)
    return web.json_response({"now": now, "subscriptions": subs, "failed": failed_list})


async def _resend(request: web.Request) -> web.Response:
    console, principal = request.app[CONSOLE_KEY], _scope(request)
    raw = request.match_info["delivery_id"]
    delivery_id = row_id(raw)
    ext = console.store.delivery_extension(delivery_id) if delivery_id is not None else None
    if ext is None or not principal.covers(ext):
        return _error(404, "not_found", f"no delivery {raw!r}")
    assert delivery_id is not None
    n = console.store.retry_failed([delivery_id])
    if n == 0:
        return _error(409, "not_failed", f"delivery {raw} is not failed (already sent or queued)")
    if console.wake is not None:
        console.wake()
    log.info("console: delivery %s resent by %s", raw, principal.client_id)
    return web.json_response({"resent": delivery_id})


async def _series(request: web.Request) -> web.Response:
    console = request.app[CONSOLE_KEY]
    raw = request.query.get("minutes", "180")
    minutes = int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) <= 10_000 else 180
    principal = _scope(request)
    data: dict[str, Any] = console.timeline.series(console.clock(), minutes)
    if principal.extensions is not None:
        # the bridge-wide counts are the operator's; a client sees the AMI link only
        data = {k: data[k] for k in ("t", "reconnects", "ami_up")}
    return web.json_response(data)


def add_console(app: web.Application, console: Console, login: bool, hosts: frozenset[str] | None) -> None:
    """Serve the console on ``app``: with ``login``, only to a logged-in session."""
    app[CONSOLE_KEY] = console
    app[_MODE_KEY] = _Mode(login, hosts)
    app.middlewares.append(console_guard)
    add_hub_routes(app, console.hub)
    for path, (name, ctype) in _PUBLIC.items():
        app.router.add_get(path, _file(name, ctype))
    app.router.add_post("/dashboard/login", _login)
    app.router.add_post("/dashboard/logout", _logout)
    app.router.add_get("/dashboard/me", _me)
    app.router.add_get("/dashboard/deliveries", _deliveries)
    app.router.add_post("/dashboard/deliveries/{delivery_id}/resend", _resend)
    app.router.add_get("/dashboard/series", _series)


def guard_hosts(app: web.Application, hosts: frozenset[str] | None) -> None:
    """The loopback Host check alone, for a listener without the console."""
    app[_MODE_KEY] = _Mode(False, hosts)
    app.middlewares.append(console_guard)
