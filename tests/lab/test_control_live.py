"""Every action of /current_calls/ on a live lab call, with the events it causes: the
daemon runs against the lab's Asterisk, sipp phones talk, the API acts, a receiver
collects every event of the phones involved."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.lab.helpers import api, daemon, place, receiver, subscribe, wait_for

pytestmark = pytest.mark.lab
__all__ = ["daemon", "receiver"]  # fixtures used by name

KINDS = ("dial-in", "dial-out", "answer", "hangup")


async def watch(base: str, url: str, *exts: int) -> None:
    for ext in exts:
        for kind in KINDS:
            await subscribe(base, ext, kind, f"{url}/e{ext}", "POST")


def events(got: list[dict[str, Any]], ext: int) -> list[dict[str, str]]:
    return [g["form"] for g in got if g["path"] == f"/e{ext}"]


def components(got: list[dict[str, Any]], ext: int) -> list[list[dict[str, str]]]:
    """An extension's components, each its events in order."""
    by_sub: dict[str, list[dict[str, str]]] = {}
    for e in events(got, ext):
        by_sub.setdefault(e["SubCallID"], []).append(e)
    return list(by_sub.values())


async def current(base: str, ext: int, state: str = "answered", timeout: float = 10) -> dict[str, Any]:
    """The extension's call in progress in ``state``, once the API shows it."""
    for _ in range(int(timeout * 20)):
        calls = (await api(base, "GET", f"/api/ver1.0/extension/{ext}/current_calls/"))["call_list"]
        found = [c for c in calls if c["state"] == state]
        if found:
            return dict(found[0])
        await asyncio.sleep(0.05)
    raise AssertionError(f"extension {ext} has no {state} call")


async def act(base: str, ext: int, call: dict[str, Any], action: str, dst: str | None = None) -> None:
    body = {"action": action, **({"send_dst": dst} if dst else {})}
    await api(base, "PUT", f"/api/ver1.0/extension/{ext}/current_calls/{call['call_api_id']}", body)


@pytest.mark.usefixtures("lab")
async def test_transfer(daemon: str, receiver: Any) -> None:
    """transfer on 102's call from 101 sends 101 to 103: 103's dial-in keeps the CallID,
    is on 102's behalf, with 101 as RemoteNumber; 102's component ends."""
    got, url = receiver
    await watch(daemon, url, 1102, 1103)

    async def call(lab: Any) -> None:
        await lab.phone("102", ring_ms=300)
        await lab.phone("103", ring_ms=300, hold_ms=1500)
        placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
        live = await current(daemon, 1102)
        await act(daemon, 1102, live, "transfer", "103")
        await placed

    await place(call)
    await wait_for(got, 6)
    [talk] = components(got, 1102)
    [target] = components(got, 1103)
    assert [e["EventType"] for e in target] == ["dial-in", "answer", "hangup"]
    assert (target[0]["CallerIDNum"], target[0]["RemoteNumber"]) == ("000*102", "000*101")
    assert target[0]["CallID"] == talk[0]["CallID"] and talk[-1]["CallStatus"] == "ANSWER"


@pytest.mark.usefixtures("lab")
async def test_attended_transfer(daemon: str, receiver: Any) -> None:
    """attended_transfer: 102 consults 103 (its dial-out, 103's dial-in), then hangs up,
    which completes the transfer: 103's hangup names 101 as RemoteNumber."""
    got, url = receiver
    await watch(daemon, url, 1102, 1103)

    async def call(lab: Any) -> None:
        await lab.phone("102", ring_ms=300)
        await lab.phone("103", ring_ms=500, hold_ms=3000)
        placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
        live = await current(daemon, 1102)
        await act(daemon, 1102, live, "attended_transfer", "103")
        await current(daemon, 1103)  # the target answered the consultation
        await api(daemon, "DELETE", f"/api/ver1.0/extension/1102/current_calls/{live['call_api_id']}")
        await placed

    await place(call)
    await wait_for(got, 8)
    consult = [c for c in components(got, 1102) if c[0]["EventType"] == "dial-out"]
    assert consult and consult[0][0]["CalledNumber"] == "000*103"
    [target] = components(got, 1103)
    assert target[-1]["EventType"] == "hangup" and target[-1]["RemoteNumber"] == "000*101"


