"""A full disk under the store: the daemon stops with a clear error, it does not go on
silently dropping events (systemd restarts it once there is room; AMI resync follows)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.demo import ReplayServer
from tests.conftest import FIXTURES, REPO, free_port


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (root only, as in CI)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_full_disk_stops_the_daemon_with_a_clear_error(tiny_disk: Path, tmp_path: Path) -> None:
    """When SQLite cannot commit an event, `ami-bridge run` exits 1 naming the store and the cause."""
    fixture = FIXTURES / "internal-answered-caller-hangup.ami"
    replay = ReplayServer([(fixture.stem, fixture.read_bytes())], passes=None, rate=400)
    ami_port = await replay.start()
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
ami: {{host: 127.0.0.1, port: {ami_port}, username: x, secret: x}}
extensions:
  - {{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101"}}
  - {{id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "102"}}
api: {{listen: "127.0.0.1:{free_port()}"}}
management: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{tiny_disk / "bridge.db"}"}}
""")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bridge", "run", "--config", str(config),
                                                "--log-format", "text", cwd=REPO,
                                                stderr=asyncio.subprocess.PIPE)  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
        await replay.close()
    text = err.decode()
    assert proc.returncode == 1, text[-2000:]
    assert f"cannot commit the event to {tiny_disk / 'bridge.db'}" in text
    assert "full" in text
