"""The outcome does not depend on the order of the events Asterisk may send either way.

In every fixture, any mix of these (hypothesis picks which) gives exactly the reviewed
events: a DialEnd that says how a leg ended (not ANSWER) arriving after that leg's
Hangup, and a channel's BridgeLeave after its Hangup (when the two come at the same
moment, as Asterisk sends them); an OriginateResponse and the Hangup of its channel in
the other order; an attended transfer's consultation dialing (a Local channel's
DialBegin, and those of the Local pairs behind it) before the transferer enters the
consultation's bridge; a DialBegin into a Local pair's first half after the dials its second half (and the
pairs behind it) make, as Asterisk runs that half's dialplan at once (seen live: a
wrapped phone's blind transfer target rang before the transferee's dial into the pair
was sent); every DialEnd and every Hangup arriving twice. A caller's DialEnd that a call pickup answered may also come
before the Pickup event: then the same events reach every component.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.ami.message import parse, split_stream
from bridge.replay import replay_bytes, to_json_line
from bridge.translate import Translator
from tests.conftest import config_for, fixture_paths

#: a DialEnd or BridgeLeave may arrive after the Hangup when both come this close (µs)
CLOSE_US = 50_000

#: (move block i to just after block j), i < j
Move = tuple[int, int]


def _ts(block: bytes) -> int:
    value = parse(block).get("Timestamp") or "0"
    sec, _, frac = value.partition(".")
    return int(sec) * 1_000_000 + int((frac + "000000")[:6])


def moves(blocks: list[bytes]) -> list[Move]:
    """Every reordering Asterisk may produce in this stream (see the module's docstring)."""
    msgs = [parse(b) for b in blocks]
    hangup_at = {m.get("Uniqueid"): i for i, m in enumerate(msgs) if m.event == "Hangup"}
    found: list[Move] = []
    for i, m in enumerate(msgs):
        if m.event == "DialEnd" and m.get("DialStatus") not in ("ANSWER", "", None):
            j = hangup_at.get(m.get("DestUniqueid"))
            if j is not None and j > i and _ts(blocks[j]) - _ts(blocks[i]) <= CLOSE_US:
                found.append((i, j))
        elif m.event == "BridgeLeave":
            j = hangup_at.get(m.get("Uniqueid"))
            if j is not None and j > i and _ts(blocks[j]) - _ts(blocks[i]) <= CLOSE_US:
                found.append((i, j))
        elif m.event == "OriginateResponse":
            j = hangup_at.get(m.get("Uniqueid"))
            if j is not None:
                found.append((min(i, j), max(i, j)))
        elif (
            m.event == "DialBegin"
            and (m.get("Channel") or "").startswith("Local/")
            and m.get("Channel", "").endswith(";2")
        ):
            local1 = (m.get("Channel") or "")[:-1] + "1"
            bridge = next((b.get("BridgeUniqueid") for b in msgs
                           if b.event == "BridgeEnter" and b.get("Channel") == local1), None)  # fmt: skip
            join = next((k for k, b in enumerate(msgs) if b.event == "BridgeEnter" and bridge
                         and b.get("BridgeUniqueid") == bridge and not (b.get("Channel") or "").startswith("Local/")
                         and abs(_ts(blocks[i]) - _ts(blocks[k])) <= CLOSE_US), None)  # fmt: skip
            if join is not None:
                # the phone joins after that dial, or after the dials of the Local pairs
                # behind it (which may come before or after it joins)
                found += [(join, k) for k in range(join + 1, len(msgs)) if msgs[k].event == "DialBegin"
                          and (msgs[k].get("Channel") or "").startswith("Local/")
                          and _ts(blocks[k]) - _ts(blocks[join]) <= CLOSE_US]  # fmt: skip
        if m.event == "DialBegin" and (m.get("DestChannel") or "").startswith("Local/") \
                and m.get("DestChannel", "").endswith(";1"):  # fmt: skip
            # the pair's second half runs its dialplan at once: its dials (and those of the
            # pairs behind it) may come before this DialBegin into the first half
            behind, last = {(m.get("DestChannel") or "")[:-1] + "2"}, None
            for k in range(i + 1, len(msgs)):
                if _ts(blocks[k]) - _ts(blocks[i]) > CLOSE_US:
                    break
                b = msgs[k]
                if b.event == "DialBegin" and b.get("Channel") == m.get("Channel"):
                    break  # the same Dial's next target: one thread sends those, in order
                if b.event == "DialBegin" and b.get("Channel") in behind:
                    last = k
                    dest = b.get("DestChannel") or ""
                    if dest.startswith("Local/") and dest.endswith(";1"):
                        behind.add(dest[:-1] + "2")
            if last is not None:
                found.append((i, last))
    return found


def reorder(blocks: list[bytes], chosen: list[Move], duplicate: bool) -> list[bytes]:
    keyed: list[tuple[float, bytes]] = []
    moved = {i: j for i, j in chosen}
    for n, block in enumerate(blocks):
        key = moved[n] + 0.5 + n * 1e-6 if n in moved else float(n)
        keyed.append((key, block))
        if duplicate and parse(block).event in ("DialEnd", "Hangup"):
            keyed.append((key + 1e-7, block))
    return [block for _, block in sorted(keyed, key=lambda kb: kb[0])]


def events(path: Path, blocks: list[bytes]) -> list[str]:
    return [to_json_line(e) for e in replay_bytes(Translator(config_for(path)), [b"".join(blocks)])]


@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: p.stem)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_events_do_not_depend_on_the_order_asterisk_may_choose(path: Path, data: st.DataObject) -> None:
    """Any mix of the reorderings (and duplicates) gives the golden events."""
    blocks = split_stream(path.read_bytes())[0]
    candidates = moves(blocks)
    chosen = data.draw(st.lists(st.sampled_from(candidates), unique=True) if candidates else st.just([]))
    duplicate = data.draw(st.booleans())
    golden = path.with_suffix(".expected.jsonl").read_text(encoding="utf-8").splitlines()
    assert events(path, reorder(blocks, chosen, duplicate)) == golden


