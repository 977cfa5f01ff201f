"""Recording a real Asterisk: `ami-bridge record` and the scenario driver, end to end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.ami.message import parse, split_stream
from tests.conftest import REPO

pytestmark = pytest.mark.lab

sys.path.insert(0, str(REPO / "lab"))


def record_cmd(*args: str) -> list[str]:
    """`ami-bridge record` against the lab, as the bridge's AMI user."""
    return [sys.executable, "-m", "bridge", "record", "--port", "15038", "--username", "bridge", *args]


def event_names(data: bytes) -> list[str]:
    blocks, tail = split_stream(data)
    assert tail is None
    return [e for e in (parse(b).event for b in blocks) if e]


@pytest.mark.usefixtures("lab")
def test_driver_records_a_busy_call(tmp_path: Path) -> None:
    """The driver places a real call that gets 486 and records it with its description."""
    from driver import record_one  # type: ignore[import-not-found]

    path = asyncio.run(record_one("internal-busy", tmp_path))
    msgs = [parse(b) for b in split_stream(path.read_bytes())[0]]
    assert any(m.event == "DialEnd" and m.get("DialStatus") == "BUSY" for m in msgs)
    assert "What happened" in path.with_suffix(".md").read_text()


@pytest.mark.usefixtures("lab")
def test_cli_record_until_idle_captures_a_whole_call(tmp_path: Path) -> None:
    """`ami-bridge record --until-idle` stops by itself after a call and keeps CRLF bytes."""
    out = tmp_path / "call.ami"
    env = dict(os.environ, AMI_SECRET="lab-secret")
    rec = subprocess.Popen(
        record_cmd("-o", str(out), "--until-idle", "1.5", "--duration", "60"),
        env=env,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        from driver import AMI, Lab  # type: ignore[import-not-found]
        from panoramisk import Manager

        async def place_call() -> None:
            # The driver's Lab needs a recorder only to find channels; this call needs none.
            ami = Manager(host=AMI[0], port=AMI[1], username="lab", secret="lab-secret", ping_delay=3600)
            ami.connect()
            await asyncio.sleep(1.0)
            lab = Lab(None, ami)
            try:
                await lab.phone("102", ring_ms=500)
                await lab.call("101", "Anna", "102", hold_ms=1000)
            finally:
                await lab.close()
                ami.close()

        asyncio.run(place_call())
        _, err = rec.communicate(timeout=30)
    finally:
        if rec.poll() is None:
            rec.kill()
    assert rec.returncode == 0, err
    data = out.read_bytes()
    names = event_names(data)
    assert names.count("Hangup") == 2
    assert names.index("Newchannel") < names.index("DialBegin") < names.index("Hangup")
    assert data.count(b"\n") == data.count(b"\r\n")
    assert b"recorded" in err


@pytest.mark.usefixtures("lab")
def test_cli_record_reports_a_refused_login(tmp_path: Path) -> None:
    """A wrong secret ends `ami-bridge record` with a clear error, not a hang."""
    proc = subprocess.run(
        record_cmd("--secret", "wrong", "-o", str(tmp_path / "x.ami"), "--duration", "5"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert proc.returncode == 1
    assert "login refused" in proc.stderr
