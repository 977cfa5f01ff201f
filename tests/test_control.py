"""Callback and call-control requests: validation, and the AMI actions they become.

The AMI side here records the actions instead of sending them; the live tier
(tests/lab/test_daemon_live.py) sends real ones to the lab's Asterisk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.ami.message import parse
from bridge.ami.source import ActionError
from bridge.api import make_app
from bridge.api.control import ACTIONS_KEY, TRANSLATOR_KEY
from bridge.config import parse_config
from bridge.store import Store
from bridge.translate import Translator

ADMIN = "admin-token-0123456789"
LIMITED = "limited-token-0123456789"
CONFIG = parse_config(f"""
ami: {{username: bridge, secret: s}}
extensions:
  - {{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101"}}
  - {{id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "102"}}
trunks: [trunk]
api: {{tokens: [{{token: {ADMIN}}}, {{token: {LIMITED}, extensions: [1102]}}]}}
""")
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], list[dict[str, Any]], Translator]]:
    sent: list[dict[str, Any]] = []

    async def sender(fields: dict[str, Any]) -> dict[str, str]:
        sent.append(fields)
        if fields.get("Channel") == "PJSIP/refuse":
            raise ActionError("Channel not found")
        return {"Response": "Success"}

    store = Store(tmp_path / "b.db")
    app = make_app(CONFIG, store)
    translator = Translator(CONFIG)
    app[ACTIONS_KEY] = sender
    app[TRANSLATOR_KEY] = translator
    async with TestClient(TestServer(app)) as client:
        yield client, sent, translator
    store.close()


async def test_callback_originates_from_the_owner_phone(env: Any) -> None:
    """A callback rings the owner's PJSIP endpoint and dials dst_num in the callback context."""
    client, sent, _ = env
    body = {"src_num": ["101"], "dst_num": "+79817654321", "caller_id_name": "CRM", "tag": "deal-7",
            "wait_for_pickup": 20}  # fmt: skip
    resp = await client.post("/extension/1101/callback/", json=body, headers=AUTH)
    assert resp.status == 201
    answer = await resp.json()
    # as Telphin's: call_id is what the call's events carry as CallID (= CallBackID), and
    # call_api_id, the owner leg's CallAPIID, starts with cb-
    assert answer["call_id"] == answer["callback_id"] and answer["call_api_id"] == f"cb-{answer['call_id']}"
    action = sent[0]
    assert action["Action"] == "Originate" and action["Channel"] == "PJSIP/101"
    assert (action["Context"], action["Exten"], action["Timeout"]) == ("callback", "+79817654321", "20000")
    assert action["ChannelId"] == answer["call_api_id"]
    assert action["Variable"] == [f"__CALLBACKID={answer['callback_id']}", "__TAG=deal-7"]
    assert action["CallerID"] == '"CRM" <+79817654321>'


async def test_callback_owner_may_be_named_by_its_extended_number(env: Any) -> None:
    """src_num may name the owner as Telphin's events do, by its extended number 000*101."""
    client, sent, _ = env
    resp = await client.post("/extension/1101/callback/", json={"src_num": ["000*101"], "dst_num": "102"},
                             headers=AUTH)  # fmt: skip
    assert resp.status == 201 and sent[0]["Channel"] == "PJSIP/101"


async def test_callback_rings_chan_sip_phones_and_trunks_their_own_way(tmp_path: Path) -> None:
    """An owner on chan_sip is rung as SIP/<peer>; an outside number through a chan_sip
    trunk as SIP/<peer>/<number>."""
    config = parse_config(f"""
ami: {{username: bridge, secret: s}}
extensions:
  - {{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "SIP/150010001"}}
trunks: [SIP/voipgrid-siproute]
api: {{tokens: [{{token: {ADMIN}}}]}}
""")
    sent: list[dict[str, Any]] = []

    async def sender(fields: dict[str, Any]) -> dict[str, str]:
        sent.append(fields)
        return {"Response": "Success"}

    store = Store(tmp_path / "s.db")
    app = make_app(config, store)
    app[ACTIONS_KEY] = sender
    async with TestClient(TestServer(app)) as client:
        for src in ("101", "+74950001122"):
            resp = await client.post("/extension/1101/callback/", json={"src_num": [src], "dst_num": "102"},
                                     headers=AUTH)  # fmt: skip
            assert resp.status == 201
    store.close()
    assert [a["Channel"] for a in sent] == ["SIP/150010001", "SIP/voipgrid-siproute/+74950001122"]


async def test_callback_from_an_outside_number_goes_through_the_trunk(env: Any) -> None:
    """A src_num that is no phone of the PBX is rung through the first trunk."""
    client, sent, _ = env
    await client.post("/extension/1101/callback/", json={"src_num": ["+74950001122"], "dst_num": "102"},
                      headers=AUTH)  # fmt: skip
    assert sent[0]["Channel"] == "PJSIP/+74950001122@trunk"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dst_num": "102"}, "src_num"),
        ({"src_num": [], "dst_num": "102"}, "src_num"),
        ({"src_num": ["1 01"], "dst_num": "102"}, "src_num"),
        ({"src_num": ["101"]}, "dst_num"),
        ({"src_num": ["101"], "dst_num": "abc"}, "dst_num"),
        ({"src_num": ["101"], "dst_num": "102", "wait_for_pickup": 0}, "wait_for_pickup"),
        ({"src_num": ["101"], "dst_num": "102", "caller_id_name": 'a"b'}, "caller_id_name"),
        ({"src_num": ["101"], "dst_num": "102", "tag": "x" * 101}, "tag"),
    ],
)
async def test_callback_validation_names_the_field(env: Any, body: dict[str, Any], field: str) -> None:
    """Invalid callback requests are 400 naming the field; nothing is sent to Asterisk."""
    client, sent, _ = env
    resp = await client.post("/extension/1101/callback/", json=body, headers=AUTH)
    assert resp.status == 400 and (await resp.json())["field"] == field
    assert sent == []


