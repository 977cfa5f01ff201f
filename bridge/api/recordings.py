"""Recordings as Telphin's clients fetch them: the events' ``RecID`` is a ``record_uuid``.

* ``GET /extension/{id}/record/`` and ``GET /client/{client_id|@me}/record/``: the complete
  recordings (``start_datetime``, ``end_datetime``, ``order``, ``page``, ``per_page``);
* ``GET .../record/{record_uuid}/storage_url/``: ``{record_url}``, a link the bridge
  serves itself, signed and expiring (``recordings.link_ttl``), which needs no token: a
  consumer downloads it with a plain GET (``Content-Type``, ``Content-Disposition`` with
  the file's name, ``Range`` requests);
* ``GET .../record/{record_uuid}`` (with a token): the file itself;
* ``DELETE .../record/{record_uuid}``: forget it (and delete its file once no other
  recording names it).

A recording still being made (its MixMonitor channel still up) is not offered yet: 409
``record_not_ready``. Files are served only from inside ``recordings.dirs``
(:mod:`bridge.recordings`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bridge.api.common import CONFIG_KEY, PRINCIPAL_KEY, STORE_KEY, ApiError, extension_id, now, route
from bridge.api.extensions import client_of
from bridge.api.history import RESULTS, gmt, seconds, window
from bridge.recordings import NotServable, content_type, locate
from bridge.store import StoredRecord

#: what a record id looks like (``<extension id>-<32 hex>``): anything else is no record
RECORD_UUID = re.compile(r"^[0-9]{1,18}-[0-9a-fA-F]{32}$")
#: the key the links are signed with, kept in the store (shared by restarts and processes)
LINK_KEY = "record-links"


def _record(request: web.Request, ext_id: int | None = None) -> StoredRecord:
    """The record the path names, if the token may see it (and it is ``ext_id``'s)."""
    raw = request.match_info["record_uuid"]
    found = request.app[STORE_KEY].record(raw.lower()) if RECORD_UUID.match(raw) else None
    if found is None or (ext_id is not None and found.extension_id != ext_id):
        raise ApiError(404, "not_found", f"no record {raw!r}", "record_uuid")
    if not request[PRINCIPAL_KEY].covers(found.extension_id):
        raise ApiError(
            403, "forbidden", f"this token does not cover extension {found.extension_id}", "record_uuid"
        )
    return found


def _file(request: web.Request, record: StoredRecord) -> Path:
    """The record's file on this machine, complete and inside ``recordings.dirs``."""
    if record.channel is not None:
        raise ApiError(409, "record_not_ready", "the recording is still being made (its call goes on); ask "
                       "again once the call has ended")  # fmt: skip
    try:
        return locate(record.kind, record.name, record.path, request.app[CONFIG_KEY].recordings)
    except NotServable as why:
        raise ApiError(404, "record_file_not_found", str(why), "record_uuid") from why


def public(request: web.Request, record: StoredRecord) -> dict[str, Any]:
    """A recording as Telphin's record list shows it."""
    e = record.event
    config = request.app[CONFIG_KEY]
    ext = config.extension(record.extension_id)
    hangup = e.get("EventTime", record.event_time)
    talk = e.get("Duration", 0) if e.get("CallStatus") == "ANSWER" or record.kind == "voicemail" else 0
    size, file_name = None, None
    if record.channel is None:
        try:
            path = locate(record.kind, record.name, record.path, config.recordings)
            size, file_name = path.stat().st_size, path.name
        except (NotServable, OSError):
            pass
    return {
        "record_uuid": record.record_uuid, "call_uuid": record.call_id, "sub_call_id": e.get("SubCallID"),
        "kind": record.kind, "flow": e.get("CallFlow"), "init_time_gmt": gmt(record.call_init_time),
        "start_time_gmt": gmt(hangup - talk), "hangup_time_gmt": gmt(hangup), "duration": seconds(talk),
        "extension_id": record.extension_id, "extension_name": ext.name if ext else None,
        "extension_type": ext.type if ext else None, "client_owner_id": request[PRINCIPAL_KEY].client_id,
        "result": "voicemail" if record.kind == "voicemail" else RESULTS.get(e.get("CallStatus", "")),
        "from_username": e.get("CallerIDNum"), "from_screen_name": e.get("CallerIDName"),
        "to_username": e.get("CalledNumber"), "dest_number": e.get("CalledNumber"),
        "did_number": e.get("CalledDID"), "record_file_size": size, "file_name": file_name,
    }  # fmt: skip


def _signature(key: bytes, record_uuid: str, expires: int) -> str:
    return hmac.new(key, f"{record_uuid}:{expires}".encode(), hashlib.sha256).hexdigest()


async def _list(request: web.Request, extensions: set[int] | None) -> web.Response:
    start, end, newest_first, per_page, offset = window(request)
    found = request.app[STORE_KEY].records(extensions, start, end, newest_first, per_page, offset)
    return web.json_response([public(request, r) for r in found])


async def list_of_extension(request: web.Request) -> web.Response:
    return await _list(request, {extension_id(request)})


async def list_of_client(request: web.Request) -> web.Response:
    client_of(request)
    principal = request[PRINCIPAL_KEY]
    return await _list(request, None if principal.extensions is None else set(principal.extensions))


def _scoped(request: web.Request) -> StoredRecord:
    if "extension_id" in request.match_info:
        return _record(request, extension_id(request))
    client_of(request)
    return _record(request)


async def storage_url(request: web.Request) -> web.Response:
    """``{record_url}``: a link to the file that works without a token until it expires."""
    record = _scoped(request)
    path = _file(request, record)
    config = request.app[CONFIG_KEY]
    expires = int(now(request)) + config.recordings.link_ttl
    signature = _signature(request.app[STORE_KEY].secret(LINK_KEY), record.record_uuid, expires)
    base = config.api.public_url or str(request.url.origin())
    url = f"{base}/records/{record.record_uuid}/{quote(path.name)}?expires={expires}&signature={signature}"
    return web.json_response({"record_url": url, "expires_in": config.recordings.link_ttl})


def _send(path: Path) -> web.FileResponse:
    name = path.name.replace('"', "")
    headers = {"Content-Type": content_type(path), "Content-Disposition": f'attachment; filename="{name}"'}
    return web.FileResponse(path, headers=headers)


async def download(request: web.Request) -> web.StreamResponse:
    """The file, to a request with a token."""
    record = _scoped(request)
    return _send(_file(request, record))


async def signed_download(request: web.Request) -> web.StreamResponse:
    """The file, to whoever holds a link from ``storage_url`` that has not expired."""
    raw = request.match_info["record_uuid"]
    expires_raw, given = request.query.get("expires", ""), request.query.get("signature", "")
    if not RECORD_UUID.match(raw) or not (expires_raw.isascii() and expires_raw.isdigit()):
        raise ApiError(403, "invalid_signature", "this link is not one the bridge made")
    record_uuid, expires = raw.lower(), int(expires_raw)
    expected = _signature(request.app[STORE_KEY].secret(LINK_KEY), record_uuid, expires)
    if not hmac.compare_digest(expected, given):
        raise ApiError(403, "invalid_signature", "this link is not one the bridge made")
    if expires < now(request):
        raise ApiError(403, "link_expired", "this link has expired: ask storage_url for a new one")
    record = request.app[STORE_KEY].record(record_uuid)
    if record is None:
        raise ApiError(404, "not_found", f"no record {raw!r} (deleted?)")
    return _send(_file(request, record))


async def delete(request: web.Request) -> web.Response:
    """Forget a recording; its file goes too once no other recording names it."""
    record = _scoped(request)
    store = request.app[STORE_KEY]
    if record.path is not None and store.records_of_file(record.path) == 1:
        try:
            path = locate(record.kind, record.name, record.path, request.app[CONFIG_KEY].recordings)
        except NotServable:
            path = None  # nothing of ours to delete
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                why = f"the file {path.name} cannot be deleted ({err.strerror}): "
                raise ApiError(
                    409, "cannot_delete", why + "the bridge's user needs write access to its directory"
                ) from err
    store.delete_record(record.record_uuid)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    for owner in ("/extension/{extension_id}", "/client/{client_id}"):
        route(app, "GET", owner + "/record/", list_of_extension if "extension" in owner else list_of_client)
        route(app, "GET", owner + "/record/{record_uuid}/storage_url/", storage_url)
        for tail in ("", "/", "/download/"):
            route(app, "GET", owner + "/record/{record_uuid}" + tail, download)
        for tail in ("", "/"):
            route(app, "DELETE", owner + "/record/{record_uuid}" + tail, delete)
    app.router.add_get("/records/{record_uuid}/{file_name}", signed_download)
