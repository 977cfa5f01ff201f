"""Bad input never crashes the parser or the translator (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.ami.message import parse, split_stream
from bridge.config import load_config
from bridge.replay import replay_bytes
from bridge.translate import Translator
from tests.conftest import FIXTURES, fixture_paths

CONFIG = load_config(FIXTURES / "lab.yaml")
BLOCKS = [b for p in fixture_paths() for b in split_stream(p.read_bytes())[0]]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Any byte string frames, parses and translates without an exception."""
    list(replay_bytes(Translator(CONFIG), [data]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(BLOCKS) - 1), max_size=300), st.data())
def test_reordered_duplicated_truncated_events_never_raise(picks: list[int], data: st.DataObject) -> None:
    """Real events picked in any order, repeated or cut short, never crash the translator,
    and every event it emits still has the mandatory fields."""
    t = Translator(CONFIG)
    for i in picks:
        block = BLOCKS[i]
        if data.draw(st.booleans()):
            block = block[: data.draw(st.integers(min_value=0, max_value=len(block)))]
        for _, event in t.feed(parse(block)):
            assert {"EventType", "CallID", "SubCallID", "CallFlow", "EventTime"} <= set(event)
