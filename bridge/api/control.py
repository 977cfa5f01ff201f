"""Call initiation and control over the REST API: callbacks and actions on live calls.

``POST /extension/{id}/callback/`` starts a call with AMI Originate: the first number
of ``src_num`` (a phone of the PBX, or an outside number through the first trunk) rings
first; once answered, ``dst_num`` is dialed through the dialplan's callback context.
The call carries ``CALLBACKID`` (and ``TAG``) so its events have ``CallBackID``/``Tag``,
and the owner gets only its dial-out (no dial-in from itself). The answer is
``{"call_api_id", "call_id"}`` as Telphin's: ``call_id`` is the callback id, which every
event of the call carries as ``CallID`` (and ``CallBackID``); ``call_api_id`` is the owner
leg's channel id ``cb-<callback id>``, its ``CallAPIID``.

``DELETE /calls/{call_api_id}`` hangs up the channel a ``CallAPIID`` names;
``POST /calls/{call_api_id}/transfer`` with ``{"to": "103"}`` blind-transfers the party
connected to it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.api.common import CONFIG_KEY, PRINCIPAL_KEY, ApiError, extension_id, json_body, route
from bridge.config import dial_through
from bridge.translate import Translator

ActionSender = Callable[[dict[str, Any]], Awaitable[dict[str, str]]]
ACTIONS_KEY = web.AppKey("actions", object)
TRANSLATOR_KEY = web.AppKey("translator", Translator)
_NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")


def _number(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not _NUMBER.match(value.strip()):
        raise ApiError(
            400, "invalid_request", f"{name} must be a phone number (digits, optional leading +)", name
        )
    return value.strip()


async def _send(request: web.Request, fields: dict[str, Any]) -> dict[str, str]:
    from bridge.ami.source import ActionError

    sender: ActionSender | None = request.app.get(ACTIONS_KEY)  # type: ignore[assignment]
    if sender is None:
        raise ApiError(503, "ami_unavailable", "call control needs the daemon's AMI connection")
    try:
        return await sender(fields)
    except ActionError as err:
        raise ApiError(502, "ami_error", f"Asterisk refused {fields.get('Action')}: {err}") from err


async def callback(request: web.Request) -> web.Response:
    config = request.app[CONFIG_KEY]
    ext_id = extension_id(request)
    data = await json_body(request)
    src = data.get("src_num")
    if isinstance(src, str):
        src = [src]
    if not isinstance(src, list) or not src:
        raise ApiError(400, "invalid_request", "src_num must be a non-empty list of numbers", "src_num")
    first = _number({"src_num": src[0]}, "src_num")
    dst = _number(data, "dst_num")
    wait = data.get("wait_for_pickup", 30)
    if not isinstance(wait, int) or not 1 <= wait <= 300:
        raise ApiError(
            400, "invalid_request", "wait_for_pickup must be seconds between 1 and 300", "wait_for_pickup"
        )
    caller_number = _number(data, "caller_id_number") if "caller_id_number" in data else dst
    caller_name = data.get("caller_id_name", "")
    if not isinstance(caller_name, str) or len(caller_name) > 80 or '"' in caller_name:
        raise ApiError(400, "invalid_request", "caller_id_name must be text without quotes", "caller_id_name")
    tag = data.get("tag")
    if tag is not None and (not isinstance(tag, str) or len(tag) > 100):
        raise ApiError(400, "invalid_request", "tag must be text of at most 100 characters", "tag")
    # the owner by its short number (what Telphin's src_num takes) or its extended number
    phone = next((e for e in config.extensions if e.type == "phone" and first in (e.short, e.extended)),
                 None)  # fmt: skip
    if phone is not None and phone.device:
        channel = phone.device
    elif config.trunks:
        channel = dial_through(config.trunk_devices[0], first)
    else:
        raise ApiError(
            400, "invalid_request", f"{first} is no phone of the PBX and no trunk is configured", "src_num"
        )
    callback_id = uuid.uuid4().hex
    channel_id = f"cb-{callback_id}"
    names = config.variables
    variables = [f"__{names.callback_id}={callback_id}"]
    if tag:
        variables.append(f"__{names.tag}={tag}")
    await _send(request, {
        "Action": "Originate", "Channel": channel, "Context": config.callback.context, "Exten": dst,
        "Priority": "1", "CallerID": f'"{caller_name}" <{caller_number}>', "Timeout": str(wait * 1000),
        "Async": "true", "ChannelId": channel_id, "Variable": variables,
    })  # fmt: skip
    return web.json_response({"call_api_id": channel_id, "call_id": callback_id, "callback_id": callback_id,
                              "extension_id": ext_id}, status=201)  # fmt: skip


def _live_channel(request: web.Request) -> str:
    """The channel a CallAPIID names, if the token may act on it."""
    call_api_id = request.match_info["call_api_id"]
    translator = request.app.get(TRANSLATOR_KEY)
    if translator is None:
        raise ApiError(503, "ami_unavailable", "call control needs the daemon's AMI connection")
    chan = translator.channels.get(call_api_id)
    if chan is None:
        raise ApiError(404, "not_found", f"no live call with CallAPIID {call_api_id!r}", "call_api_id")
    allowed = request[PRINCIPAL_KEY].extensions
    if allowed is not None and not any(c.ext.id in allowed for c in chan.comps):
        raise ApiError(403, "forbidden", "this token covers none of the extensions on that call")
    return chan.name


async def hangup(request: web.Request) -> web.Response:
    name = _live_channel(request)
    await _send(request, {"Action": "Hangup", "Channel": name})
    return web.Response(status=204)


async def transfer(request: web.Request) -> web.Response:
    name = _live_channel(request)
    to = _number(await json_body(request), "to")
    context = request.app[CONFIG_KEY].callback.transfer_context
    await _send(request, {"Action": "BlindTransfer", "Channel": name, "Context": context, "Exten": to})
    return web.json_response(
        {"call_api_id": request.match_info["call_api_id"], "action": "transfer", "to": to}, status=201
    )


def add_routes(app: web.Application) -> None:
    route(app, "POST", "/extension/{extension_id}/callback/", callback)
    app.router.add_delete("/calls/{call_api_id}", hangup)
    app.router.add_post("/calls/{call_api_id}/transfer", transfer)
