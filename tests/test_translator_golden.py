"""Every recorded fixture replays to its reviewed golden events, deterministically.

Regenerate after a deliberate change with ``pytest tests/test_translator_golden.py
--regen-golden`` and review the diff of fixtures/*.expected.jsonl event by event.
"""

from __future__ import annotations

import ast
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.replay import replay_bytes, replay_files, to_json_line
from bridge.translate import Translator
from tests.conftest import FIXTURES, REPO, config_for, config_path, fixture_paths

CONFIG = load_config(FIXTURES / "lab.yaml")
PATHS = fixture_paths()


def replay_lines(path: Path) -> list[str]:
    return [to_json_line(e) for e in replay_files(config_for(path), [path])]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_fixture_replays_to_its_golden_file(path: Path, request: pytest.FixtureRequest) -> None:
    """The events derived from the recording are exactly the reviewed ones."""
    golden = path.with_suffix(".expected.jsonl")
    lines = replay_lines(path)
    text = "".join(line + "\n" for line in lines)
    if request.config.getoption("--regen-golden"):
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden file; run pytest --regen-golden and review {golden.name}"
    assert golden.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_replay_is_the_same_in_any_chunking(path: Path) -> None:
    """Whole, line by line or in random chunks, the same stream gives the same events."""
    data = path.read_bytes()
    config = config_for(path)
    whole = [to_json_line(e) for e in replay_bytes(Translator(config), [data])]
    lines = [to_json_line(e) for e in replay_bytes(Translator(config), data.splitlines(keepends=True))]
    rng = random.Random(path.stem)
    cuts = sorted(rng.sample(range(1, len(data)), min(200, len(data) - 1)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    chunked = [to_json_line(e) for e in replay_bytes(Translator(config), chunks)]
    assert whole == lines == chunked


STANDALONE = ("voicemail", "message-in", "message-out")


def components(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Call components by SubCallID (voicemail and message events stand alone)."""
    by_sub: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ext_id, event in replay_files(config_for(path), [path]):
        if event["EventType"] not in STANDALONE:
            by_sub[event["SubCallID"]].append({"ext": ext_id, **event})
    return by_sub


def threads(path: Path) -> set[int]:
    return {e.id for e in config_for(path).extensions if e.type in ("queue", "ivr")}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_component_invariants(path: Path) -> None:
    """Each component: starts with dial-in/out, at most one answer, exactly one hangup
    (last), time never goes back, one extension, one CallID; answered iff ANSWER."""
    for sub, evs in components(path).items():
        kinds = [e["EventType"] for e in evs]
        assert kinds[0] in ("dial-in", "dial-out"), (sub, kinds)
        assert kinds.count("answer") <= 1, (sub, kinds)
        assert kinds.count("hangup") == 1 and kinds[-1] == "hangup", (sub, kinds)
        times = [e["EventTime"] for e in evs]
        assert times == sorted(times), (sub, times)
        assert len({e["ext"] for e in evs}) == 1
        assert len({e["CallID"] for e in evs}) == 1
        assert len({e["CallFlow"] for e in evs}) == 1
        hangup = evs[-1]
        if evs[0]["ext"] in threads(path) and evs[0]["CallFlow"] == "in":
            # queue/IVR in-thread: no answer event; Bridged says whether a person answered
            assert "answer" not in kinds and hangup["Bridged"] in ("yes", "no"), (sub, kinds)
            if hangup["Bridged"] == "yes":
                assert hangup["CallStatus"] == "ANSWER" and hangup["BridgedDuration"] > 0
        else:
            assert "Bridged" not in hangup
            assert (hangup["CallStatus"] == "ANSWER") == ("answer" in kinds), (sub, hangup)
            assert (hangup["Duration"] > 0) == ("answer" in kinds), (sub, hangup)
        assert {"CallID", "SubCallID", "CallFlow", "CallStatus", "EventTime"} <= set(hangup)
        assert all(v not in ("", None) for e in evs for v in e.values())


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_every_event_reads_as_telphin_consumers_read_it(path: Path) -> None:
    """Every event of the fixture: CallFlow in/out (lower case), the event's extension in
    CalledNumber (in) or CallerIDNum (out) as its extended number, numbers either extended
    or external, CallerIDName present, extension names and ids in agreement."""
    from tests.telphin_consumer import wire_problems

    events = list(replay_files(config_for(path), [path]))
    assert events
    extensions = {e.id: (e.extended, e.name) for e in config_for(path).extensions}
    for ext_id, event in events:
        assert wire_problems(ext_id, event, extensions) == [], event


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_standalone_events_have_their_fields(path: Path) -> None:
    """voicemail carries RecID and Duration; messages name both sides and carry the text."""
    for _, event in replay_files(config_for(path), [path]):
        if event["EventType"] == "voicemail":
            assert event["RecID"] and event["Duration"] > 0 and event["CalledExtensionID"]
        elif event["EventType"].startswith("message-"):
            assert event["CallerIDNum"] and event["CalledNumber"] and event["Message"]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_all_state_is_dropped_when_calls_end(path: Path) -> None:
    """After a recording in which every channel hung up, no call or channel is left."""
    t = Translator(config_for(path))
    list(replay_bytes(t, [path.read_bytes()]))
    assert t.channels == {} and t.calls == {} and t._local_uids == {}


def test_replay_cli_is_byte_identical_across_runs() -> None:
    """`ami-bridge replay` prints the same bytes twice for all fixtures at once."""
    import subprocess
    import sys

    lab = [p for p in PATHS if config_path(p) == FIXTURES / "lab.yaml"]
    cmd = [sys.executable, "-m", "bridge", "replay", *map(str, lab), "--config", str(FIXTURES / "lab.yaml")]
    a = subprocess.run(cmd, capture_output=True, check=True, cwd=REPO).stdout
    b = subprocess.run(cmd, capture_output=True, check=True, cwd=REPO).stdout
    assert a == b and a.count(b"\n") > 50


PURE_MODULES = [REPO / "bridge" / "ami" / "message.py", *sorted((REPO / "bridge" / "translate").glob("*.py"))]
FORBIDDEN = {"asyncio", "socket", "aiohttp", "aiomqtt", "panoramisk", "sqlite3", "time", "datetime",
             "os", "pathlib", "random", "subprocess", "threading", "io", "selectors", "ssl"}  # fmt: skip


@pytest.mark.parametrize("module", PURE_MODULES, ids=lambda p: p.name)
def test_parser_and_translator_do_no_io(module: Path) -> None:
    """The parser and translator import nothing that does I/O or reads the clock."""
    tree = ast.parse(module.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, imported & FORBIDDEN


def test_variables_follow_the_latest_lines_under_either_key() -> None:
    """A channel's variables come as ChanVariable in its own events and DestChanVariable
    in dial events; whichever key shows them, the latest values win, also when they
    change and change back between the two views (cached lines are never stale)."""
    from bridge.ami.message import parse

    t = Translator(CONFIG)

    def own(tag: str, event: str = "Newstate") -> bytes:
        return (f"Event: {event}\r\nChannel: PJSIP/102-00000001\r\nChannelState: 5\r\nUniqueid: u.2\r\n"
                f"Linkedid: u.2\r\nChanVariable: TAG={tag}\r\nChanVariable: DID=\r\n\r\n").encode()  # fmt: skip

    def dest(tag: str) -> bytes:
        return ("Event: DialState\r\nDestChannel: PJSIP/102-00000001\r\nDestUniqueid: u.2\r\n"
                f"DestChanVariable: TAG={tag}\r\nDestChanVariable: DID=\r\n\r\n").encode()  # fmt: skip

    t.feed(parse(own("a", "Newchannel")))
    seen = []
    for block in (own("a"), dest("a"), own("a"), dest("b"), own("a"), dest("a"), dest("b"), own("b")):
        msg = parse(block)
        t._chan(msg, "Dest" if block.startswith(b"Event: DialState") else "")
        seen.append(t.channels["u.2"].vars["TAG"])
    assert seen == ["a", "a", "a", "b", "a", "a", "b", "b"]
