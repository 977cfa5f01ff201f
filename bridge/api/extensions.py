"""The extensions a token may see, as Telphin lists them: ``GET /client/{client_id}/extension/``
(filters ``name``, ``type``, ``status``; ``page``/``per_page``) and one of them by id.

``{client_id}`` is ``@me`` or the token's own client id (``GET /user/`` says which); an
extension's ``name`` is its extended number ``client*short``, the form events use.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.api.common import CONFIG_KEY, PRINCIPAL_KEY, STORE_KEY, ApiError, extension_id, route
from bridge.config import Config, Extension


def client_of(request: web.Request) -> str:
    """The ``{client_id}`` of the path: ``@me`` or the token's own client."""
    raw = request.match_info["client_id"]
    mine = request[PRINCIPAL_KEY].client_id
    if raw not in ("@me", mine):
        raise ApiError(404, "client_not_found", f"no client {raw!r}: use @me or {mine!r}", "client_id")
    return mine


def public(ext: Extension, client_id: str) -> dict[str, Any]:
    """An extension as Telphin's extension list shows it, plus what the bridge knows of it."""
    domain = ext.name.split("@", 1)[1] if "@" in ext.name else None
    out: dict[str, Any] = {
        "id": ext.id, "name": ext.extended, "type": ext.type, "status": "active",
        "label": ext.label or "", "domain": domain, "client_id": client_id, "extension_group_id": None,
        "full_name": ext.name,
    }  # fmt: skip
    for key in ("endpoint", "mailbox", "queue", "context"):
        value = getattr(ext, key)
        if value is not None:
            out[key] = value
    return out


def registry_entries(config: Config) -> dict[int, dict[str, Any]]:
    """What the cluster's registry keeps of each configured extension (issue 19): what the
    API lists of it, but its client."""
    return {e.id: {k: v for k, v in public(e, "").items() if k != "client_id"} for e in config.extensions}


def _positive(request: web.Request, name: str, default: int, most: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise ApiError(400, "invalid_request", f"{name} must be a whole number from 1 to {most}", name)
    return int(raw)


async def list_extensions(request: web.Request) -> web.Response:
    client_id = client_of(request)
    principal = request[PRINCIPAL_KEY]
    q = request.query
    name, kind, status = q.get("name"), q.get("type"), q.get("status")
    if kind is not None and kind not in ("phone", "queue", "ivr"):
        raise ApiError(400, "invalid_request", "type must be phone, queue or ivr", "type")
    page = _positive(request, "page", 1, 1_000_000)
    per_page = _positive(request, "per_page", 1000, 1000)
    config = request.app[CONFIG_KEY]
    found = [
        public(e, client_id) for e in config.extensions
        if principal.covers(e.id) and (name is None or name in (e.extended, e.name))
        and (kind is None or e.type == kind) and status in (None, "active")
    ]  # fmt: skip
    registry = request.app[STORE_KEY].registered_extensions()
    if registry:  # a cluster (issue 19): every server's extensions, each saying which
        found = [{**e, "server": config.ami.name} for e in found]
        found += [
            {**info, "client_id": client_id, "server": server} for ext_id, (server, info) in registry.items()
            if config.extension(ext_id) is None and principal.covers(ext_id)
            and (name is None or name in (info.get("name"), info.get("full_name")))
            and (kind is None or info.get("type") == kind) and status in (None, "active")
        ]  # fmt: skip
        found.sort(key=lambda e: int(e["id"]))
    start = (page - 1) * per_page
    return web.json_response(found[start : start + per_page])


def _one(request: web.Request, client_id: str) -> dict[str, Any]:
    """One extension: configured here, or (a cluster) registered by another server."""
    ext_id = extension_id(request, cluster=True)
    config = request.app[CONFIG_KEY]
    ext = config.extension(ext_id)
    registry = request.app[STORE_KEY].registered_extensions()
    if ext is not None:
        return {**public(ext, client_id), "server": config.ami.name} if registry else public(ext, client_id)
    server, info = registry[ext_id]  # extension_id() found it there
    return {**info, "client_id": client_id, "server": server}


async def one_of_client(request: web.Request) -> web.Response:
    return web.json_response(_one(request, client_of(request)))


async def one(request: web.Request) -> web.Response:
    return web.json_response(_one(request, request[PRINCIPAL_KEY].client_id))


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/client/{client_id}/extension/", list_extensions)
    for path in (
        "/client/{client_id}/extension/{extension_id}",
        "/client/{client_id}/extension/{extension_id}/",
    ):
        route(app, "GET", path, one_of_client)
    route(app, "GET", "/extension/{extension_id}/", one)
