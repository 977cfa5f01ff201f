"""The recorded fixtures: each is described, complete, and shows what its scenario did.

These checks are about the recordings themselves (did the lab do what the scenario
says?), not about the bridge's translation of them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bridge.ami.message import Message, parse, split_stream
from tests.conftest import FIXTURES, fixture_paths

PATHS = fixture_paths()


def events(path: Path) -> list[Message]:
    blocks, tail = split_stream(path.read_bytes())
    assert tail is None, f"{path.name} ends with a truncated block"
    return [m for m in map(parse, blocks) if m.event]


def where(msgs: list[Message], event: str, **fields: str) -> list[Message]:
    return [m for m in msgs if m.event == event and all(m.get(k) == v for k, v in fields.items())]


def test_every_lab_scenario_has_a_fixture() -> None:
    """Each scenario of the lab driver has been recorded into fixtures/."""
    import sys

    sys.path.insert(0, str(FIXTURES.parent / "lab"))
    from driver import SCENARIOS  # type: ignore[import-not-found]

    assert sorted(SCENARIOS) == sorted(p.stem for p in PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_fixture_is_described(path: Path) -> None:
    """Every fixture has a NAME.md saying what happened."""
    md = path.with_suffix(".md")
    assert md.exists()
    assert "## What happened" in md.read_text()


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_stream_is_raw_crlf_after_login(path: Path) -> None:
    """The file starts after login (no banner, no login response) and keeps CRLF."""
    data = path.read_bytes()
    assert not data.startswith(b"Asterisk Call Manager/")
    assert b"Authentication accepted" not in data
    assert b"\r\n\r\n" in data
    assert data.count(b"\n") == data.count(b"\r\n")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_every_channel_gets_its_hangup(path: Path) -> None:
    """Each channel created during the recording is hung up before it ends."""
    msgs = events(path)
    created = {
        m.get("Uniqueid")
        for m in where(msgs, "Newchannel")
        if not m.get("Channel", "").startswith("Message/")
    }
    hung = {m.get("Uniqueid") for m in where(msgs, "Hangup")}
    assert created <= hung, f"channels never hung up: {created - hung}"
    twice = [u for u, n in Counter(m.get("Uniqueid") for m in where(msgs, "Hangup")).items() if n > 1]
    assert not twice, f"channels hung up twice: {twice}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_events_carry_timestamps_and_channel_variables(path: Path) -> None:
    """timestampevents is on (only FullyBooted lacks it) and channel events carry ChanVariable."""
    msgs = events(path)
    assert all(m.get("Timestamp") for m in msgs if m.event != "FullyBooted")
    for m in where(msgs, "Newchannel"):
        assert {"TAG", "CALLBACKID", "DIVERSION", "CLIENT_API_ID", "RECID", "FORWARDED_FROM", "DID"} <= set(
            m.variables()
        )


def varset(msgs: list[Message], name: str) -> list[str]:
    return [m.get("Value", "") for m in where(msgs, "VarSet", Variable=name)]


def dial_statuses(msgs: list[Message]) -> set[str]:
    return {m.get("DialStatus", "") for m in where(msgs, "DialEnd")}


# What each scenario must show. Each entry: (event, {header: value}) that must occur at
# least once; ("VarSet", {"Variable": N, "Value": V}) checks a variable; "!Event" must not.
KEY_EVENTS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "internal-answered-caller-hangup": [
        ("DialBegin", {"Channel": "PJSIP/101-*", "DestChannel": "PJSIP/102-*"}),
        ("DialEnd", {"DialStatus": "ANSWER"}),
        ("BridgeEnter", {}),
        ("Hangup", {"Channel": "PJSIP/101-*", "Cause": "16"}),
    ],
    "internal-answered-callee-hangup": [
        ("DialEnd", {"DialStatus": "ANSWER"}),
        ("HangupRequest", {"Channel": "PJSIP/102-*"}),
    ],
    "internal-busy": [
        ("DialEnd", {"DialStatus": "BUSY"}),
        ("Hangup", {"Channel": "PJSIP/102-*", "Cause": "17"}),
    ],
    "internal-noanswer": [("DialEnd", {"DialStatus": "NOANSWER"}), ("!BridgeEnter", {})],
    "internal-cancel": [("DialEnd", {"DialStatus": "CANCEL"}), ("!BridgeEnter", {})],
    "internal-chanunavail": [
        ("VarSet", {"Variable": "DIALSTATUS", "Value": "CHANUNAVAIL"}),
        ("!DialBegin", {}),
    ],
    "internal-congestion": [("DialEnd", {"DialStatus": "CONGESTION"}), ("Hangup", {"Cause": "34"})],
    "inbound-did-recorded": [
        ("Newchannel", {"Channel": "PJSIP/trunk-*", "Exten": "74951230001"}),
        (
            "VarSet",
            {"Variable": "__DIVERSION", "Value": "<sip:+74951112233@carrier.example>;reason=unconditional"},
        ),
        ("VarSet", {"Variable": "__CLIENT_API_ID", "Value": "crm-4711-Az"}),
        ("VarSet", {"Variable": "__DID", "Value": "74951230001"}),
        ("VarSet", {"Variable": "__RECID"}),
        ("MixMonitorStart", {}),
        ("DialEnd", {"DestChannel": "PJSIP/101-*", "DialStatus": "ANSWER"}),
    ],
    "inbound-busy": [
        ("Newchannel", {"Channel": "PJSIP/trunk-*", "Exten": "74951230005"}),
        ("DialEnd", {"DialStatus": "BUSY"}),
    ],
    "ivr-caller-hangup": [
        ("Newexten", {"Context": "ivr-main", "Application": "BackGround"}),
        ("!DialBegin", {}),
    ],
    "ivr-to-phone": [
        ("Newexten", {"Context": "ivr-main", "Application": "BackGround"}),
        ("Newexten", {"Context": "ivr-main", "Exten": "1"}),
        ("DialEnd", {"DestChannel": "PJSIP/102-*", "DialStatus": "ANSWER"}),
    ],
    "queue-answered-second-member": [
        ("QueueCallerJoin", {"Queue": "support"}),
        ("AgentCalled", {"DestChannel": "PJSIP/102-*"}),
        ("AgentCalled", {"DestChannel": "PJSIP/103-*"}),
        ("AgentConnect", {"DestChannel": "PJSIP/103-*"}),
        ("DialEnd", {"DestChannel": "PJSIP/102-*", "DialStatus": "CANCEL"}),
        ("AgentComplete", {}),
    ],
    "queue-abandoned": [
        ("QueueCallerJoin", {"Queue": "support"}),
        ("QueueCallerAbandon", {"Queue": "support"}),
        ("!AgentConnect", {}),
    ],
    "queue-local-members": [
        ("QueueCallerJoin", {"Queue": "sales"}),
        ("AgentCalled", {"DestChannel": "Local/104@queue-members-*;1"}),
        ("DialBegin", {"Channel": "Local/105@queue-members-*;2", "DestChannel": "PJSIP/105-*"}),
        ("AgentConnect", {"DestChannel": "Local/105@queue-members-*;1"}),
        ("AgentComplete", {}),
    ],
    "forward-external-from-trunk": [
        ("VarSet", {"Variable": "__FORWARDED_FROM", "Value": "104"}),
        ("DialBegin", {"Channel": "PJSIP/trunk-*", "DestChannel": "Local/+79161234567@outbound-*;1"}),
        ("DialBegin", {"Channel": "Local/+79161234567@outbound-*;2", "DestChannel": "PJSIP/trunk-*"}),
        ("DialEnd", {"DestChannel": "PJSIP/trunk-*", "DialStatus": "ANSWER"}),
    ],
    "forward-external-internal": [
        ("VarSet", {"Variable": "__FORWARDED_FROM", "Value": "104"}),
        ("DialBegin", {"Channel": "PJSIP/101-*", "DestChannel": "Local/+79161234567@outbound-*;1"}),
        ("DialEnd", {"DestChannel": "PJSIP/trunk-*", "DialStatus": "ANSWER"}),
    ],
    "outbound-external": [
        (
            "DialBegin",
            {"Channel": "PJSIP/101-*", "DestChannel": "PJSIP/trunk-*", "DialString": "+79161234567@trunk"},
        ),
        ("DialBegin", {"DestChannel": "PJSIP/trunk-*", "DestConnectedLineNum": "+74951230000"}),
        ("DialEnd", {"DialStatus": "ANSWER"}),
    ],
    "callback-answered": [
        ("OriginateResponse", {"Response": "Success", "Channel": "PJSIP/101-*"}),
        ("VarSet", {"Variable": "__CALLBACKID", "Value": "cb-0001"}),
        ("VarSet", {"Variable": "__TAG", "Value": "campaign-7"}),
        ("DialBegin", {"Channel": "PJSIP/101-*", "DestChannel": "PJSIP/trunk-*"}),
        ("DialEnd", {"DestChannel": "PJSIP/trunk-*", "DialStatus": "ANSWER"}),
    ],
    "callback-unanswered": [
        ("OriginateResponse", {"Response": "Failure"}),
        ("!DialBegin", {"DestChannel": "PJSIP/trunk-*"}),
    ],
    "callback-failed": [
        (
            "OriginateResponse",
            {"Response": "Failure", "Reason": "0", "Uniqueid": "cb-cb-0003", "Channel": "PJSIP/106"},
        ),
        ("!Newchannel", {}),
    ],
    "voicemail": [
        ("DialEnd", {"DialStatus": "NOANSWER"}),
        ("Newexten", {"Application": "VoiceMail"}),
        ("VarSet", {"Variable": "VM_MESSAGEFILE"}),
        ("VarSet", {"Variable": "VMSTATUS", "Value": "SUCCESS"}),
        ("MessageWaiting", {"Mailbox": "102@default", "Waiting": "1"}),
    ],
    "blind-transfer-refer": [
        ("BlindTransfer", {"Result": "Success", "TransfererChannel": "PJSIP/101-*"}),
        ("DialEnd", {"DestChannel": "PJSIP/103-*", "DialStatus": "ANSWER"}),
    ],
    "blind-transfer-ami": [
        ("BlindTransfer", {"Result": "Success", "TransfererChannel": "PJSIP/101-*"}),
        ("DialEnd", {"DestChannel": "PJSIP/103-*", "DialStatus": "ANSWER"}),
    ],
    "attended-transfer": [
        ("DialEnd", {"DestChannel": "PJSIP/103-*", "DialStatus": "ANSWER"}),
        ("AttendedTransfer", {"Result": "Success", "DestType": "Bridge"}),
    ],
    "sip-message": [
        ("UserEvent", {"UserEvent": "ExtensionMessage", "From": "101", "To": "102"}),
        ("UserEvent", {"UserEvent": "ExtensionMessageStatus", "Status": "SUCCESS"}),
    ],
    "overlapping-calls": [
        ("DialEnd", {"DestChannel": "PJSIP/102-*", "DialStatus": "ANSWER"}),
        ("DialEnd", {"DestChannel": "PJSIP/104-*", "DialStatus": "ANSWER"}),
    ],
    "ring-group-answered": [
        ("DialBegin", {"Channel": "PJSIP/101-*", "DestChannel": "PJSIP/102-*"}),
        ("DialBegin", {"Channel": "PJSIP/101-*", "DestChannel": "PJSIP/103-*"}),
        ("DialEnd", {"DestChannel": "PJSIP/102-*", "DialStatus": "CANCEL"}),
        ("DialEnd", {"DestChannel": "PJSIP/103-*", "DialStatus": "ANSWER"}),
        ("Hangup", {"Channel": "PJSIP/102-*", "Cause": "26"}),
    ],
    "ring-group-noanswer": [
        ("DialEnd", {"DestChannel": "PJSIP/102-*", "DialStatus": "NOANSWER"}),
        ("DialEnd", {"DestChannel": "PJSIP/103-*", "DialStatus": "NOANSWER"}),
        ("Hangup", {"Channel": "PJSIP/102-*", "Cause": "0"}),
        ("!BridgeEnter", {}),
    ],
    "ring-group-local": [
        ("DialBegin", {"Channel": "PJSIP/101-*", "DestChannel": "Local/104@rg-member-*;1"}),
        ("DialBegin", {"Channel": "Local/105@rg-member-*;2", "DestChannel": "PJSIP/105-*"}),
        ("DialEnd", {"DestChannel": "Local/104@rg-member-*;1", "DialStatus": "CANCEL"}),
        ("DialEnd", {"DestChannel": "PJSIP/105-*", "DialStatus": "ANSWER"}),
    ],
    "ring-group-from-did": [
        ("Newchannel", {"Channel": "PJSIP/trunk-*", "Exten": "74951230006"}),
        ("DialEnd", {"DestChannel": "PJSIP/102-*", "DialStatus": "ANSWER"}),
        ("DialEnd", {"DestChannel": "PJSIP/103-*", "DialStatus": "CANCEL"}),
    ],
    "followme-external": [
        ("VarSet", {"Variable": "__FORWARDED_FROM", "Value": "104"}),
        ("DialBegin", {"Channel": "PJSIP/101-*", "DestChannel": "PJSIP/104-*"}),
        ("DialBegin", {"Channel": "Local/+79161234567@outbound-*;2", "DestChannel": "PJSIP/trunk-*"}),
        ("DialEnd", {"DestChannel": "PJSIP/104-*", "DialStatus": "CANCEL"}),
        ("DialEnd", {"DestChannel": "PJSIP/trunk-*", "DialStatus": "ANSWER"}),
    ],
    "pickup-directed": [
        ("Pickup", {"Channel": "PJSIP/103-*", "TargetChannel": "PJSIP/102-*", "Exten": "**102"}),
        ("Hangup", {"Channel": "PJSIP/102-*", "Cause": "26"}),
        ("DialEnd", {"Channel": "PJSIP/101-*", "DestChannel": "PJSIP/103-*", "DialStatus": "ANSWER"}),
    ],
    "pickup-group": [
        ("Pickup", {"Channel": "PJSIP/103-*", "TargetChannel": "PJSIP/102-*", "Exten": "*8"}),
        ("DialEnd", {"Channel": "PJSIP/101-*", "DestChannel": "PJSIP/103-*", "DialStatus": "ANSWER"}),
    ],
    "park-retrieve": [
        ("BlindTransfer", {"Result": "Success", "TransfererChannel": "PJSIP/102-*"}),
        ("ParkedCall", {"ParkeeChannel": "PJSIP/101-*", "ParkingSpace": "701"}),
        ("UnParkedCall", {"RetrieverChannel": "PJSIP/103-*", "ParkingSpace": "701"}),
    ],
    "park-timeout": [
        ("ParkedCall", {"ParkeeChannel": "PJSIP/101-*", "ParkingSpace": "701"}),
        ("ParkedCallTimeOut", {"ParkeeChannel": "PJSIP/101-*"}),
        ("DialEnd", {"Channel": "PJSIP/101-*", "DestChannel": "PJSIP/102-*", "DialStatus": "ANSWER"}),
        ("!UnParkedCall", {}),
    ],
    "conference": [
        ("ConfbridgeJoin", {"Conference": "800", "Channel": "PJSIP/101-*"}),
        ("ConfbridgeJoin", {"Conference": "800", "Channel": "PJSIP/102-*"}),
        ("ConfbridgeJoin", {"Conference": "800", "Channel": "PJSIP/103-*"}),
        ("ConfbridgeLeave", {"Channel": "PJSIP/103-*"}),
        ("!DialBegin", {}),
    ],
    "call-waiting": [
        ("DialEnd", {"Channel": "PJSIP/101-*", "DestChannel": "PJSIP/102-*", "DialStatus": "ANSWER"}),
        ("DialBegin", {"Channel": "PJSIP/103-*", "DestChannel": "PJSIP/102-*"}),
        ("DialEnd", {"Channel": "PJSIP/103-*", "DestChannel": "PJSIP/102-*", "DialStatus": "CANCEL"}),
    ],
    "transfer-chain": [
        ("Newchannel", {"Channel": "PJSIP/trunk-*", "Exten": "74951230006"}),
        (
            "BlindTransfer",
            {"Result": "Success", "TransfererChannel": "PJSIP/102-*", "TransfereeChannel": "PJSIP/trunk-*"},
        ),
        ("DialBegin", {"Channel": "PJSIP/trunk-*", "DestChannel": "Local/104@rg-member-*;1"}),
        ("DialEnd", {"DestChannel": "PJSIP/104-*", "DialStatus": "ANSWER"}),
        (
            "AttendedTransfer",
            {"Result": "Success", "DestType": "Bridge", "OrigTransfererChannel": "PJSIP/104-*"},
        ),
        ("DialEnd", {"DestChannel": "PJSIP/102-*", "DialStatus": "ANSWER"}),
    ],
    "attended-transfer-external": [
        ("DialBegin", {"Channel": "Local/79161234567@phones-*;2", "DestChannel": "PJSIP/trunk-*"}),
        ("DialEnd", {"DestChannel": "PJSIP/trunk-*", "DialStatus": "ANSWER"}),
        ("AttendedTransfer", {"Result": "Success", "DestType": "Bridge", "TransfereeChannel": "PJSIP/102-*"}),
    ],
    "attended-transfer-blonde": [
        ("AttendedTransfer", {"Result": "Success", "TransfereeChannel": "PJSIP/102-*"}),
        ("DialEnd", {"DestChannel": "PJSIP/103-*", "DialStatus": "ANSWER"}),
    ],
    "callback-destination-busy": [
        ("OriginateResponse", {"Response": "Success"}),
        ("DialEnd", {"DestChannel": "PJSIP/trunk-*", "DialStatus": "BUSY"}),
    ],
    "callback-destination-unreachable": [
        ("OriginateResponse", {"Response": "Success"}),
        ("DialEnd", {"DestChannel": "PJSIP/trunk-*", "DialStatus": "NOANSWER"}),
        ("Hangup", {"Channel": "PJSIP/trunk-*", "Cause": "1"}),
        ("VarSet", {"Variable": "DIALSTATUS", "Value": "CHANUNAVAIL"}),
    ],
    "voicemail-busy": [
        ("DialEnd", {"DialStatus": "BUSY"}),
        ("Newexten", {"Application": "VoiceMail", "AppData": "102@default,bs"}),
        ("VarSet", {"Variable": "VMSTATUS", "Value": "SUCCESS"}),
    ],
    "voicemail-unregistered": [
        ("VarSet", {"Variable": "DIALSTATUS", "Value": "CHANUNAVAIL"}),
        ("Newexten", {"Application": "VoiceMail", "AppData": "106@default,us"}),
        ("VarSet", {"Variable": "VMSTATUS", "Value": "SUCCESS"}),
        ("!DialBegin", {}),
    ],
    # the FreePBX-style profile (lab/asterisk/extensions_freepbx.conf)
    "freepbx-internal": [
        ("Newexten", {"Context": "macro-dial-one"}),
        (
            "DialBegin",
            {"Channel": "PJSIP/201-*", "DestChannel": "PJSIP/202-*", "DialString": "202/sip:202@*"},
        ),
        ("VarSet", {"Variable": "__EXTTOCALL", "Value": "202"}),
        ("DialEnd", {"DialStatus": "ANSWER"}),
    ],
    "freepbx-did-recorded": [
        ("Newchannel", {"Channel": "PJSIP/fpbx-trunk-*", "Exten": "74952230001", "Context": "from-pstn"}),
        ("VarSet", {"Variable": "__FROM_DID", "Value": "74952230001"}),
        ("VarSet", {"Variable": "__CALLFILENAME"}),
        ("MixMonitorStart", {}),
        ("DialEnd", {"DestChannel": "PJSIP/201-*", "DialStatus": "ANSWER"}),
    ],
    "freepbx-ring-group": [
        ("Newexten", {"Context": "ext-group", "Exten": "610"}),
        ("DialEnd", {"DestChannel": "PJSIP/202-*", "DialStatus": "CANCEL"}),
        ("DialEnd", {"DestChannel": "PJSIP/203-*", "DialStatus": "ANSWER"}),
    ],
    "freepbx-queue": [
        ("QueueCallerJoin", {"Queue": "fpbx"}),
        ("AgentCalled", {"DestChannel": "Local/202@from-queue-*;1"}),
        ("Newexten", {"Context": "from-queue-exten-only"}),
        ("DialEnd", {"DestChannel": "PJSIP/202-*", "DialStatus": "ANSWER"}),
        ("AgentConnect", {}),
    ],
    "freepbx-followme": [
        ("DialBegin", {"Channel": "PJSIP/201-*", "DestChannel": "Local/FMPR-204@from-internal-fm-*;1"}),
        (
            "DialBegin",
            {"Channel": "PJSIP/201-*", "DestChannel": "Local/FMGL-+79161234567#@from-internal-fm-*;1"},
        ),
        ("DialEnd", {"DestChannel": "PJSIP/fpbx-trunk-*", "DialStatus": "ANSWER"}),
    ],
    "freepbx-cf-external": [
        ("VarSet", {"Variable": "__DIVERSION_REASON", "Value": "unconditional"}),
        ("DialBegin", {"DestChannel": "Local/+79161234567@from-internal-*;1"}),
        ("DialEnd", {"DestChannel": "PJSIP/fpbx-trunk-*", "DialStatus": "ANSWER"}),
    ],
}
# the Local-wrapped profile: every phone dialed through two Local pairs
for _path in PATHS:
    if _path.stem.startswith("wrapped-"):
        KEY_EVENTS[_path.stem] = [
            ("VarSet", {"Variable": "TARGET", "Value": "Local/1*@wrap-outer/n"}),
            ("DialBegin", {"DestChannel": "Local/1*@wrap-outer-*;1"}),
            ("DialBegin", {"Channel": "Local/1*#@wrap-inner-*;2", "DestChannel": "PJSIP/1*"}),
        ]


def matches(m: Message, fields: dict[str, str]) -> bool:
    from fnmatch import fnmatchcase

    return all(fnmatchcase(m.get(k) or "", v) for k, v in fields.items())


def test_every_fixture_has_key_events() -> None:
    """The table below covers every recorded fixture."""
    assert sorted(KEY_EVENTS) == sorted(p.stem for p in PATHS)


@pytest.mark.parametrize("name", sorted(KEY_EVENTS))
def test_key_events_of_the_scenario_are_there(name: str) -> None:
    """The recording shows what its scenario did (outcome, variables, transfers...)."""
    msgs = events(FIXTURES / f"{name}.ami")
    for event, fields in KEY_EVENTS[name]:
        if event.startswith("!"):
            found = [m for m in msgs if m.event == event[1:] and matches(m, fields)]
            assert not found, f"{name}: unexpected {event[1:]} {fields}"
        else:
            found = [m for m in msgs if m.event == event and matches(m, fields)]
            assert found, f"{name}: no {event} with {fields}"


def test_overlapping_calls_overlap() -> None:
    """The second call of overlapping-calls starts and ends while the first is up."""
    msgs = events(FIXTURES / "overlapping-calls.ami")
    t = {
        (m.event, (m.get("Channel") or "")[:9]): float(m.get("Timestamp") or 0)
        for m in msgs
        if m.event in ("Newchannel", "Hangup")
    }
    assert t[("Newchannel", "PJSIP/101")] < t[("Newchannel", "PJSIP/103")]
    assert t[("Hangup", "PJSIP/103")] < t[("Hangup", "PJSIP/101")]
