"""Translator.reconfigure (a reload): calls in progress keep going, new calls see the new config."""

from __future__ import annotations

from bridge.ami.message import Message, parse, split_stream
from bridge.config import Config
from bridge.translate import Emitted, Translator
from tests.conftest import FIXTURES, config_for

FIXTURE = FIXTURES / "internal-answered-caller-hangup.ami"  # 101 calls 102, 102 answers, 101 hangs up
FULL = config_for(FIXTURE)


def without(config: Config, ext_id: int) -> Config:
    return config.model_copy(update={"extensions": [e for e in config.extensions if e.id != ext_id]})


def messages(copy: str = "") -> list[Message]:
    """The fixture's messages; ``copy`` renames every channel id (another call, same flow)."""
    data = FIXTURE.read_bytes()
    if copy:
        data = data.replace(b"lab-1795730465.", f"lab{copy}-1795730465.".encode())
    return [parse(block) for block in split_stream(data)[0]]


def feed(t: Translator, msgs: list[Message]) -> list[Emitted]:
    out: list[Emitted] = []
    for msg in msgs:
        out += t.feed(msg)
    return out


def kinds(events: list[Emitted], ext_id: int) -> list[str]:
    return [e["EventType"] for ext, e in events if ext == ext_id]


def test_a_call_in_progress_keeps_its_events_across_a_reload() -> None:
    """102's component started (dial-in) before a reload that removes extension 1102 and
    adds another: it still gets its answer and hangup, and every event is what it would
    have been without the reload."""
    msgs = messages()
    whole = Translator(FULL)
    reference = feed(whole, msgs) + whole.flush()
    t = Translator(FULL)
    first = next(i for i, m in enumerate(msgs) if m.event == "DialBegin") + 1
    before = feed(t, msgs[:first])
    assert kinds(before, 1102) == ["dial-in"]  # the component is in progress
    added = FULL.model_copy(update={"extensions": [*without(FULL, 1102).extensions,
                                                   FULL.extensions[1].model_copy(update={"id": 1999})]})  # fmt: skip
    t.reconfigure(added)
    after = feed(t, msgs[first:]) + t.flush()
    assert before + after == reference
    assert kinds(after, 1102) == ["answer", "hangup"]
    assert kinds(after, 1999) == []  # the call reached 102 before 1999 was configured
    assert t.active_calls == 0 and not t.channels  # nothing left behind


def test_a_reload_that_adds_an_extension_translates_its_next_calls() -> None:
    """Without 1102 the call gives 101's events only; after a reload adding it, the next
    call gives 102's events too, exactly those of a translator configured so from the start."""
    t = Translator(without(FULL, 1102))
    old = feed(t, messages("a")) + t.flush()
    assert kinds(old, 1102) == [] and kinds(old, 1101) == ["dial-out", "answer", "hangup"]
    t.reconfigure(FULL)
    new = feed(t, messages("b")) + t.flush()
    fresh = Translator(FULL)
    expected = feed(fresh, messages("b")) + fresh.flush()
    assert new == expected
    assert kinds(new, 1102) == ["dial-in", "answer", "hangup"]


def test_a_reload_that_removes_an_extension_stops_its_new_calls() -> None:
    """After 1102 is removed, a new call to it gives no 1102 events (the caller's only)."""
    t = Translator(FULL)
    feed(t, messages("a"))
    t.flush()
    t.reconfigure(without(FULL, 1102))
    new = feed(t, messages("b")) + t.flush()
    assert kinds(new, 1102) == [] and kinds(new, 1101) == ["dial-out", "answer", "hangup"]
