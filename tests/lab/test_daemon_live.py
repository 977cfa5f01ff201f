"""The daemon end to end: real Asterisk -> `ami-bridge run` -> REST subscriptions -> receiver.

The receiver is a real aiohttp server on loopback; subscriptions are made over the
daemon's own REST API; the calls are placed by sipp through the lab's Asterisk.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.lab.helpers import MANAGEMENT, daemon, place, receiver, subscribe, wait_for

pytestmark = pytest.mark.lab
__all__ = ["daemon", "receiver"]  # fixtures used by name


@pytest.mark.usefixtures("lab")
async def test_internal_call_reaches_get_and_post_subscribers(daemon: str, receiver: Any) -> None:
    """101 calls 102, answered: 101's GET subscriber and 102's POST subscriber get exactly their events."""
    got, url = receiver
    for ev in ("dial-out", "answer", "hangup"):
        await subscribe(daemon, 1101, ev, f"{url}/caller?myid=1101", "GET")
    for ev in ("dial-in", "answer", "hangup"):
        await subscribe(daemon, 1102, ev, f"{url}/callee", "POST")
    await subscribe(daemon, 1103, "dial-in", f"{url}/nobody", "GET")

    async def call(lab: Any) -> None:
        await lab.phone("102", ring_ms=500)
        await lab.call("101", "Anna", "102", hold_ms=1000)

    await place(call)
    await wait_for(got, 6)
    caller = [g for g in got if g["path"] == "/caller"]
    callee = [g for g in got if g["path"] == "/callee"]
    assert [g["query"]["EventType"] for g in caller] == ["dial-out", "answer", "hangup"]
    assert [g["form"]["EventType"] for g in callee] == ["dial-in", "answer", "hangup"]
    assert all(g["method"] == "GET" and g["query"]["myid"] == "1101" for g in caller)
    assert all(g["method"] == "POST" for g in callee)
    assert caller[-1]["query"]["CallStatus"] == "ANSWER" and int(caller[-1]["query"]["Duration"]) > 900_000
    assert callee[0]["form"]["CallerIDNum"] == "000*101" and callee[0]["form"]["CalledExtensionID"] == "1102"
    assert len({g["key"] for g in got}) == 6
    assert not [g for g in got if g["path"] == "/nobody"]
    assert len(got) == 6
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{MANAGEMENT[daemon]}/health") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
        async with s.get(f"{MANAGEMENT[daemon]}/metrics") as r:
            metrics = await r.text()
    assert "ami_bridge_ami_connected 1.0" in metrics
    assert 'ami_bridge_events_total{type="dial-in"}' in metrics
    assert 'ami_bridge_deliveries_total{outcome="delivered"} 6.0' in metrics


@pytest.mark.usefixtures("lab")
async def test_busy_inbound_call_hangup_only(daemon: str, receiver: Any) -> None:
    """A subscriber of 102's hangups only gets one hangup BUSY for a busy DID call."""
    got, url = receiver
    await subscribe(daemon, 1102, "hangup", f"{url}/h", "POST")

    async def call(lab: Any) -> None:
        await lab.phone("102", "busy", ring_ms=300)
        await lab.inbound("+74950000002", "74951230005")

    await place(call)
    await wait_for(got, 1)
    assert len(got) == 1
    form = got[0]["form"]
    assert (form["EventType"], form["CallStatus"], form["CalledDID"]) == ("hangup", "BUSY", "74951230005")
