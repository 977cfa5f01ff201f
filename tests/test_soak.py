"""Soak: many thousands of overlapping real calls through the translator: no leaked call
state and flat memory (hours of a busy PBX compressed into seconds)."""

from __future__ import annotations

import gc
from collections import deque

from bridge.ami.message import Message, parse, split_stream
from bridge.config import load_config
from bridge.translate import Translator
from tests.conftest import FIXTURES

IDS = ("Uniqueid", "Linkedid", "DestUniqueid", "DestLinkedid")


def templates(name: str) -> list[Message]:
    return [parse(b) for b in split_stream((FIXTURES / f"{name}.ami").read_bytes())[0]]


def copy_for(msg: Message, prefix: str) -> Message:
    """The same message with its channel ids made unique for one synthetic call."""
    pairs = [(k, prefix + v if k in IDS else v) for k, v in msg.pairs]
    first = {k: (prefix + v if k in IDS else v) for k, v in msg.first.items()}
    return Message(pairs, first)


def test_thousands_of_concurrent_calls_leave_nothing_behind() -> None:
    """6,000 calls of three real flows, 1,500 in progress at once: every component ends,
    all state is dropped, and fewer objects are alive at the end than with 1,500 calls up."""
    flows = [
        templates(n)
        for n in ("internal-answered-caller-hangup", "queue-local-members", "inbound-did-recorded")
    ]
    expected = {0: 6, 1: 15, 2: 3}  # events per call of each flow (their golden files)
    t = Translator(load_config(FIXTURES / "lab.yaml"))
    total, concurrent, started = 6000, 1500, 0
    live: deque[tuple[int, int, int]] = deque()  # (call number, flow, next message index)
    emitted = 0
    peak = 0
    baseline = None
    while started < total or live:
        while len(live) < concurrent and started < total:
            live.append((started, started % 3, 0))
            started += 1
        call, flow, i = live.popleft()
        emitted += len(t.feed(copy_for(flows[flow][i], f"s{call}-")))
        if i + 1 < len(flows[flow]):
            live.append((call, flow, i + 1))
        peak = max(peak, t.active_calls)
        if baseline is None and started == total:
            gc.collect()
            baseline = len(gc.get_objects())
    gc.collect()
    end = len(gc.get_objects())
    assert peak >= 1400
    assert t.channels == {} and t.calls == {} and t._local_uids == {}
    assert emitted == sum(expected[c % 3] for c in range(total))
    assert baseline is not None and end < baseline  # the objects the live calls held are freed
