"""A Telphin integration, changed in nothing but its base URL and credentials, against the
daemon and the lab: it signs in, finds its extension by name, subscribes, starts a
callback, and on every hangup fetches the call's history and recording; the recording is
byte for byte the MixMonitor file, the history agrees with the hangup events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.lab.helpers import CLIENT_ID, CLIENT_SECRET, SPOOL, daemon, place, receiver, wait_for
from tests.telphin_client import TelphinClient

pytestmark = pytest.mark.lab
__all__ = ["daemon", "receiver"]  # fixtures used by name


@pytest.mark.usefixtures("lab")
async def test_a_telphin_integration_works_unchanged(daemon: str, receiver: Any) -> None:
    """Token, user, extension by name, subscriptions, a callback, a recorded inbound call;
    then the history and the recording of each hangup."""
    got, url = receiver
    client = TelphinClient(daemon, CLIENT_ID, CLIENT_SECRET)
    try:
        token = await client.sign_in()
        assert token["token_type"] == "Bearer" and token["expires_in"] > 0
        assert (await client.user())["client_id"] == CLIENT_ID
        ext = await client.extension_id("000*101")
        assert ext == 1101
        for kind in ("dial-in", "dial-out", "answer", "hangup"):
            await client.subscribe(ext, kind, f"{url}/crm?action=event&crm_token=abc")
        callback: dict[str, Any] = {}

        async def calls(lab: Any) -> None:
            await lab.phone("101", ring_ms=800, audio=True)
            await lab.carrier(ring_ms=500, hold_ms=2000)
            callback.update(await client.callback(ext, "101", "+79817654321"))
            await asyncio.sleep(6)
            await lab.inbound("+74957654321", "74951230001", hold_ms=3000, audio=True)

        await place(calls)
        await wait_for(got, 6)
        hangups = [g["form"] for g in got if g["form"].get("EventType") == "hangup"]
        assert len(hangups) == 2
        by_call = {h["CallID"]: h for h in hangups}
        assert callback["call_id"] in by_call  # the events carry the call_id the callback answered
        assert by_call[callback["call_id"]]["CallAPIID"] == callback["call_api_id"]
        for call_id, hangup in by_call.items():
            history = await client.history(call_id)
            assert history["call_uuid"] == call_id
            mine = [c for c in history["cdr"] if c["sub_call_id"] == hangup["SubCallID"]]
            assert len(mine) == 1
            assert mine[0]["duration"] == round(int(hangup["Duration"]) / 1e6)
            assert history["bridged_duration"] >= mine[0]["duration"] - 1
        inbound = next(h for h in hangups if h["CallID"] != callback["call_id"])
        assert inbound["RecID"].startswith("1101-")
        audio = await client.recording_of(inbound["CallID"])
        assert audio is not None and len(audio) > 10_000
        # the lab's dialplan records the inbound call as MixMonitor(${UNIQUEID}.wav) of the
        # trunk's channel, whose Uniqueid is the CallID; other calls' recordings of the same
        # audio may be byte-identical, so the name decides
        recorded = SPOOL / "monitor" / f"{inbound['CallID']}.wav"
        assert recorded.read_bytes() == audio
    finally:
        await client.close()
