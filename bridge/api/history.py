"""The call history, built from the events the bridge committed, as Telphin's clients
read it: ``GET /client/{client_id|@me}/call_history/{CallID}`` (one call) and the list
``GET /client/{client_id|@me}/call_history/`` (``start_datetime``, ``end_datetime``,
``order``, ``page``, ``per_page`` or ``count``, ``extension_id``).

A call's record summarises its components (``flow``, ``init_time_gmt``,
``bridged_time_gmt``, ``hangup_time_gmt``, ``duration`` and ``bridged_duration`` in
seconds, ``result``, ``from_username``/``to_username``...) and lists them in ``cdr``, each
with its ``record_uuid`` (the RecID of its hangup). Times are GMT ``YYYY-MM-DD HH:MM:SS``.
A token limited to some extensions sees the calls that reached one of them, and only
their components. What the history holds is what the store keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.api.common import CONFIG_KEY, PRINCIPAL_KEY, STORE_KEY, ApiError, route
from bridge.api.extensions import client_of
from bridge.config import Config
from bridge.store import MESSAGE_EVENTS

#: a component's hangup CallStatus as the history's ``result``
RESULTS = {"ANSWER": "answered", "BUSY": "busy", "NOANSWER": "not answered", "CANCEL": "not answered",
           "CONGESTION": "failed", "CHANUNAVAIL": "failed"}  # fmt: skip
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: the widest window a list covers when the request names no end (or start)
FOREVER = (0, 2**62)


def gmt(us: int | None) -> str | None:
    """Microseconds since the epoch as Telphin writes times (GMT, whole seconds)."""
    if us is None:
        return None
    return datetime.fromtimestamp(us // 1_000_000, UTC).strftime(TIME_FORMAT)


def seconds(us: int | None) -> int:
    return round((us or 0) / 1_000_000)


def parse_time(raw: str, field: str) -> int:
    """``YYYY-MM-DD HH:MM:SS`` (GMT; ISO 8601 too) as microseconds since the epoch."""
    text = raw.strip().replace("T", " ").removesuffix("Z")
    for fmt in (TIME_FORMAT, "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()) * 1_000_000
        except ValueError:
            continue
    raise ApiError(400, "invalid_request", f"{field} must be a GMT time like 2026-12-04 09:30:00", field)


def window(request: web.Request) -> tuple[int, int, bool, int, int]:
    """(start, end, newest first, page size, offset) of a list request."""
    q = request.query
    start = parse_time(q["start_datetime"], "start_datetime") if "start_datetime" in q else FOREVER[0]
    end = parse_time(q["end_datetime"], "end_datetime") + 1_000_000 if "end_datetime" in q else FOREVER[1]
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "invalid_request", "order must be asc or desc", "order")
    page = _whole(q.get("page"), "page", 1, 1_000_000)
    size_key = "per_page" if "per_page" in q else "count"
    per_page = _whole(q.get(size_key), size_key, 100, 1000)
    return start, end, order == "desc", per_page, (page - 1) * per_page


def _whole(raw: str | None, name: str, default: int, most: int) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise ApiError(400, "invalid_request", f"{name} must be a whole number from 1 to {most}", name)
    return int(raw)


def _extension_fields(config: Config, ext_id: int) -> dict[str, Any]:
    ext = config.extension(ext_id)
    return {"extension_id": ext_id, "extension_name": ext.name if ext else None,
            "extension_type": ext.type if ext else None}  # fmt: skip


def cdr_entries(config: Config, events: list[tuple[int, dict[str, Any]]],
                visible: Callable[[int], bool]) -> list[dict[str, Any]]:  # fmt: skip
    """One entry per component (SubCallID) of a call's events, in the order they began."""
    parts: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for ext_id, event in events:
        if event.get("EventType") not in MESSAGE_EVENTS and visible(ext_id):
            parts.setdefault((ext_id, str(event.get("SubCallID"))), []).append(event)
    out = []
    for (ext_id, sub), evs in parts.items():
        by_type = {e["EventType"]: e for e in evs}
        first, end = evs[0], by_type.get("hangup") or by_type.get("voicemail")
        answered = by_type.get("answer")
        status = end.get("CallStatus") if end else None
        result = (
            "voicemail" if end is not None and end["EventType"] == "voicemail" else RESULTS.get(status or "")
        )
        out.append({
            "sub_call_id": sub, "call_api_id": first.get("CallAPIID"), **_extension_fields(config, ext_id),
            "flow": first.get("CallFlow"), "from_username": first.get("CallerIDNum"),
            "from_screen_name": first.get("CallerIDName"), "to_username": first.get("CalledNumber"),
            "dest_number": first.get("CalledNumber"), "did_number": first.get("CalledDID"),
            "init_time_gmt": gmt(first.get("EventTime")),
            "start_time_gmt": gmt(answered.get("EventTime")) if answered else None,
            "hangup_time_gmt": gmt(end.get("EventTime")) if end else None,
            "duration": seconds(end.get("Duration")) if end else 0,
            "bridged_duration": seconds(end.get("BridgedDuration")) if end else 0,
            "result": result or ("in progress" if end is None else None), "status": status,
            "record_uuid": end.get("RecID") if end else None, "remote_number": first.get("RemoteNumber"),
            "transfered": first.get("Transfered") == "yes",
            "_init": first.get("EventTime", 0), "_answer": answered.get("EventTime") if answered else None,
            "_end": end.get("EventTime") if end else None,
        })  # fmt: skip
    out.sort(key=lambda c: (c["_init"], c["sub_call_id"]))
    return out


