"""A real PostgreSQL for the tests: Debian's server, started in a temporary directory.

:func:`start` runs ``initdb`` and the server as an unprivileged user (PostgreSQL
refuses root: as root the tests run it as ``postgres``, the account Debian's package
creates), listening on 127.0.0.1 at a free port only (its socket in the same directory),
with ``trust`` authentication for loopback; :meth:`Server.stop` stops it by its PID and
removes the directory. :func:`find_or_install` finds the binaries (installing Debian's
``postgresql`` with apt-get as root when missing).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def find_or_install() -> Path:
    """The directory of Debian's PostgreSQL binaries (initdb, postgres)."""
    for attempt in range(2):
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if found:
            return found[-1].parent
        if attempt or os.geteuid() != 0 or not shutil.which("apt-get"):
            break
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
            subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)
    pytest.skip(
        "PostgreSQL is not installed and cannot be: not root or no apt-get (apt-get install postgresql)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    root: Path
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"postgresql://bridge@127.0.0.1:{self.port}/bridge"

    def stop(self) -> None:
        """Stop it by its PID (a fast shutdown), then remove its directory."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        for _ in range(200):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def start(bin_dir: Path | None = None) -> Server:
    """initdb + postgres on 127.0.0.1:<free port>; a role and a database ``bridge``."""
    bin_dir = bin_dir or find_or_install()
    root = Path(tempfile.mkdtemp(prefix="ami-bridge-pg-"))
    data = root / "data"
    user = None
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    os.chmod(root, 0o700)

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                              user=user.pw_uid if user else None, group=user.pw_gid if user else None)  # fmt: skip

    done = run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
               "--no-sync")  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
    port = _free_port()
    log = root / "server.log"
    proc = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
         "-k", str(root), "-c", "fsync=off", "-c", "max_connections=200"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        user=user.pw_uid if user else None, group=user.pw_gid if user else None, start_new_session=True,
    )  # fmt: skip
    server = Server(root, port, proc.pid)
    psql = str(bin_dir / "psql") if (bin_dir / "psql").exists() else shutil.which("psql") or "psql"
    for _ in range(200):
        ready = subprocess.run([psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
                                "-Atc", "SELECT 1"], capture_output=True, text=True, check=False)  # fmt: skip
        if ready.returncode == 0:
            break
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    else:
        server.stop()
        raise RuntimeError(f"postgres did not start: {log.read_text()[-2000:]}")
    for sql in ("CREATE ROLE bridge LOGIN", "CREATE DATABASE bridge OWNER bridge"):
        done = subprocess.run([psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
                               "-Atc", sql], capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            server.stop()
            raise RuntimeError(f"{sql}: {done.stderr}")
    return server
