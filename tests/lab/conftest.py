"""The live tier: a real Asterisk from the lab, started once per test session.

These tests need root (debootstrap, chroot). Where that is impossible they are skipped
with the reason; CI runs as root, so there they always run. Set LAB_KEEP=1 to leave
the lab running after the tests.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import REPO

LAB = REPO / "lab" / "lab.sh"


@pytest.fixture(scope="session")
def lab() -> Iterator[None]:
    """A running lab Asterisk (AMI 127.0.0.1:15038), stopped by PID afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (debootstrap, chroot)")
    was_running = subprocess.run([LAB, "status"], capture_output=True).returncode == 0
    subprocess.run([LAB, "up"], check=True, timeout=900)
    yield
    if not was_running and not os.environ.get("LAB_KEEP"):
        subprocess.run([LAB, "down"], check=True, timeout=60)
