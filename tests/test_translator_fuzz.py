"""Bad input never crashes the parser or the translator (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.ami.message import parse, split_stream
from bridge.config import load_config
from bridge.replay import replay_bytes
from bridge.translate import Translator
from bridge.translate.translator import timestamp_us
from tests.conftest import FIXTURES, fixture_paths
from tests.telphin_consumer import wire_problems

CONFIG = load_config(FIXTURES / "lab.yaml")
BLOCKS = [b for p in fixture_paths() for b in split_stream(p.read_bytes())[0]]
EXTENSIONS = {e.id: (e.extended, e.name) for e in CONFIG.extensions}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Any byte string frames, parses and translates without an exception."""
    list(replay_bytes(Translator(CONFIG), [data]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(BLOCKS) - 1), max_size=300), st.data())
def test_reordered_duplicated_truncated_events_never_raise(picks: list[int], data: st.DataObject) -> None:
    """Real events picked in any order, repeated or cut short, never crash the translator,
    and every event it emits still has the mandatory fields and reads right to a Telphin
    consumer (CallFlow in/out, its extension's extended number where consumers look)."""
    t = Translator(CONFIG)
    for i in picks:
        block = BLOCKS[i]
        if data.draw(st.booleans()):
            block = block[: data.draw(st.integers(min_value=0, max_value=len(block)))]
        for ext_id, event in t.feed(parse(block)):
            assert {"EventType", "CallID", "SubCallID", "CallFlow", "EventTime"} <= set(event)
            assert wire_problems(ext_id, event, EXTENSIONS) == [], event


#: digits Python's str.isdigit() accepts that int() refuses ("²"), or reads (Arabic-Indic)
_TRICKY = st.text(alphabet="0123456789.-+ _²\u0661\\\t=;<>@", max_size=24)
#: numbers, and things that look like numbers to str.isdigit()
_NUMBERISH = st.one_of(_TRICKY, st.from_regex(r"\A[0-9²\u0661]{1,8}(\.[0-9²]{0,7})?\Z"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(BLOCKS) - 1), st.integers(min_value=0),
                          _NUMBERISH), max_size=200))  # fmt: skip
def test_real_events_with_odd_header_values_never_raise(edits: list[tuple[int, int, str]]) -> None:
    """Real events with one header's value replaced by odd text (superscript digits, signs,
    escapes...) in Timestamp, Uniqueid, DialStatus or any other header never crash the
    translator."""
    t = Translator(CONFIG)
    for i, which, value in edits:
        lines = BLOCKS[i].split(b"\r\n")
        headers = [n for n, line in enumerate(lines) if b": " in line]
        if headers:
            n = headers[which % len(headers)]
            lines[n] = lines[n].split(b": ", 1)[0] + b": " + value.encode()
        t.feed(parse(b"\r\n".join(lines)))


def _reference_timestamp(value: str) -> int | None:
    sec, _, frac = value.strip().partition(".")
    if not sec or any(c not in "0123456789" for c in sec + frac):
        return None
    return int(sec) * 1_000_000 + int((frac + "000000")[:6])


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_TRICKY, st.from_regex(r"\A ?[0-9]{1,11}(\.[0-9]{0,8})? ?\Z")))
def test_timestamps_are_read_exactly_or_refused(value: str) -> None:
    """``seconds[.fraction]`` in ASCII digits -> microseconds (the fraction cut to six
    digits, no float rounding); anything else -> None, never an exception."""
    assert timestamp_us(value) == _reference_timestamp(value)
