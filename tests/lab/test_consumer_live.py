"""A Telphin integration against the live daemon and the real Asterisk: every recorded
scenario is placed again through the lab, and the consumer written the way public
Telphin consumers are (tests/telphin_consumer.py) files every phone hangup under the right
extension and the right other party, as tests/test_telphin_consumer.py's table says.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.lab.helpers import daemon, subscribe
from tests.telphin_consumer import Consumer
from tests.test_telphin_consumer import EXPECTED, PHONES, crm, filed

pytestmark = pytest.mark.lab
__all__ = ["crm", "daemon"]  # fixtures used by name


@pytest.mark.usefixtures("lab")
async def test_every_scenario_live_is_filed_right(daemon: str, crm: tuple[Consumer, str, list[Any]]) -> None:
    """Each scenario of lab/driver.py, played live with every phone subscribed (GET and
    POST alike): the hangups the consumer files are exactly the expected ones, none dropped."""
    from driver import SCENARIOS, record_one  # type: ignore[import-not-found]

    consumer, url, _ = crm
    for i, ext in enumerate(PHONES):
        for kind in ("dial-in", "dial-out", "hangup"):
            await subscribe(
                daemon, ext.id, kind, f"{url}/telphin/{ext.id}?myid={ext.id}", "GET" if i % 2 else "POST"
            )
    assert sorted(SCENARIOS) == sorted(EXPECTED)
    wrong = {}
    out = Path(tempfile.mkdtemp(prefix="ami-bridge-consumer-"))
    for name, rows in EXPECTED.items():
        before = len(consumer.hangups)
        await record_one(name, out)
        for _ in range(100):
            if len(consumer.hangups) - before >= len(rows) and not consumer.dropped:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        got = filed(consumer.hangups[before:])
        if got != Counter(rows) or consumer.dropped:
            wrong[name] = (sorted(got.elements()), sorted(rows), consumer.dropped[:])
            consumer.dropped.clear()
    assert wrong == {}
