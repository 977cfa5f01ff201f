"""The daemon speaks systemd's notify protocol for real: READY, WATCHDOG, STOPPING."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, free_port


def test_run_notifies_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    """`ami-bridge run` under NOTIFY_SOCKET sends READY=1 with MAINPID, pings the watchdog,
    and says STOPPING=1 on SIGTERM."""
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
ami: {{host: 127.0.0.1, port: {free_port()}, username: bridge, secret: x}}
api: {{listen: "127.0.0.1:{free_port()}", tokens: [{{token: token-0123456789abcdef}}]}}
management: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{tmp_path / "bridge.db"}"}}
""")
    env = {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)], cwd=REPO, env=env,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        ready = sock.recv(4096).decode()
        assert "READY=1" in ready.split("\n") and f"MAINPID={proc.pid}" in ready
        start = time.monotonic()
        pings = [sock.recv(4096).decode() for _ in range(3)]
        assert pings == ["WATCHDOG=1"] * 3
        assert time.monotonic() - start < 2.0  # every 0.2 s (half of WATCHDOG_USEC)
        proc.send_signal(signal.SIGTERM)
        rest = []
        while True:
            msg = sock.recv(4096).decode()
            rest.append(msg)
            if msg.startswith("STOPPING=1"):
                break
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
