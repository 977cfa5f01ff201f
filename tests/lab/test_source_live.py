"""The live AMI source against the lab's real Asterisk, translated as the daemon will.

The calls here are flows that were never recorded as fixtures, so these tests check
the translator on fresh real-Asterisk output, not on its golden files.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from panoramisk import Manager

from bridge.ami.source import AmiSource, SourceItem
from bridge.config import AmiConfig, load_config
from bridge.translate import Emitted, Translator
from tests.conftest import FIXTURES, REPO

pytestmark = pytest.mark.lab
sys.path.insert(0, str(REPO / "lab"))

CONFIG = load_config(FIXTURES / "lab.yaml")


async def run_flow(place: Callable[[Any], Awaitable[None]], hangups: int) -> list[Emitted]:
    """Translate the live stream while ``place`` drives sipp, until ``hangups`` hangup events."""
    from driver import AMI, Lab  # type: ignore[import-not-found]

    source = AmiSource(CONFIG.ami)
    source.start()
    translator = Translator(CONFIG)
    events: list[Emitted] = []

    async def consume() -> None:
        async for item in source:
            if item.kind == "message" and item.msg is not None:
                events.extend(translator.feed(item.msg))
                if sum(1 for _, e in events if e["EventType"] == "hangup") >= hangups:
                    return

    consumer = asyncio.ensure_future(consume())
    ami = Manager(host=AMI[0], port=AMI[1], username="lab", secret="lab-secret", ping_delay=3600)
    ami.connect()
    lab = Lab(None, ami)
    try:
        while not source.connected:
            await asyncio.sleep(0.05)
        await place(lab)
        await asyncio.wait_for(consumer, 30)
    finally:
        consumer.cancel()
        await lab.close()
        ami.close()
        source.close()
    return events


def by_type(events: list[Emitted]) -> list[tuple[int, str, str]]:
    return [(ext, e["EventType"], e["CallStatus"]) for ext, e in events]


@pytest.mark.usefixtures("lab")
async def test_outbound_call_refused_busy_by_the_carrier() -> None:
    """101 dials an external number and the carrier answers 486: dial-out with ANI, hangup BUSY."""

    async def place(lab: Any) -> None:
        await lab.carrier("busy", ring_ms=500)
        await lab.call("101", "Anna", "+74991112233")

    events = await run_flow(place, hangups=1)
    assert by_type(events) == [(1101, "dial-out", "CALLING"), (1101, "hangup", "BUSY")]
    first = events[0][1]
    assert first["CalledNumber"] == "+74991112233"
    assert first["ANI"] == "+74951230000"
    assert first["CallerIDNum"] == "000*101"
    assert "CalledExtensionID" not in first


@pytest.mark.usefixtures("lab")
async def test_inbound_did_answered_then_hung_up_by_the_phone() -> None:
    """A trunk call to DID 74951230005 rings 102, which answers and hangs up itself."""

    async def place(lab: Any) -> None:
        await lab.phone("102", ring_ms=700, hold_ms=1500)
        await lab.inbound("+74950000001", "74951230005", hold_ms=None,
                          headers={"Client-Api-Id": "live-1"})  # fmt: skip

    events = await run_flow(place, hangups=1)
    assert by_type(events) == [
        (1102, "dial-in", "CALLING"),
        (1102, "answer", "ANSWER"),
        (1102, "hangup", "ANSWER"),
    ]
    hangup = events[-1][1]
    assert hangup["CalledDID"] == "74951230005"
    assert hangup["CallerIDNum"] == "+74950000001"
    assert hangup["ClientApiID"] == "live-1"
    assert 1_400_000 < hangup["Duration"] < 3_000_000
    assert len({e["SubCallID"] for _, e in events}) == 1


@pytest.mark.usefixtures("lab")
async def test_refused_login_is_reported_and_retried() -> None:
    """A wrong secret yields a login-failed item (and the source keeps retrying), no hang."""
    bad = AmiConfig(host="127.0.0.1", port=15038, username="bridge", secret="wrong", reconnect_min=0.2)
    source = AmiSource(bad)
    source.start()
    items: list[SourceItem] = []
    try:
        async with asyncio.timeout(15):
            async for item in source:
                items.append(item)
                if sum(1 for i in items if i.kind == "login-failed") == 2:
                    break
    finally:
        source.close()
    assert not source.connected
    assert "connected" not in [i.kind for i in items]
