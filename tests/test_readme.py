"""The README's event examples are what the bridge sends: each is checked against the
reviewed golden files (which the translator is held to by tests/test_translator_golden.py)."""

from __future__ import annotations

import json
import re

import pytest

from bridge.config import load_config
from tests.conftest import FIXTURES, REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
CONFIG = load_config(FIXTURES / "lab.yaml")
EXTENDED = {e.id: e.extended for e in CONFIG.extensions}
#: the call-flow examples, in the README's order, and the fixture each shows
FLOWS = ["queue-answered-second-member", "ivr-to-phone", "callback-answered", "blind-transfer-refer",
         "voicemail", "sip-message", "forward-external-from-trunk", "inbound-did-recorded",
         "ring-group-answered", "pickup-directed", "park-retrieve", "conference", "attended-transfer"]  # fmt: skip
TELLING = ["CalledDID", "Duration", "BridgedDuration", "Bridged", "RecID", "Diversion", "ClientApiID",
           "CallBackID", "Tag", "Transfered", "RemoteNumber", "ANI", "Message"]  # fmt: skip


def golden(name: str) -> list[dict[str, object]]:
    path = FIXTURES / f"{name}.expected.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def shortened(item: dict[str, object]) -> str:
    """One event as the README's call-flow section shows it (see its introduction)."""
    e: dict[str, object] = item["event"]  # type: ignore[assignment]
    standalone = str(e["EventType"]).startswith("message-")
    sub = "1" if standalone else str(e["SubCallID"]).rsplit("-", 1)[-1]
    parts = [f"{item['extension_id']:5} {e['EventType']:11} {e['CallFlow']:3} sub#{sub}"]
    if "CallStatus" in e:
        parts.append(f"CallStatus={e['CallStatus']}")
    parts.append(f"CallerIDNum={e['CallerIDNum']}")
    if "CallerExtensionID" in e and EXTENDED[e["CallerExtensionID"]] != e["CallerIDNum"]:  # type: ignore[index]
        parts.append(f"CallerExtension={str(e['CallerExtension']).split('@')[0]}")
    parts.append(f"CalledNumber={e['CalledNumber']}")
    parts += [f"{k}={e[k]}" for k in TELLING if k in e]
    return " ".join(parts)


def test_replay_example_is_the_first_event_of_its_fixture() -> None:
    """The JSON line under "Replaying a recorded stream" is the fixture's first event."""
    m = re.search(r"ami-bridge replay fixtures/inbound-did-recorded.ami.*?```json\n(.*?)\n```", README, re.S)
    assert m, "the replay example is gone from the README"
    assert json.loads(m.group(1)) == golden("inbound-did-recorded")[0]


def test_call_flow_examples_are_the_golden_events() -> None:
    """Each example block of "Call flows and the events they give" is its fixture's golden
    events, shortened as the section says."""
    section = README[
        README.index("## Call flows and the events they give") : README.index("**Call control.**")
    ]
    blocks = re.findall(r"```\n(.*?)\n```", section, re.S)
    assert len(blocks) == len(FLOWS)
    for block, name in zip(blocks, FLOWS, strict=True):
        assert block.splitlines() == [shortened(item) for item in golden(name)], name


@pytest.mark.parametrize("value", ['"CallFlow": "IN"', '"CallFlow": "OUT"', "CallFlow=IN", "CallFlow=OUT"])
def test_no_upper_case_call_flow_is_shown(value: str) -> None:
    """Nowhere does the README show CallFlow in capitals, as real Telphin never sends it."""
    assert value not in README