def test_every_reordering_at_once() -> None:
    """All of them together, in every fixture (the largest case hypothesis may not draw)."""
    found = 0
    for path in fixture_paths():
        blocks = split_stream(path.read_bytes())[0]
        candidates = moves(blocks)
        found += len(candidates)
        golden = path.with_suffix(".expected.jsonl").read_text(encoding="utf-8").splitlines()
        assert events(path, reorder(blocks, candidates, True)) == golden, path.stem
    assert found > 100  # the fixtures do contain such events


def by_component(lines: list[str]) -> dict[tuple[int, str], list[dict[str, object]]]:
    """Events grouped by component (extension, SubCallID), in the order sent."""
    grouped: dict[tuple[int, str], list[dict[str, object]]] = {}
    for line in lines:
        item = json.loads(line)
        grouped.setdefault((item["extension_id"], item["event"]["SubCallID"]), []).append(item["event"])
    return grouped


PICKUPS = [p for p in fixture_paths() if b"Event: Pickup\r\n" in p.read_bytes()]


@pytest.mark.parametrize("path", PICKUPS, ids=lambda p: p.stem)
def test_a_pickup_may_come_after_the_dialend_it_caused(path: Path) -> None:
    """Asterisk sends the caller's DialEnd (ANSWER, naming the picker) before or after the
    Pickup event and the rung phone's Hangup, from one run to the next: every component
    gets the same events (across extensions they interleave otherwise: the caller's
    answer comes first)."""
    blocks = split_stream(path.read_bytes())[0]
    msgs = [parse(b) for b in blocks]
    for i in reversed([i for i, m in enumerate(msgs) if m.event == "Pickup"]):
        picker = msgs[i].get("Uniqueid")
        j = next(
            k
            for k in range(i, len(msgs))
            if msgs[k].event == "DialEnd" and msgs[k].get("DestUniqueid") == picker
        )
        blocks = [*blocks[:i], blocks[j], *blocks[i:j], *blocks[j + 1 :]]
    moved = events(path, blocks)
    golden = path.with_suffix(".expected.jsonl").read_text(encoding="utf-8").splitlines()
    assert moved != golden  # the caller's answer now comes before the picker's dial-in
    assert by_component(moved) == by_component(golden)
