"""`ami-bridge demo`: from nothing to webhooks, over the real AMI client path."""

from __future__ import annotations

import subprocess
import sys

from bridge.demo import demo_streams
from tests.conftest import FIXTURES, REPO, free_port


def test_demo_data_are_the_reviewed_fixtures() -> None:
    """The recordings shipped in the package are byte-identical copies of fixtures/."""
    streams = demo_streams()
    assert len(streams) >= 5
    for name, data in streams:
        assert data == (FIXTURES / f"{name}.ami").read_bytes(), name


def test_demo_delivers_every_recorded_flow() -> None:
    """One pass of the demo delivers exactly the webhooks the golden files predict."""
    expected = sum(
        1
        for name, _ in demo_streams()
        for line in (FIXTURES / f"{name}.expected.jsonl").read_text().splitlines()
        if '"extension_id": 1106' not in line and '"extension_id": 1301' not in line
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--port", str(free_port()), "--duration", "12", "--speed", "20"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"demo: {expected} webhooks received" in proc.stdout
    assert "webhook  1300 hangup       in  ANSWER      000*101 -> 000*300  Bridged=yes" in proc.stdout
    assert "/docs" in proc.stdout and "Bearer" in proc.stdout
