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
from bridge.translate.model import device_of
from tests.conftest import FIXTURES, config_path, fixture_paths

LAB = (FIXTURES / "lab.yaml").read_text()


def recorded_trunk(config_text: str) -> str:
    """The one trunk a lab profile's config names."""
    match = re.search(r"^trunks: \[([\w-]+)\]$", config_text, re.M)
    assert match is not None, "the lab profiles name one PJSIP trunk"
    return match.group(1)


def as_chan_sip(data: bytes, recorded: str, trunk: str) -> bytes:
    """The stream as chan_sip would show it: PJSIP channels and queue interfaces become
    SIP ones, the trunk peer ``recorded`` is called ``trunk``."""
    data = re.sub(
        rb"PJSIP/" + re.escape(recorded.encode()) + rb"(?=[-/@,\r])", b"SIP/" + trunk.encode(), data
    )
    return data.replace(b"PJSIP/", b"SIP/")


def chan_sip_config(config_text: str, trunk: str) -> str:
    """The config with its phones ``SIP/<endpoint>`` and its trunk ``SIP/<trunk>``."""
    text = re.sub(r'endpoint: "(\d+)"', r'endpoint: "SIP/\1"', config_text)
    return text.replace(f"trunks: [{recorded_trunk(config_text)}]", f"trunks: [SIP/{trunk}]")


@pytest.mark.parametrize("trunk", ["trunk", "voipgrid-siproute-docker"])
@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: p.stem)
def test_chan_sip_streams_give_the_same_events(path: Path, trunk: str) -> None:
    """Every fixture, renamed to chan_sip (and with a dashed trunk peer name), replays to
    its golden file byte for byte."""
    text = config_path(path).read_text()
    config = parse_config(chan_sip_config(text, trunk))
    assert all(e.device is None or e.device.startswith("SIP/") for e in config.extensions)
    renamed = as_chan_sip(path.read_bytes(), recorded_trunk(text), trunk)
    assert b"PJSIP/" not in renamed
    lines = [to_json_line(e) for e in replay_bytes(Translator(config), [renamed])]
    golden = path.with_suffix(".expected.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines == golden


def test_a_pjsip_config_sees_nothing_of_chan_sip_phones() -> None:
    """The same chan_sip stream against the PJSIP config: no phone is recognised (the
    technology is part of the device; a mistake shows, it is not guessed around)."""
    config = parse_config(LAB)
    data = as_chan_sip((FIXTURES / "internal-answered-caller-hangup.ami").read_bytes(), "trunk", "trunk")
    assert list(replay_bytes(Translator(config), [data])) == []


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("PJSIP/101-0000002a", ("PJSIP", "PJSIP/101")),
        ("SIP/150010001-0000002a", ("SIP", "SIP/150010001")),
        ("SIP/voipgrid-siproute-docker-00000025", ("SIP", "SIP/voipgrid-siproute-docker")),
        ("SIP/peer-1234567", ("SIP", "SIP/peer-1234567")),  # 7 digits: part of the name
        ("IAX2/office-123", ("IAX2", "IAX2/office")),
        ("DAHDI/i1/74951234567-5", ("DAHDI", "DAHDI/i1")),
        ("DAHDI/1-1", ("DAHDI", "DAHDI/1")),
        ("PJSIP/106", ("PJSIP", "PJSIP/106")),  # an Originate's Channel: the device itself
        ("Local/101@wrap-outer-0000002a;1", ("Local", None)),
        ("Message/ast_msg_queue", ("Message", None)),
    ],
)
def test_a_channel_name_gives_its_device(channel: str, expected: tuple[str, str | None]) -> None:
    """Only the technology's own suffix is cut off: 8 hex digits for PJSIP and SIP, a
    number for the others; DAHDI's device is its span or group."""
    assert device_of(channel) == expected