@pytest.mark.usefixtures("lab")
async def test_hold_and_offhold(daemon: str, receiver: Any) -> None:
    """hold puts 101 on music on hold (and 102 aside), offhold bridges them again: the
    call goes on as one component each; BridgedDuration leaves the held time out."""
    got, url = receiver
    await watch(daemon, url, 1101, 1102)
    moh: list[str] = []

    async def call(lab: Any) -> None:
        lab.ami.register_event("MusicOnHoldStart", lambda _m, msg: moh.append(msg.get("Channel", "")))
        await lab.phone("102", ring_ms=300)
        placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
        live = await current(daemon, 1102)
        await act(daemon, 1102, live, "hold")
        await asyncio.sleep(2.0)
        await act(daemon, 1102, live, "offhold")
        await asyncio.sleep(1.0)
        await api(daemon, "DELETE", f"/api/ver1.0/extension/1102/current_calls/{live['call_api_id']}")
        await placed

    await place(call)
    await wait_for(got, 6)
    assert any(c.startswith("PJSIP/101-") for c in moh), moh
    for ext in (1101, 1102):
        [comp] = components(got, ext)
        hangup = comp[-1]
        assert hangup["CallStatus"] == "ANSWER"
        assert int(hangup["Duration"]) - int(hangup["BridgedDuration"]) >= 1_500_000, hangup


@pytest.mark.usefixtures("lab")
async def test_park(daemon: str, receiver: Any) -> None:
    """park on 102's call parks 101 (slot 701); 103 takes it from the slot: its dial-out
    to 701 names 101 as RemoteNumber."""
    got, url = receiver
    await watch(daemon, url, 1102, 1103)

    async def call(lab: Any) -> None:
        await lab.phone("102", ring_ms=300)
        placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
        live = await current(daemon, 1102)
        await act(daemon, 1102, live, "park")
        await asyncio.sleep(1.5)
        await lab.call("103", "Carl", "701", hold_ms=1500)
        await placed

    await place(call)
    await wait_for(got, 6)
    [talk] = components(got, 1102)
    assert talk[-1]["EventType"] == "hangup" and talk[-1]["CallStatus"] == "ANSWER"
    [taken] = components(got, 1103)
    assert [e["EventType"] for e in taken] == ["dial-out", "answer", "hangup"]
    assert (taken[0]["CalledNumber"], taken[0]["RemoteNumber"]) == ("701", "000*101")


@pytest.mark.usefixtures("lab")
async def test_pickup(daemon: str, receiver: Any) -> None:
    """pickup on 102's ringing call: 103 is rung and takes it; 102 ends CANCEL, 103 gets
    an answered dial-in from 101."""
    got, url = receiver
    await watch(daemon, url, 1102, 1103)

    async def call(lab: Any) -> None:
        await lab.phone("102", "ring")
        await lab.phone("103", ring_ms=300, hold_ms=1500)
        placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
        live = await current(daemon, 1102, "ringing")
        await act(daemon, 1102, live, "pickup", "103")
        await placed

    await place(call)
    await wait_for(got, 5)
    [rung] = components(got, 1102)
    assert rung[-1]["CallStatus"] == "CANCEL"
    [picker] = components(got, 1103)
    assert [e["EventType"] for e in picker] == ["dial-in", "answer", "hangup"]
    assert picker[0]["CallerIDNum"] == "000*101" and picker[-1]["CallStatus"] == "ANSWER"


@pytest.mark.usefixtures("lab")
@pytest.mark.parametrize(
    ("action", "options"), [("eavesdrop", "qE"), ("whisper", "qwE"), ("conference", "qBE")]
)
async def test_spying(daemon: str, receiver: Any, action: str, options: str) -> None:
    """eavesdrop, whisper, conference: 103 is rung and ChanSpy starts on 102's channel
    (Asterisk's ChanSpyStart names both); the call's own events are untouched."""
    got, url = receiver
    await watch(daemon, url, 1101, 1102)
    spied: list[tuple[str, str]] = []

    async def call(lab: Any) -> None:
        lab.ami.register_event(
            "ChanSpyStart",
            lambda _m, msg: spied.append((msg.get("SpyerChannel", ""), msg.get("SpyeeChannel", ""))),
        )
        await lab.phone("102", ring_ms=300, hold_ms=4000)
        await lab.phone("103", ring_ms=300, hold_ms=2000)
        placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
        live = await current(daemon, 1102)
        await act(daemon, 1102, live, action, "103")
        await placed

    await place(call)
    await wait_for(got, 6)
    assert any(a.startswith("PJSIP/103-") and b.startswith("PJSIP/102-") for a, b in spied), spied
    for ext in (1101, 1102):
        [comp] = components(got, ext)
        assert [e["EventType"] for e in comp][-1] == "hangup" and comp[-1]["CallStatus"] == "ANSWER"
