"""Any channel technology: the lab's recordings with their channel names rewritten to
chan_sip (``SIP/101-0000002a``, still the norm on Asterisk 13-20 and FreePBX 13-16; gone
from Asterisk 22, so it cannot be recorded live) give exactly the reviewed events, with
the config naming the devices ``SIP/...``; so do trunk peers whose names contain dashes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.config import parse_config
from bridge.replay import replay_bytes, to_json_line
from bridge.translate import Translator
from tests.conftest import FIXTURES, fixture_paths

LAB = (FIXTURES / "lab.yaml").read_text()


def as_chan_sip(data: bytes, trunk: str) -> bytes:
    """The stream as chan_sip would show it: PJSIP channels and queue interfaces become
    SIP ones, the trunk peer is called ``trunk``."""
    data = re.sub(rb"PJSIP/trunk(?=[-/@,\r])", b"SIP/" + trunk.encode(), data)
    return data.replace(b"PJSIP/", b"SIP/")


def chan_sip_config(trunk: str) -> str:
    text = re.sub(r'endpoint: "(\d+)"', r'endpoint: "SIP/\1"', LAB)
    return text.replace("trunks: [trunk]", f"trunks: [SIP/{trunk}]")


@pytest.mark.parametrize("trunk", ["trunk", "voipgrid-siproute-docker"])
@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: p.stem)
def test_chan_sip_streams_give_the_same_events(path: Path, trunk: str) -> None:
    """Every fixture, renamed to chan_sip (and with a dashed trunk peer name), replays to
    its golden file byte for byte."""
    config = parse_config(chan_sip_config(trunk))
    assert all(e.device is None or e.device.startswith("SIP/") for e in config.extensions)
    renamed = as_chan_sip(path.read_bytes(), trunk)
    assert b"PJSIP/" not in renamed
    lines = [to_json_line(e) for e in replay_bytes(Translator(config), [renamed])]
    golden = path.with_suffix(".expected.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines == golden


def test_a_pjsip_config_sees_nothing_of_chan_sip_phones() -> None:
    """The same chan_sip stream against the PJSIP config: no phone is recognised (the
    technology is part of the device; a mistake shows, it is not guessed around)."""
    config = parse_config(LAB)
    data = as_chan_sip((FIXTURES / "internal-answered-caller-hangup.ami").read_bytes(), "trunk")
    assert list(replay_bytes(Translator(config), [data])) == []
