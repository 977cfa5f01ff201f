"""Current calls and the actions on them, as Telphin's /current_calls/: the list comes from
the translator's live state, each action becomes the AMI action it documents.

The AMI side records the actions instead of sending them; tests/lab/test_control_live.py
sends real ones to the lab's Asterisk and checks the events they cause.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.ami.message import Message, parse, split_stream
from bridge.api import make_app
from bridge.api.control import ACTIONS_KEY, TRANSLATOR_KEY
from bridge.config import parse_config
from bridge.store import Store
from bridge.translate import Translator
from tests.conftest import FIXTURES

ADMIN = "admin-token-0123456789"
LIMITED = "limited-token-0123456789"
CONFIG = parse_config(
    (FIXTURES / "lab.yaml").read_text()
    + f"\napi: {{tokens: [{{token: {ADMIN}}}, {{token: {LIMITED}, extensions: [1103]}}]}}\n"
)
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def up_to(name: str, stop: Callable[[Message], bool]) -> Translator:
    """A translator fed a recorded call until (and with) the first message ``stop`` picks."""
    t = Translator(CONFIG)
    for block in split_stream((FIXTURES / f"{name}.ami").read_bytes())[0]:
        msg = parse(block)
        t.feed(msg)
        if stop(msg):
            break
    return t


def talking() -> Translator:
    """101 and 102 talking (internal-answered-caller-hangup, after both entered the bridge)."""
    seen: list[str] = []

    def both_bridged(m: Message) -> bool:
        if m.event == "BridgeEnter":
            seen.append(m.get("Channel") or "")
        return len(seen) == 2

    return up_to("internal-answered-caller-hangup", both_bridged)


def ringing() -> Translator:
    """101 calling 102, which rings (the DialBegin seen, no DialEnd yet)."""
    return up_to("internal-answered-caller-hangup", lambda m: m.event == "DialState")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Callable[[Translator], Any], list[dict[str, Any]]]]:
    """Start the API on a translator's live state (each call a new app), recording the
    AMI actions it sends."""
    sent: list[dict[str, Any]] = []

    async def sender(fields: dict[str, Any]) -> dict[str, str]:
        sent.append(fields)
        return {"Response": "Success"}

    store = Store(tmp_path / "b.db")
    async with contextlib.AsyncExitStack() as stack:

        async def start(translator: Translator) -> TestClient[Any, Any]:
            app = make_app(CONFIG, store)
            app[ACTIONS_KEY] = sender
            app[TRANSLATOR_KEY] = translator
            return await stack.enter_async_context(TestClient(TestServer(app)))

        yield start, sent
    store.close()


def named(t: Translator, prefix: str) -> str:
    return next(c.name for c in t.channels.values() if c.name.startswith(prefix))


async def calls_of(client: TestClient[Any, Any], ext: int) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/ver1.0/extension/{ext}/current_calls/", headers=AUTH)
    assert resp.status == 200
    return list((await resp.json())["call_list"])


async def test_a_call_in_progress_is_listed_as_telphin_lists_it(env: Any) -> None:
    """102 talking to 101: its entry has its CallAPIID, the other party's, the flow, the
    parties and extensions, the times; the client-wide list has both phones."""
    start, _ = env
    t = talking()
    client = await start(t)
    [call] = await calls_of(client, 1102)
    phone_102 = next(c for c in t.channels.values() if c.name.startswith("PJSIP/102-"))
    phone_101 = next(c for c in t.channels.values() if c.name.startswith("PJSIP/101-"))
    assert call["call_api_id"] == phone_102.uid and call["other_call_api_id"] == phone_101.uid
    assert (call["call_flow"], call["caller_id_number"], call["called_number"]) == (
        "in",
        "000*101",
        "000*102",
    )
    assert (
        call["caller_extension"]["id"] == 1101 and call["called_extension"]["name"] == "000*102@pbx.example"
    )
    assert call["state"] == "answered" and call["answer_time_gmt"] and call["real_call"] is True
    assert call["extension_id"] == 1102 and call["record_uuid"] is None
    listed = await (await client.get("/api/ver1.0/client/@me/current_calls/", headers=AUTH)).json()
    assert sorted(c["extension_id"] for c in listed["call_list"]) == [1101, 1102]
    limited = await client.get("/api/ver1.0/client/@me/current_calls/",
                               headers={"Authorization": f"Bearer {LIMITED}"})  # fmt: skip
    assert (await limited.json())["call_list"] == []


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ({"action": "transfer", "send_dst": "103"},
         {"Action": "BlindTransfer", "Channel": "@102@", "Context": "phones", "Exten": "103"}),
        ({"action": "attended_transfer", "send_dst": "103"},
         {"Action": "Atxfer", "Channel": "@102@", "Context": "phones", "Exten": "103"}),
        ({"action": "hold"},
         {"Action": "Redirect", "Channel": "@101@", "Context": "ami-bridge-hold", "Exten": "s", "Priority": "1",
          "ExtraChannel": "@102@", "ExtraContext": "ami-bridge-hold", "ExtraExten": "wait", "ExtraPriority": "1"}),
        ({"action": "park"}, {"Action": "Park", "Channel": "@101@", "TimeoutChannel": "@102@"}),
        ({"action": "eavesdrop", "send_dst": "103"},
         {"Action": "Originate", "Channel": "PJSIP/103", "Application": "ChanSpy", "Data": "@102@,qE",
          "CallerID": '"eavesdrop" <102>', "Async": "true"}),
        ({"action": "whisper", "send_dst": "000*103"},
         {"Action": "Originate", "Channel": "PJSIP/103", "Application": "ChanSpy", "Data": "@102@,qwE",
          "CallerID": '"whisper" <102>', "Async": "true"}),
        ({"action": "conference", "send_dst": "+79161234567"},
         {"Action": "Originate", "Channel": "PJSIP/+79161234567@trunk", "Application": "ChanSpy",
          "Data": "@102@,qBE", "CallerID": '"conference" <102>', "Async": "true"}),
    ],
)  # fmt: skip
async def test_each_action_is_the_ami_action_it_documents(
    env: Any, action: dict[str, str], expected: dict[str, str]
) -> None:
    """PUT .../current_calls/{call_api_id} {action, send_dst} on 102's answered call: 200,
    and the AMI action on the right channels (@101@, @102@: the phones' channels; an
    outside send_dst is dialed through the trunk)."""
    start, sent = env
    t = talking()
    client = await start(t)
    [call] = await calls_of(client, 1102)
    resp = await client.put(f"/api/ver1.0/extension/1102/current_calls/{call['call_api_id']}", json=action,
                            headers=AUTH)  # fmt: skip
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["action"] == action["action"]
    channels = {"@101@": named(t, "PJSIP/101-"), "@102@": named(t, "PJSIP/102-")}
    want = {}
    for key, value in expected.items():
        for placeholder, name in channels.items():
            value = value.replace(placeholder, name)
        want[key] = value
    assert sent == [want]


async def test_offhold_bridges_the_held_parties_again(env: Any) -> None:
    """After hold, offhold is an AMI Bridge of the two channels; offhold without a hold
    (or twice) is 409 not_on_hold."""
    start, sent = env
    client = await start(talking())
    [call] = await calls_of(client, 1102)
    path = f"/api/ver1.0/extension/1102/current_calls/{call['call_api_id']}"
    assert (await client.put(path, json={"action": "offhold"}, headers=AUTH)).status == 409
    assert (await client.put(path, json={"action": "hold"}, headers=AUTH)).status == 200
    assert (await client.put(path, json={"action": "offhold"}, headers=AUTH)).status == 200
    assert sent[-1] == {"Action": "Bridge", "Channel1": sent[0]["ExtraChannel"], "Channel2": sent[0]["Channel"],
                        "Tone": "no"}  # fmt: skip
    assert (await client.put(path, json={"action": "offhold"}, headers=AUTH)).status == 409


async def test_a_ringing_call_is_picked_up_by_another_phone(env: Any) -> None:
    """pickup on 102's ringing call: 103 is rung and takes it with PickupChan; the same on
    an answered call is 409, and hold/park of a ringing call 409 not_answered."""
    start, sent = env
    t = ringing()
    client = await start(t)
    [call] = await calls_of(client, 1102)
    assert call["state"] == "ringing" and call["answer_time_gmt"] is None
    path = f"/api/ver1.0/extension/1102/current_calls/{call['call_api_id']}"
    resp = await client.put(path, json={"action": "pickup", "send_dst": "103"}, headers=AUTH)
    assert resp.status == 200
    assert sent == [{"Action": "Originate", "Channel": "PJSIP/103", "Application": "PickupChan",
                     "Data": named(t, "PJSIP/102-"),
                     "CallerID": '"Anna" <000*101>', "Async": "true"}]  # fmt: skip
    for action in ("hold", "park"):
        refused = await client.put(path, json={"action": action}, headers=AUTH)
        assert refused.status == 409 and (await refused.json())["status"] == "not_answered"
    client = await start(talking())
    [answered] = await calls_of(client, 1102)
    late = await client.put(f"/api/ver1.0/extension/1102/current_calls/{answered['call_api_id']}",
                            json={"action": "pickup", "send_dst": "103"}, headers=AUTH)  # fmt: skip
    assert late.status == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [({"action": "fly"}, "action"), ({"action": "transfer"}, "send_dst"), ({"action": "transfer", "send_dst": "x"},
                                                                         "send_dst")],
)  # fmt: skip
async def test_bad_actions_say_which_field(env: Any, body: dict[str, str], field: str) -> None:
    """An unknown action, or one without a valid send_dst: 400 naming the field."""
    start, sent = env
    client = await start(talking())
    [call] = await calls_of(client, 1102)
    resp = await client.put(f"/api/ver1.0/extension/1102/current_calls/{call['call_api_id']}", json=body,
                            headers=AUTH)  # fmt: skip
    assert resp.status == 400 and (await resp.json())["field"] == field and sent == []


async def test_calls_of_other_extensions_are_not_reachable(env: Any) -> None:
    """102's CallAPIID under 1101's path is 404; a token without 1102 is 403; DELETE hangs
    the extension's own channel up."""
    start, sent = env
    t = talking()
    client = await start(t)
    [call] = await calls_of(client, 1102)
    other = await client.put(f"/api/ver1.0/extension/1101/current_calls/{call['call_api_id']}",
                             json={"action": "park"}, headers=AUTH)  # fmt: skip
    assert other.status == 404
    denied = await client.delete(f"/api/ver1.0/extension/1102/current_calls/{call['call_api_id']}",
                                 headers={"Authorization": f"Bearer {LIMITED}"})  # fmt: skip
    assert denied.status == 403
    gone = await client.delete(
        f"/api/ver1.0/extension/1102/current_calls/{call['call_api_id']}", headers=AUTH
    )
    assert gone.status == 204
    assert sent == [{"Action": "Hangup", "Channel": named(t, "PJSIP/102-")}]
