"""Every call flow through the daemon with a real Asterisk: queue, IVR, callback by REST,
transfer by REST, voicemail. Each checks what the subscriber's receiver got."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.lab.helpers import api, daemon, place, receiver, subscribe, wait_for

pytestmark = pytest.mark.lab
__all__ = ["daemon", "receiver"]  # fixtures used by name


def fields(got: list[dict[str, Any]], path: str) -> list[dict[str, str]]:
    return [g["form"] or g["query"] for g in got if g["path"] == path]


@pytest.mark.usefixtures("lab")
async def test_queue_threads(daemon: str, receiver: Any) -> None:
    """101 calls the queue; 102 rings out, 103 answers: the queue gets its in-thread
    (dial-in, hangup Bridged=yes) and one out-thread per agent attempt."""
    got, url = receiver
    for ev in ("dial-in", "answer", "hangup"):
        await subscribe(daemon, 1300, ev, f"{url}/queue", "POST")

    async def call(lab: Any) -> None:
        await lab.phone("102", "ring")
        await lab.phone("103", ring_ms=1500)
        await lab.call("101", "Anna", "300", hold_ms=1500)

    await place(call)
    await wait_for(got, 7)
    evs = fields(got, "/queue")
    by_sub: dict[str, list[dict[str, str]]] = {}
    for e in evs:
        by_sub.setdefault(e["SubCallID"], []).append(e)
    threads = sorted(([e["EventType"] for e in v], v[0]["CallFlow"], v[-1]["CallStatus"], v[0]["CalledNumber"])
                     for v in by_sub.values())  # fmt: skip
    assert threads == [
        (["dial-in", "answer", "hangup"], "out", "ANSWER", "000*103"),
        (["dial-in", "hangup"], "in", "ANSWER", "000*300"),
        (["dial-in", "hangup"], "out", "CANCEL", "000*102"),
    ]
    in_hangup = next(v[-1] for v in by_sub.values() if v[0]["CallFlow"] == "in")
    assert in_hangup["Bridged"] == "yes" and int(in_hangup["BridgedDuration"]) > 1_000_000
    assert len({e["CallID"] for e in evs}) == 1


@pytest.mark.usefixtures("lab")
async def test_ivr_routes_to_a_phone(daemon: str, receiver: Any) -> None:
    """An outside caller reaches the IVR and presses 1: the IVR gets dial-in and a hangup
    with Bridged=yes when the call is released; no answer or dial-out."""
    got, url = receiver
    for ev in ("dial-in", "dial-out", "answer", "hangup"):
        await subscribe(daemon, 1400, ev, f"{url}/ivr", "GET")

    async def call(lab: Any) -> None:
        await lab.phone("102", ring_ms=500)
        await lab.inbound("+74950000003", "74951230002", hold_ms=4500, dtmf=("1", 1500))

    await place(call)
    await wait_for(got, 2)
    evs = fields(got, "/ivr")
    assert [e["EventType"] for e in evs] == ["dial-in", "hangup"]
    assert evs[1]["Bridged"] == "yes" and evs[1]["CalledDID"] == "74951230002"
    assert evs[1]["CallerIDNum"] == "+74950000003"


@pytest.mark.usefixtures("lab")
async def test_callback_started_over_rest(daemon: str, receiver: Any) -> None:
    """POST /callback/ rings 101, then the outside number: 101 gets dial-out/answer/hangup
    carrying the CallBackID and Tag; no dial-in to itself."""
    got, url = receiver
    for ev in ("dial-in", "dial-out", "answer", "hangup"):
        await subscribe(daemon, 1101, ev, f"{url}/owner", "POST")

    async def call(lab: Any) -> None:
        await lab.phone("101", ring_ms=500)
        await lab.carrier(ring_ms=500, hold_ms=1500)
        answer = await api(daemon, "POST", "/extension/1101/callback/",
                           {"src_num": ["101"], "dst_num": "+79817654321", "tag": "live"})  # fmt: skip
        call.answer = answer  # type: ignore[attr-defined]
        await asyncio.sleep(4)

    await place(call)
    await wait_for(got, 3)
    evs = fields(got, "/owner")
    answer = call.answer  # type: ignore[attr-defined]
    assert [e["EventType"] for e in evs] == ["dial-out", "answer", "hangup"]
    assert all(e["CallBackID"] == answer["callback_id"] and e["Tag"] == "live" for e in evs)
    assert all(e["CallerIDNum"] == "000*101" and e["CallFlow"] == "out" for e in evs)
    assert evs[0]["CalledNumber"] == "+79817654321"
    # consumers match the callback API's answer against the events, as with Telphin
    assert all(e["CallID"] == answer["call_id"] == e["CallBackID"] for e in evs)
    assert all(e["CallAPIID"] == answer["call_api_id"] and e["CallAPIID"].startswith("cb-") for e in evs)
    assert evs[-1]["CallStatus"] == "ANSWER"


@pytest.mark.usefixtures("lab")
async def test_blind_transfer_over_rest(daemon: str, receiver: Any) -> None:
    """101 calls 102; the API transfers 102 to 103 using 101's CallAPIID: 103's dial-in
    keeps the CallID, is on behalf of 101, and names 102 as RemoteNumber."""
    got, url = receiver
    await subscribe(daemon, 1101, "answer", f"{url}/a", "POST")
    await subscribe(daemon, 1103, "dial-in", f"{url}/t", "POST")

    async def call(lab: Any) -> None:
        await lab.phone("102", ring_ms=300)
        await lab.phone("103", ring_ms=300, hold_ms=1000)
        placed = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=None))
        for _ in range(100):
            if fields(got, "/a"):
                break
            await asyncio.sleep(0.05)
        api_id = fields(got, "/a")[0]["CallAPIID"]
        await api(daemon, "POST", f"/calls/{api_id}/transfer", {"to": "103"})
        await placed

    await place(call)
    await wait_for(got, 2)
    answer, target = fields(got, "/a")[0], fields(got, "/t")[0]
    assert target["CallID"] == answer["CallID"]
    assert (target["CallerIDNum"], target["RemoteNumber"], target["CalledNumber"]) == (
        "000*101",
        "000*102",
        "000*103",
    )


@pytest.mark.usefixtures("lab")
async def test_voicemail_left(daemon: str, receiver: Any) -> None:
    """102 does not answer and its voicemail takes a message: one voicemail event with
    the bridge's record id as RecID and the message length (from the spool)."""
    got, url = receiver
    await subscribe(daemon, 1102, "voicemail", f"{url}/vm", "POST")

    async def call(lab: Any) -> None:
        await lab.db("VM", "102", "1")
        await lab.phone("102", "ring")
        await lab.call("101", "Anna", "102", hold_ms=5000, audio=True)
        await lab.action(Action="DBDel", Family="VM", Key="102")

    await place(call)
    await wait_for(got, 1)
    vm = fields(got, "/vm")
    assert len(vm) == 1
    assert re.fullmatch(r"1102-[0-9a-f]{32}", vm[0]["RecID"]), vm[0]["RecID"]
    assert 3_000_000 <= int(vm[0]["Duration"]) <= 6_000_000
    assert vm[0]["CallerIDNum"] == "000*101"
