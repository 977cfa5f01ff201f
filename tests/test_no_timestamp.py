"""Streams without ``Timestamp`` (Asterisk's default, ``timestampevents = no``) work live:
EventTime is the time the bridge received each event, and the doctor warns, saying what
that costs, instead of failing."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.demo import ReplayServer
from bridge.doctor import NO_TIMESTAMP, diagnose
from bridge.replay import replay_bytes
from bridge.store import Store
from bridge.translate import Translator
from tests.conftest import FIXTURES, free_port

LAB = (FIXTURES / "lab.yaml").read_text()


def config(ami_port: int, tmp_path: Path) -> Any:
    return parse_config(
        LAB.replace("port: 15038", f"port: {ami_port}")
        + f"""
api: {{listen: "127.0.0.1:{free_port()}"}}
management: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{tmp_path / "b.db"}"}}
delivery: {{backoff_initial: 0.2, backoff_max: 1, allow_networks: ["127.0.0.0/8"]}}
"""
    )


async def test_events_without_timestamp_carry_the_receive_time(tmp_path: Path) -> None:
    """A real call replayed over AMI with no Timestamp headers: its events arrive in full,
    with EventTime the moment the bridge got each AMI event and the talk time measured
    on those (the recorded call talks for 3 s)."""
    got: list[dict[str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(dict(parse_qsl((await request.read()).decode())))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/h", hook)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    fixture = FIXTURES / "internal-answered-caller-hangup.ami"
    replay = ReplayServer([(fixture.stem, fixture.read_bytes())], speed=1.0, max_gap=5.0, timestamps=False)
    cfg = config(await replay.start(), tmp_path)
    store = Store(cfg.store.path)
    for kind in ("dial-out", "answer", "hangup"):
        store.add_subscription(1101, kind, f"http://127.0.0.1:{receiver.port}/h", "POST")
    store.close()
    started = time.time_ns() // 1000
    daemon = Daemon(cfg)
    task = asyncio.ensure_future(daemon.run())
    try:
        await asyncio.wait_for(replay.finished.wait(), 30)
        for _ in range(50):
            if len(got) >= 3:
                break
            await asyncio.sleep(0.1)
    finally:
        daemon.stopping.set()
        await task
        await replay.close()
        await receiver.close()
    ended = time.time_ns() // 1000
    assert [g["EventType"] for g in got] == ["dial-out", "answer", "hangup"]
    times = [int(g["EventTime"]) for g in got]
    assert started <= times[0] <= times[1] <= times[2] <= ended
    assert 2_000_000 < int(got[2]["Duration"]) < 4_500_000  # recorded: 3 s of talk
    assert got[2]["CallStatus"] == "ANSWER" and got[2]["CallerIDNum"] == "000*101"


async def test_doctor_warns_about_a_stream_without_timestamps() -> None:
    """The doctor's round trip comes back without Timestamp: a WARN that says what is lost
    (EventTime is the receive time) and how to fix it; no FAIL for it."""
    for timestamps in (False, True):
        replay = ReplayServer([], timestamps=timestamps)
        port = await replay.start()
        try:
            report = await diagnose(config(port, Path("/tmp")), timeout=5)
        finally:
            await replay.close()
        if timestamps:
            assert (
                "OK",
                "events come back with Timestamp (timestampevents = yes, read=user)",
            ) in report.lines
        else:
            assert ("WARN", NO_TIMESTAMP) in report.lines
            assert (
                "EventTime is then the time it received" in NO_TIMESTAMP
                and "timestampevents = yes" in NO_TIMESTAMP
            )


def test_a_recording_without_timestamps_replays_to_the_same_events_timeless() -> None:
    """Replayed, a stream without Timestamp has nothing to take time from: the same events
    as the golden file, with EventTime and Duration 0 and no BridgedDuration (what the
    README says)."""
    fixture = FIXTURES / "internal-answered-caller-hangup.ami"
    stripped = re.sub(rb"Timestamp: [^\r]*\r\n", b"", fixture.read_bytes())
    assert b"Timestamp" not in stripped
    got = [e for _, e in replay_bytes(Translator(parse_config(LAB)), [stripped])]
    golden = [
        json.loads(line)["event"] for line in fixture.with_suffix(".expected.jsonl").read_text().splitlines()
    ]
    timeless = {"EventTime": 0, "Duration": 0}
    assert got == [{k: timeless.get(k, v) for k, v in e.items() if k != "BridgedDuration"} for e in golden]