async def test_callback_needs_a_token_for_that_extension(env: Any) -> None:
    """A token limited to other extensions cannot start calls for this one."""
    client, sent, _ = env
    resp = await client.post("/extension/1101/callback/", json={"src_num": ["101"], "dst_num": "102"},
                             headers={"Authorization": f"Bearer {LIMITED}"})  # fmt: skip
    assert resp.status == 403 and sent == []


def live_call(translator: Translator) -> None:
    """Feed the translator a live call 101 -> 102 (channels up, not hung up)."""
    blocks = [
        "Event: Newchannel\r\nChannel: PJSIP/101-00000001\r\nUniqueid: u1\r\nLinkedid: u1\r\nExten: 102\r\n"
        "CallerIDNum: 101\r\nTimestamp: 1.0\r\n\r\n",
        "Event: Newchannel\r\nChannel: PJSIP/102-00000002\r\nUniqueid: u2\r\nLinkedid: u1\r\nExten: s\r\n"
        "Timestamp: 1.0\r\n\r\n",
        "Event: DialBegin\r\nChannel: PJSIP/101-00000001\r\nUniqueid: u1\r\nDestChannel: PJSIP/102-00000002\r\n"
        "DestUniqueid: u2\r\nTimestamp: 1.1\r\n\r\n",
    ]
    for b in blocks:
        translator.feed(parse(b.encode()))


async def test_hangup_and_transfer_act_on_the_named_channel(env: Any) -> None:
    """DELETE /calls/{id} hangs up that channel (204); POST .../transfer blind-transfers it (201)."""
    client, sent, translator = env
    live_call(translator)
    resp = await client.delete("/calls/u2", headers=AUTH)
    assert resp.status == 204
    assert sent[-1] == {"Action": "Hangup", "Channel": "PJSIP/102-00000002"}
    resp = await client.post("/calls/u1/transfer", json={"to": "103"}, headers=AUTH)
    assert resp.status == 201
    assert sent[-1] == {"Action": "BlindTransfer", "Channel": "PJSIP/101-00000001", "Context": "phones",
                        "Exten": "103"}  # fmt: skip


async def test_call_control_errors(env: Any) -> None:
    """Unknown CallAPIID 404; a token covering none of the call's extensions 403; bad target 400."""
    client, _, translator = env
    live_call(translator)
    assert (await client.delete("/calls/nope", headers=AUTH)).status == 404
    limited = {"Authorization": f"Bearer {LIMITED}"}
    assert (await client.delete("/calls/u1", headers=limited)).status == 403  # 101's leg
    assert (await client.delete("/calls/u2", headers=limited)).status == 204  # 102's leg
    resp = await client.post("/calls/u1/transfer", json={"to": "x"}, headers=AUTH)
    assert resp.status == 400 and (await resp.json())["field"] == "to"
    assert (await client.delete("/calls/u1")).status == 401


async def test_refused_action_is_a_502(env: Any) -> None:
    """When Asterisk refuses the action the API says so (502), not 200."""
    client, _, translator = env
    translator.feed(
        parse(b"Event: Newchannel\r\nChannel: PJSIP/refuse\r\nUniqueid: r1\r\nTimestamp: 1.0\r\n\r\n")
    )
    resp = await client.delete("/calls/r1", headers=AUTH)
    assert resp.status == 502 and "Channel not found" in (await resp.json())["message"]
