"""Every recorded flow, played again live through the lab's Asterisk with the daemon
running and every extension subscribed to every event type:

* the webhooks are the reviewed golden events of that scenario (ids, times and lengths
  aside, component by component: Asterisk orders events of the same millisecond as it
  likes from one run to the next);
* a CRM written the way public Telphin consumers are (tests/telphin_consumer.py) files
  every phone hangup under the right extension and the right other party, as
  tests/test_telphin_consumer.py's table says.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from tests.conftest import FIXTURES, config_path
from tests.lab.helpers import running_daemon, subscribe
from tests.shapes import components, described, golden
from tests.telphin_consumer import Consumer
from tests.test_telphin_consumer import EXPECTED, PROFILES, crm, filed

pytestmark = pytest.mark.lab
__all__ = ["crm"]  # fixtures used by name

KINDS = ("dial-in", "dial-out", "answer", "hangup", "voicemail", "message-in", "message-out")


@pytest.mark.usefixtures("lab")
@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_every_scenario_live_gives_its_golden_events(
    profile: str, crm: tuple[Consumer, str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Each scenario of lab/driver.py, played live with the daemon configured for its lab
    profile: the same components as its golden file, and the consumer files exactly the
    expected hangups, none dropped."""
    from driver import SCENARIOS, record_one  # type: ignore[import-not-found]

    consumer, url, raw = crm
    config = load_config(PROFILES[profile])
    phones = {e.id for e in config.extensions if e.type == "phone"}
    names = sorted(n for n in SCENARIOS if config_path(FIXTURES / f"{n}.ami") == PROFILES[profile])
    assert names and all(n in EXPECTED for n in names)
    # LIVE_SCENARIOS=a,b plays only those (while working on them)
    only = [n for n in os.environ.get("LIVE_SCENARIOS", "").split(",") if n]
    wrong: dict[str, Any] = {}
    out = Path(tempfile.mkdtemp(prefix="ami-bridge-live-"))
    async with running_daemon(tmp_path, PROFILES[profile]) as daemon:
        for i, ext in enumerate(config.extensions):
            for kind in KINDS:
                method = "GET" if i % 2 else "POST"
                await subscribe(daemon, ext.id, kind, f"{url}/telphin/{ext.id}?myid={ext.id}", method)
        for name in [n for n in names if n in only] if only else names:
            want = components(golden(name))
            before, filed_before = len(raw), len(consumer.hangups)
            await record_one(name, out)
            for _ in range(100):
                if len(raw) - before >= sum(len(c) * n for c, n in want.items()):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.7)  # and nothing more comes
            got = components([(r["ext"], {k: v for k, v in r.items() if k != "ext"}) for r in raw[before:]])
            hangups = filed([h for h in consumer.hangups[filed_before:] if h.extension_id in phones])
            if got != want:
                wrong[name] = {"missing": described(want - got), "unexpected": described(got - want)}
            if hangups != Counter(EXPECTED[name]) or consumer.dropped:
                wrong[f"{name} (consumer)"] = (sorted(hangups.elements()), sorted(EXPECTED[name]),
                                               consumer.dropped[:])  # fmt: skip
                consumer.dropped.clear()
    (out / "differences.json").write_text(json.dumps(wrong, indent=1, default=str))
    assert wrong == {}, f"see {out / 'differences.json'}"