def call_record(config: Config, call_id: str, events: list[tuple[int, dict[str, Any]]],
                visible: Callable[[int], bool], client_id: str) -> dict[str, Any] | None:  # fmt: skip
    """A call's history record (None when none of its components is visible)."""
    cdr = cdr_entries(config, events, visible)
    if not cdr:
        return None
    first = cdr[0]
    init = min(c["_init"] for c in cdr)
    answers = [c for c in cdr if c["_answer"] is not None]
    ends = [c["_end"] for c in cdr if c["_end"] is not None]
    done = len(ends) == len(cdr)
    hangup = max(ends) if done else None
    bridged_at = min(c["_answer"] for c in answers) if answers else None
    talk = hangup - bridged_at if hangup is not None and bridged_at is not None else None
    callback = next((e.get("CallBackID") for _, e in events if e.get("CallBackID")), None)
    record = {
        "call_uuid": call_id, "flow": first["flow"], "client_owner_id": client_id,
        "init_time_gmt": gmt(init), "start_time_gmt": gmt(init), "bridged_time_gmt": gmt(bridged_at),
        "hangup_time_gmt": gmt(hangup),
        "duration": seconds(hangup - init) if hangup is not None else 0,
        "bridged": bool(answers),
        "bridged_duration": seconds(talk),
        "result": "answered" if answers else (first["result"] or "not answered"),
        "from_username": first["from_username"], "from_screen_name": first["from_screen_name"],
        "to_username": first["to_username"],
        "bridged_username": answers[0]["to_username"] if answers else None,
        "did_number": next((c["did_number"] for c in cdr if c["did_number"]), None),
        "extension_id": first["extension_id"], "extension_name": first["extension_name"],
        "extension_type": first["extension_type"], "callback_id": callback,
        "cdr": [{k: v for k, v in c.items() if not k.startswith("_")} for c in cdr],
    }  # fmt: skip
    return record


async def one(request: web.Request) -> web.Response:
    client_id = client_of(request)
    principal = request[PRINCIPAL_KEY]
    call_id = request.match_info["call_uuid"]
    store = request.app[STORE_KEY]
    reached = store.call_reached(call_id)
    record = None
    if reached is not None and any(principal.covers(e) for e in reached):
        record = call_record(request.app[CONFIG_KEY], call_id, store.call_events(call_id), principal.covers,
                             client_id)  # fmt: skip
    if record is None:
        raise ApiError(404, "not_found", f"no call {call_id!r} in the call history", "call_uuid")
    return web.json_response(record)


async def list_calls(request: web.Request) -> web.Response:
    client_id = client_of(request)
    principal = request[PRINCIPAL_KEY]
    start, end, newest_first, per_page, offset = window(request)
    scope = None if principal.extensions is None else set(principal.extensions)
    raw_ext = request.query.get("extension_id")
    if raw_ext is not None:
        if not (raw_ext.isascii() and raw_ext.isdigit()) or not principal.covers(int(raw_ext)):
            raise ApiError(400, "invalid_request", "extension_id must be one of the token's extensions",
                           "extension_id")  # fmt: skip
        scope = {int(raw_ext)}
    store, config = request.app[STORE_KEY], request.app[CONFIG_KEY]
    visible = principal.covers if scope is None else scope.__contains__
    calls = []
    for call_id in store.call_ids(scope, start, end, newest_first, per_page, offset):
        record = call_record(config, call_id, store.call_events(call_id), visible, client_id)
        if record is not None:
            calls.append(record)
    page = offset // per_page + 1
    order = "desc" if newest_first else "asc"
    return web.json_response({"page": page, "per_page": per_page, "order": order, "call_history": calls})


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/client/{client_id}/call_history/", list_calls)
    for tail in ("", "/"):
        route(app, "GET", "/client/{client_id}/call_history/{call_uuid}" + tail, one)
