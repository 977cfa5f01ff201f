"""Calls in progress and what can be done to them, as Telphin's ``/current_calls/``.

``GET /extension/{id}/current_calls/`` and ``GET /client/{client_id|@me}/current_calls/``
answer ``{"call_list": [...]}``: one entry per component in progress (from the
translator's live state), with ``call_api_id`` (its CallAPIID), ``other_call_api_id`` (the
party on the other side), ``call_flow``, the numbers, the extensions, ``init_time_gmt``,
``answer_time_gmt``, ``record_uuid``, ``callback_id`` and ``real_call`` (false for a leg
the extension is given but does not talk on: a queue's or IVR's thread, a forwarded leg).

``PUT /extension/{id}/current_calls/{call_api_id}`` with ``{"action", "send_dst"}`` acts
on it through AMI:

============================  ==========================================================
``transfer``                  BlindTransfer: the other party goes to ``send_dst``
``attended_transfer``         Atxfer: the extension consults ``send_dst`` (it completes
                              the transfer by hanging up)
``hold`` / ``offhold``        Redirect both parties into ``callback.hold_context`` (the
                              other party to ``s``: music on hold, the extension to
                              ``wait``), then Bridge them again
``park``                      Park the other party (back to the extension on timeout)
``pickup``                    ``send_dst`` (a phone) is rung and takes this ringing call
                              (PickupChan)
``eavesdrop`` / ``whisper`` /  ``send_dst`` is rung and listens (ChanSpy ``q``), talks to
``conference``                the extension unheard by the other party (``w``), or joins
                              both (``B``)
============================  ==========================================================

``DELETE`` on the same path hangs the extension's channel up.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.api.common import CONFIG_KEY, PRINCIPAL_KEY, ApiError, extension_id, json_body, route
from bridge.api.control import TRANSLATOR_KEY, _number, _send
from bridge.api.extensions import client_of
from bridge.api.history import gmt
from bridge.config import Config, dial_through
from bridge.translate.translator import LiveComponent, Translator

ACTIONS = ("transfer", "attended_transfer", "hold", "offhold", "park", "pickup", "eavesdrop", "whisper",
           "conference")  # fmt: skip
#: the actions that need a ``send_dst``
WITH_DESTINATION = frozenset(
    {"transfer", "attended_transfer", "pickup", "eavesdrop", "whisper", "conference"}
)
#: ChanSpy's options per action: quiet, end with the spied channel, whisper / barge
SPY = {"eavesdrop": "qE", "whisper": "qwE", "conference": "qBE"}
#: components the extension talks on itself (not a queue's or IVR's thread)
TALKING = frozenset({"call", "callback", "pickup", "park", "consult", "conference"})
#: who is on hold with whom: the holding channel's Uniqueid -> the held one's
HOLDS_KEY = web.AppKey("holds", dict)


def _translator(request: web.Request) -> Translator:
    translator = request.app.get(TRANSLATOR_KEY)
    if translator is None:
        raise ApiError(503, "ami_unavailable", "current calls need the daemon's AMI connection")
    return translator


def _ref(config: Config, raw: Any, client_id: str) -> dict[str, Any] | None:
    ext = config.extension(raw) if isinstance(raw, int) else None
    if ext is None:
        return None
    return {
        "id": ext.id,
        "type": ext.type,
        "name": ext.name,
        "client_id": client_id,
        "extension_group_id": None,
    }


def public(live: LiveComponent, config: Config, client_id: str) -> dict[str, Any]:
    """A component in progress as Telphin's current calls show it."""
    comp, base = live.comp, live.comp.base
    return {
        "call_api_id": base.get("CallAPIID"), "other_call_api_id": live.far.uid if live.far else None,
        "call_id": base.get("CallID"), "sub_call_id": comp.sub_id, "call_flow": comp.flow,
        "called_number": base.get("CalledNumber"), "called_did": base.get("CalledDID"),
        "caller_id_number": base.get("CallerIDNum"), "caller_id_name": base.get("CallerIDName"),
        "caller_extension": _ref(config, base.get("CallerExtensionID"), client_id),
        "called_extension": _ref(config, base.get("CalledExtensionID"), client_id),
        "extension_id": comp.ext.id, "init_time_gmt": gmt(comp.started_at),
        "answer_time_gmt": gmt(comp.answered_at), "record_uuid": live.record_uuid,
        "callback_id": base.get("CallBackID"), "remote_number": base.get("RemoteNumber"),
        "real_call": comp.kind in TALKING and base.get("Transfered") != "yes",
        "state": "answered" if comp.answered_at is not None else "ringing",
    }  # fmt: skip


async def of_extension(request: web.Request) -> web.Response:
    ext_id = extension_id(request)
    principal = request[PRINCIPAL_KEY]
    config = request.app[CONFIG_KEY]
    calls = [public(c, config, principal.client_id) for c in _translator(request).live_components()
             if c.comp.ext.id == ext_id]  # fmt: skip
    return web.json_response({"call_list": calls})


