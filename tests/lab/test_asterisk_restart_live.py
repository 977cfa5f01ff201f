"""The real Asterisk stops in the middle of an answered call and comes back: the daemon
reconnects, resynchronises, and the call's components get their one hangup each."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest

from tests.conftest import REPO
from tests.lab.helpers import daemon, place, receiver, subscribe, wait_for

pytestmark = pytest.mark.lab
__all__ = ["daemon", "receiver"]  # fixtures used by name
LAB = REPO / "lab" / "lab.sh"


@pytest.mark.usefixtures("lab")
async def test_asterisk_restart_mid_call(daemon: str, receiver: Any) -> None:
    """Asterisk is stopped while 101 talks to 102 and started again: both get hangup, no second dial-in."""
    got, url = receiver
    for ext in (1101, 1102):
        for kind in ("dial-in", "dial-out", "answer", "hangup"):
            await subscribe(daemon, ext, kind, f"{url}/{ext}", "POST")

    async def call(lab: Any) -> None:
        await lab.phone("102", ring_ms=300)
        placing = asyncio.ensure_future(lab.call("101", "Anna", "102", hold_ms=30000))
        await wait_for(got, 4)  # dial-out, dial-in, two answers
        await asyncio.to_thread(subprocess.run, [LAB, "down"], check=True)  # Asterisk and the phones die
        await asyncio.to_thread(subprocess.run, [LAB, "up"], check=True)
        placing.cancel()

    await place(call)
    await wait_for(got, 6, timeout=30)
    kinds = sorted((g["path"], g["form"]["EventType"]) for g in got)
    assert kinds == [("/1101", "answer"), ("/1101", "dial-out"), ("/1101", "hangup"),
                     ("/1102", "answer"), ("/1102", "dial-in"), ("/1102", "hangup")]  # fmt: skip
    assert all(g["form"]["CallStatus"] == "ANSWER" for g in got if g["form"]["EventType"] == "hangup")
