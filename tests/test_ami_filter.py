"""The early filter drops only what no translator rule needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.ami.filter import Needs, coarse_filter, eventfilters, needs, wanted
from bridge.ami.message import is_banner, parse, split_stream
from bridge.config import Config, load_config
from bridge.translate import Translator
from tests.conftest import FIXTURES, config_for, fixture_paths

CONFIG = load_config(FIXTURES / "lab.yaml")
NEEDS = needs(CONFIG)
COARSE = coarse_filter(NEEDS)
BLOCKS = [b for p in fixture_paths() for b in split_stream(p.read_bytes())[0]]


def translate(blocks: list[bytes], config: Config = CONFIG) -> list[object]:
    t = Translator(config)
    return [e for b in blocks if not is_banner(b) for e in [*t.feed(parse(b))]] + t.flush()


@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: p.stem)
def test_filtered_stream_translates_exactly_like_the_whole_stream(path: Path) -> None:
    """Every fixture gives the same events whether or not the filter ran first (with the
    filter of the fixture's own configuration)."""
    config = config_for(path)
    blocks, _ = split_stream(path.read_bytes())
    kept = [b for b in blocks if wanted(b, needs(config))]
    events = translate(blocks, config)
    assert events and translate(kept, config) == events


def test_most_of_a_real_stream_is_never_parsed() -> None:
    """The point of the filter: over all fixtures, well over half the messages are dropped."""
    blocks = [b for p in fixture_paths() for b in split_stream(p.read_bytes())[0]]
    kept = [b for b in blocks if wanted(b, NEEDS)]
    assert len(kept) < 0.4 * len(blocks)


@pytest.mark.parametrize(
    ("block", "keep"),
    [
        (b"Response: Success\r\nActionID: 1\r\n\r\n", True),  # responses are the caller's
        (b"Event: RTCPSent\r\nChannel: X\r\n\r\n", False),
        (b"Event: Hangup\r\nUniqueid: 1\r\n\r\n", True),
        (b"Event: VarSet\r\nVariable: DIALSTATUS\r\nValue: BUSY\r\n\r\n", True),
        (b"Event: VarSet\r\nVariable: _DIALSTATUS\r\nValue: BUSY\r\n\r\n", True),
        (b"Event: VarSet\r\nVariable: __ANYTHING\r\nValue: 1\r\n\r\n", True),  # inherited
        (b"Event: VarSet\r\nVariable: BRIDGEPEER\r\nValue: x\r\n\r\n", False),
        (b"Event: VarSet\r\nVariable: RECID\r\nValue: r1\r\n\r\n", True),  # configured
        (b"Event: Newexten\r\nPriority: 1\r\nApplication: Set\r\n\r\n", True),
        (
            b"Event: Newexten\r\nContext: phones\r\nExten: 102\r\nPriority: 1\r\nApplication: Set\r\n\r\n",
            True,
        ),
        (b"Event: Newexten\r\nContext: sub\r\nExten: s\r\nPriority: 1\r\nApplication: Set\r\n\r\n", False),
        (
            b"Event: Newexten\r\nContext: ivr-main\r\nExten: s\r\nPriority: 1\r\nApplication: Answer\r\n\r\n",
            True,
        ),
        (
            b"Event: Newexten\r\nContext: x\r\nExten: 104\r\nPriority: 1\r\nApplication: AppDial\r\n\r\n",
            False,
        ),
        (b"Event: Newexten\r\nPriority: 12\r\nApplication: Set\r\n\r\n", False),
        (b"Event: Newexten\r\nPriority: 3\r\nApplication: VoiceMail\r\n\r\n", True),
        (b"Event: Newexten\nPriority: 1\nApplication: Set\n\n", True),  # bare LF
        (b"Event: Newstate\r\nChannelState: 6\r\n\r\n", True),
        (b"Event: Newstate\r\nChannelState: 5\r\n\r\n", False),
        (b"Event: Newstate\nChannelState: 6\n\n", True),
        # values compared whole, never as prefixes
        (b"Event: VarSet\r\nVariable: DIALSTATUSX\r\nValue: BUSY\r\n\r\n", False),
        (b"Event: VarSet\r\nVariable: DIALSTATUS\nValue: BUSY\n\n", True),  # bare LF
        (b"Event: VarSet\r\nVariable: _RECID_OLD\r\nValue: x\r\n\r\n", False),
        (b"Event: VarSet\r\nChannel: X\r\nValue: x\r\n\r\n", True),  # no Variable: kept
        (b"Event: Newexten\r\nPriority: 10\r\nApplication: Set\r\n\r\n", False),
        (b"Event: Newexten\r\nPriority: 1\r\nApplication: AppDial2\r\n\r\n", False),
        (b"Event: Newexten\r\nPriority: 1\r\nApplication: AppDialer\r\n\r\n", True),
        (b"Event: Newexten\r\nPriority: 2\r\nApplication: VoiceMailMain\r\n\r\n", False),
        (b"Event: Newexten\nPriority: 4\nApplication: VoiceMail\n\n", True),
        (b"Event: Newexten\r\nApplication: Set\r\n\r\n", False),  # no priority
        (b"Event: Newstate\r\nChannelState: 60\r\n\r\n", False),
        (b"Event: Newstate\r\nChannel: X\r\n\r\n", False),
    ],
)
def test_wanted(block: bytes, keep: bool) -> None:
    assert wanted(block, NEEDS) is keep
    # the C first pass lets it through (with or without its empty line), and refuses the
    # VarSets and the events no rule reads that the early filter refuses
    part = block[: -3 if block.endswith(b"\n\r\n") else -1]
    coarse = bool(COARSE(block)), bool(COARSE(part))
    if keep:
        assert coarse == (True, True)
    elif block.startswith((b"Event: VarSet", b"Event: RTCPSent")):
        assert coarse == (False, False)


def test_the_first_pass_refuses_most_of_what_the_filter_refuses() -> None:
    """Over every fixture: whatever the early filter keeps passes the C first pass, and the
    first pass alone refuses every VarSet and unread event the filter refuses (what is
    left to the Python filter: Newexten and Newstate)."""
    for block in BLOCKS:
        if wanted(block, NEEDS):
            assert COARSE(block), block[:200]
        elif not block.startswith((b"Event: Newexten", b"Event: Newstate")) and block.startswith(b"Event: "):
            assert not COARSE(block), block[:200]


_ODD = st.sampled_from([b"DIALSTATUS", b"__X", b"_RECID", b"RECID_", b"Variable: DID", b"\r", b"\n", b"\r\n",
                        b"Variable: ", b"Event: VarSet\r\n", b"\nVariable: __", b"ChanVariable: DID=", b"x"])  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(BLOCKS), st.lists(st.tuples(st.integers(min_value=0), _ODD), max_size=6), st.booleans()
)
def test_the_first_pass_never_refuses_what_the_filter_wants(block: bytes, edits: list[tuple[int, bytes]],
                                                             bare_lf: bool) -> None:  # fmt: skip
    """Real blocks with bytes inserted anywhere (variable names, line ends, Variable lines)
    and in bare-LF form: if the early filter wants one, the first pass lets it through."""
    for at, piece in edits:
        at %= len(block) + 1
        block = block[:at] + piece + block[at:]
    if bare_lf:
        block = block.replace(b"\r\n", b"\n")
    if wanted(block, NEEDS):
        assert COARSE(block)


def test_without_known_ivr_contexts_every_entry_at_s_is_kept() -> None:
    """A caller that cannot say which contexts are IVRs loses no IVR entry."""
    block = b"Event: Newexten\r\nContext: any\r\nExten: s\r\nPriority: 1\r\nApplication: Set\r\n\r\n"
    assert wanted(block, Needs()) is True
    assert wanted(block, NEEDS) is False


def test_the_lab_user_carries_exactly_the_suggested_eventfilters() -> None:
    """lab/asterisk/manager.conf's filtered user has the lines the code prints today."""
    conf = (FIXTURES.parent / "lab" / "asterisk" / "manager.conf").read_text()
    section = conf.split("[bridge-filtered]", 1)[1].split("\n[", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("eventfilter")]
    assert lines == [line for line in eventfilters(CONFIG) if not line.startswith(";")]
    assert any("name(VarSet)" in line and "DIALSTATUS" in line for line in lines)