async def of_client(request: web.Request) -> web.Response:
    client_id = client_of(request)
    principal = request[PRINCIPAL_KEY]
    config = request.app[CONFIG_KEY]
    calls = [public(c, config, client_id) for c in _translator(request).live_components()
             if principal.covers(c.comp.ext.id)]  # fmt: skip
    return web.json_response({"call_list": calls})


def _component(request: web.Request) -> LiveComponent:
    """The extension's component in progress that ``{call_api_id}`` names."""
    ext_id = extension_id(request)
    call_api_id = request.match_info["call_api_id"]
    for live in _translator(request).live_components():
        if live.comp.ext.id == ext_id and call_api_id in (live.comp.base.get("CallAPIID"), live.chan.uid):
            return live
    raise ApiError(
        404, "not_found", f"extension {ext_id} has no call {call_api_id!r} in progress", "call_api_id"
    )


def _device(config: Config, number: str) -> str:
    """What to ring for ``number``: a phone of the PBX, else through the first trunk."""
    phone = next(
        (e for e in config.extensions if e.type == "phone" and number in (e.short, e.extended)), None
    )
    if phone is not None and phone.device:
        return phone.device
    if config.trunks:
        return dial_through(config.trunk_devices[0], number)
    raise ApiError(
        400, "invalid_request", f"{number} is no phone of the PBX and no trunk is configured", "send_dst"
    )


def _other(live: LiveComponent) -> str:
    if live.peer is None or live.comp.answered_at is None:
        raise ApiError(
            409, "not_answered", "the call is not answered: nothing to hold or park yet", "call_api_id"
        )
    return live.peer.name


async def act(request: web.Request) -> web.Response:
    """``PUT .../current_calls/{call_api_id}``: ``{"action", "send_dst"}``."""
    live = _component(request)
    data = await json_body(request)
    action = data.get("action")
    if action not in ACTIONS:
        raise ApiError(400, "invalid_request", f"action must be one of {', '.join(ACTIONS)}", "action")
    config = request.app[CONFIG_KEY]
    dst = _number(data, "send_dst") if action in WITH_DESTINATION else None
    chan, cb = live.chan, config.callback
    holds: dict[str, str] = request.app[HOLDS_KEY]
    fields: dict[str, Any]
    if action in ("transfer", "attended_transfer"):
        name = "BlindTransfer" if action == "transfer" else "Atxfer"
        fields = {"Action": name, "Channel": chan.name, "Context": cb.transfer_context, "Exten": dst}
    elif action == "hold":
        other = _other(live)
        assert live.peer is not None
        fields = {"Action": "Redirect", "Channel": other, "Context": cb.hold_context, "Exten": "s",
                  "Priority": "1", "ExtraChannel": chan.name, "ExtraContext": cb.hold_context,
                  "ExtraExten": "wait", "ExtraPriority": "1"}  # fmt: skip
        holds[chan.uid] = live.peer.uid
    elif action == "offhold":
        held = _translator(request).channels.get(holds.get(chan.uid, ""))
        if held is None:
            raise ApiError(
                409, "not_on_hold", "this call was not put on hold by the API (or the other party left)"
            )
        fields = {"Action": "Bridge", "Channel1": chan.name, "Channel2": held.name, "Tone": "no"}
    elif action == "park":
        fields = {"Action": "Park", "Channel": _other(live), "TimeoutChannel": chan.name}
    elif action == "pickup":
        if live.comp.answered_at is not None:
            raise ApiError(409, "already_answered", "only a ringing call can be picked up", "call_api_id")
        caller = f'"{live.comp.base.get("CallerIDName", "")}" <{live.comp.base.get("CallerIDNum", "")}>'
        fields = {"Action": "Originate", "Channel": _device(config, str(dst)), "Application": "PickupChan",
                  "Data": chan.name, "CallerID": caller, "Async": "true"}  # fmt: skip
    else:
        fields = {"Action": "Originate", "Channel": _device(config, str(dst)), "Application": "ChanSpy",
                  "Data": f"{chan.name},{SPY[action]}", "CallerID": f'"{action}" <{live.comp.ext.short}>',
                  "Async": "true"}  # fmt: skip
    await _send(request, fields)
    if action == "offhold":
        holds.pop(chan.uid, None)
    answer: dict[str, Any] = {"call_api_id": request.match_info["call_api_id"], "action": action}
    if dst is not None:
        answer["send_dst"] = dst
    return web.json_response(answer)


async def interrupt(request: web.Request) -> web.Response:
    """``DELETE .../current_calls/{call_api_id}``: hang the extension's channel up."""
    live = _component(request)
    await _send(request, {"Action": "Hangup", "Channel": live.chan.name})
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app[HOLDS_KEY] = {}
    route(app, "GET", "/extension/{extension_id}/current_calls/", of_extension)
    route(app, "GET", "/client/{client_id}/current_calls/", of_client)
    for tail in ("", "/"):
        route(app, "PUT", "/extension/{extension_id}/current_calls/{call_api_id}" + tail, act)
        route(app, "DELETE", "/extension/{extension_id}/current_calls/{call_api_id}" + tail, interrupt)
