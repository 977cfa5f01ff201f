"""Dialplan profiles of the lab that production PBXs look like give the same events.

* The Local-wrapped profile (every phone dialed through Local/<ext>@wrap-outer/n and
  then Local/<ext>#@wrap-inner): each recording gives, component by component, what the
  plain recording of the same scenario gives.
* The FreePBX-style profile (extensions_freepbx.conf) with ``variables: freepbx``: the
  DID comes from FROM_DID, recordings are named by CALLFILENAME, and forwarded or
  follow-me legs are the followed extension's (EXTTOCALL) dial-outs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.replay import replay_bytes, replay_files, to_json_line
from bridge.translate import Translator
from tests.conftest import FIXTURES, config_for, fixture_paths
from tests.shapes import components, described, golden

WRAPPED = [p for p in fixture_paths() if p.stem.startswith("wrapped-")]


def test_the_profiles_are_recorded() -> None:
    """Scenarios of both profiles are in fixtures/ (lab/driver.py records them)."""
    assert len(WRAPPED) >= 8
    assert len([p for p in fixture_paths() if p.stem.startswith("freepbx-")]) >= 6


@pytest.mark.parametrize("path", WRAPPED, ids=lambda p: p.stem)
def test_local_wrapped_phones_give_the_same_events(path: Path) -> None:
    """A phone reached through two Local pairs (a '#' in one's name, '/n' on the other) is
    the same phone: the same components as the plain recording's golden file."""
    got = components(list(replay_files(config_for(path), [path])))
    want = components(golden(path.stem.removeprefix("wrapped-")))
    assert got == want, {"missing": described(want - got), "unexpected": described(got - want)}


@pytest.mark.parametrize("name", ["wrapped-attended-transfer", "attended-transfer"])
def test_an_attended_transfer_without_its_target_named_finds_the_phone(name: str) -> None:
    """Asterisk leaves TransferTarget* out of AttendedTransfer when the consultation's
    bridge was merged away (seen live, one run in a few): the consultation leads to the
    target, through the Local pairs a wrapped phone is dialed by, with the same events."""
    path = FIXTURES / f"{name}.ami"
    data = path.read_bytes()
    stripped = re.sub(rb"TransferTarget[A-Za-z]*: [^\r]*\r\n", b"", data)
    assert stripped != data and b"TransferTarget" not in stripped
    got = [to_json_line(e) for e in replay_bytes(Translator(config_for(path)), [stripped])]
    assert got == path.with_suffix(".expected.jsonl").read_text(encoding="utf-8").splitlines()


def events(name: str) -> list[dict[str, object]]:
    path = FIXTURES / f"{name}.ami"
    return [e for _, e in replay_files(config_for(path), [path])]


def test_freepbx_did_and_recording_come_from_its_own_variables() -> None:
    """FROM_DID is the CalledDID; the hangup's RecID names the recording FreePBX calls
    CALLFILENAME, in the file MixMonitor reports."""
    path = FIXTURES / "freepbx-did-recorded.ami"
    t = Translator(config_for(path))
    t.keep_recordings = True
    hangup = next(e for _, e in replay_bytes(t, [path.read_bytes()]) if e["EventType"] == "hangup")
    assert hangup["CalledDID"] == "74952230001" and hangup["CalledNumber"] == "000*201"
    [recording], _ = t.take_recordings()
    assert recording.record_uuid == hangup["RecID"] and recording.event is hangup
    assert recording.name.startswith("in-74952230001-") and recording.path is not None
    assert recording.path.endswith(f"/{recording.name}.wav")


@pytest.mark.parametrize(
    ("name", "ext"), [("freepbx-followme", "000*204"), ("freepbx-cf-external", "000*205")]
)
def test_freepbx_follow_me_and_forwarding_are_the_extensions_dial_outs(name: str, ext: str) -> None:
    """A follow-me (Local/FMGL-<number>#) or forwarded (Local/<number>@from-internal/n) leg
    to the trunk is the extension's dial-out with Transfered=yes, found by EXTTOCALL."""
    out = [e for e in events(name) if e.get("Transfered") == "yes"]
    assert [e["EventType"] for e in out] == ["dial-out", "answer", "hangup"]
    assert all(e["CallerIDNum"] == ext and e["CalledNumber"] == "+79161234567" for e in out)


def test_freepbx_queue_members_behind_from_queue_are_the_phones() -> None:
    """Members Local/<ext>@from-queue/n: the queue's out threads name the phones, each phone
    gets its own dial-in with the queue as CallerExtension."""
    evs = events("freepbx-queue")
    dial_ins = {(e["CalledNumber"], e.get("CallerExtensionID"), e["CallFlow"]) for e in evs
                if e["EventType"] == "dial-in"}  # fmt: skip
    assert {("000*202", 1310, "out"), ("000*203", 1310, "out"), ("000*202", 1310, "in"),
            ("000*203", 1310, "in")} <= dial_ins  # fmt: skip
