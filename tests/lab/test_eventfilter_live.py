"""The manager.conf event filters the bridge suggests, on a real Asterisk."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.replay import replay_files
from tests.conftest import FIXTURES, REPO

pytestmark = pytest.mark.lab
sys.path.insert(0, str(REPO / "lab"))


@pytest.mark.usefixtures("lab")
def test_a_call_seen_through_the_suggested_filters_gives_the_same_events(tmp_path: Path) -> None:
    """Recorded at once as the plain bridge user and as a user with the eventfilter lines,
    a queue call (Local members, agents, VarSets) translates to the same events, and
    Asterisk sent the filtered user well under half the messages."""
    from driver import record_one  # type: ignore[import-not-found]

    filtered = tmp_path / "filtered" / "call.ami"
    filtered.parent.mkdir()
    rec = subprocess.Popen(
        [sys.executable, "-m", "bridge", "record", "--port", "15038", "--username", "bridge-filtered",
         "-o", str(filtered), "--until-idle", "3", "--duration", "90"],
        env=dict(os.environ, AMI_SECRET="lab-secret"), stderr=subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    try:
        full = asyncio.run(record_one("queue-local-members", tmp_path))
        rec.wait(timeout=100)
    finally:
        if rec.poll() is None:
            rec.kill()
    config = load_config(FIXTURES / "lab.yaml")
    events = [e for _, e in replay_files(config, [full])]
    assert len(events) == 15
    assert [e for _, e in replay_files(config, [filtered])] == events
    count = filtered.read_bytes().count(b"\r\n\r\n")
    assert 0 < count < 0.5 * full.read_bytes().count(b"\r\n\r\n")
