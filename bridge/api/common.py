"""What every resource module of the REST API uses: the application's keys, the error
answer, who a request acts as (:class:`Principal`), reading ids and bodies, and
:func:`route`, which serves a path both bare and under ``/api/ver1.0/``."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge.config import Config
from bridge.store import Store

#: where Telphin's API lives; every resource is served there and at its bare path
PREFIX = "/api/ver1.0"

CONFIG_KEY = web.AppKey("config", Config)
STORE_KEY = web.AppKey("store", Store)
DISPATCHER_KEY = web.AppKey("dispatcher", object)
#: the wall clock (unix seconds) token expiry is measured with; tests move it
CLOCK_KEY: web.AppKey[Callable[[], float]] = web.AppKey("clock")

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


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: a static token of the config or an OAuth client's token."""

    client_id: str
    #: the extensions it may see and act on; None: all of them
    extensions: frozenset[int] | None
    #: "static" (api.tokens) or "oauth" (issued by POST /oauth/token)
    kind: str
    #: unix seconds; None for static tokens
    expires_at: float | None = None

    def covers(self, extension_id: int) -> bool:
        return self.extensions is None or extension_id in self.extensions


PRINCIPAL_KEY = web.RequestKey("principal", Principal)


def now(request: web.Request) -> float:
    """The wall clock of the application (unix seconds)."""
    return request.app.get(CLOCK_KEY, time.time)()


def row_id(raw: str) -> int | None:
    """A path's numeric id (a subscription's, a delivery's): ASCII digits that fit the
    store's integers; None for anything else (then: 404)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return int(raw)


def extension_id(request: web.Request, cluster: bool = False) -> int:
    """The ``{extension_id}`` of the path: a configured extension the request may act on
    (``cluster``: or one another server of the cluster registered, issue 19)."""
    raw = request.match_info["extension_id"]
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(404, "not_found", f"no extension {raw!r}", "extension_id")
    if request.app[CONFIG_KEY].extension(int(raw)) is None and not (
        cluster and len(raw) <= 18 and int(raw) in request.app[STORE_KEY].registered_extensions()
    ):
        raise ApiError(404, "not_found", f"no extension {raw!r}", "extension_id")
    ext_id = int(raw)
    if not request[PRINCIPAL_KEY].covers(ext_id):
        raise ApiError(403, "forbidden", f"this token does not cover extension {ext_id}", "extension_id")
    return ext_id


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object."""
    ctype = request.content_type
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", f"send application/json, not {ctype or 'nothing'}")
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    return data


def route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Serve ``handler`` at ``path`` and at ``/api/ver1.0`` + ``path``."""
    for prefix in ("", PREFIX):
        app.router.add_route(method, prefix + path, handler)
