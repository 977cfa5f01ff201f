"""systemd integration: the sd_notify protocol over real sockets, and the unit file."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.sdnotify import Notifier, watchdog_loop
from tests.conftest import REPO

UNIT = REPO / "systemd" / "ami-bridge.service"
#: the template: ami-bridge@NAME runs /etc/ami-bridge/NAME.yaml (one per Asterisk server or HA member)
TEMPLATE = REPO / "systemd" / "ami-bridge@.service"


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A unix datagram socket bound in tmp_path, playing systemd's notify socket."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1.0)
    try:
        yield sock, path
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on sock, decoded, without blocking."""
    out: list[str] = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(1.0)
    return out


def test_notify_protocol_on_a_socket_path(listener: tuple[socket.socket, str]) -> None:
    """ready/status/stopping/watchdog each send one datagram of exact KEY=value lines."""
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    assert n.enabled
    assert n.watchdog_interval() == pytest.approx(0.1)

    assert n.ready()
    assert sock.recv(4096).decode() == f"READY=1\nMAINPID={os.getpid()}"
    assert n.ready("listening on 127.0.0.1:8080")
    assert sock.recv(4096).decode() == f"READY=1\nSTATUS=listening on 127.0.0.1:8080\nMAINPID={os.getpid()}"
    assert n.status("AMI connected\nfine")
    assert sock.recv(4096).decode() == "STATUS=AMI connected fine"
    assert n.watchdog()
    assert sock.recv(4096).decode() == "WATCHDOG=1"
    assert n.stopping()
    assert sock.recv(4096).decode() == "STOPPING=1"
    assert n.stopping("draining deliveries")
    assert sock.recv(4096).decode() == "STOPPING=1\nSTATUS=draining deliveries"
    assert n.send("EXTEND_TIMEOUT_USEC=5000000", "STATUS=x")
    assert sock.recv(4096).decode() == "EXTEND_TIMEOUT_USEC=5000000\nSTATUS=x"
    assert received(sock) == []


def test_reloading_says_when_it_began(listener: tuple[socket.socket, str]) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC, in µs) as
    sd_notify(3) asks of a reload; ready() then ends it."""
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading("reloading /etc/ami-bridge/config.yaml\nnow")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = sock.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1" and lines[2] == "STATUS=reloading /etc/ami-bridge/config.yaml now"
    key, _, usec = lines[1].partition("=")
    assert key == "MONOTONIC_USEC" and before <= int(usec) <= after
    assert len(lines) == 3


def test_notify_protocol_on_an_abstract_socket() -> None:
    """NOTIFY_SOCKET=@name reaches the abstract-namespace socket named by a leading NUL."""
    name = f"ami-bridge-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(1.0)
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.address == "\0" + name
        assert n.ready("up")
        assert sock.recv(4096).decode() == f"READY=1\nSTATUS=up\nMAINPID={os.getpid()}"
        assert n.watchdog()
        assert sock.recv(4096).decode() == "WATCHDOG=1"


def test_without_notify_socket_everything_is_a_quiet_no_op() -> None:
    """Outside systemd every call returns False and nothing raises."""
    for n in (Notifier.from_env({}), Notifier.from_env({"NOTIFY_SOCKET": ""}), Notifier(None, None)):
        assert not n.enabled
        assert n.address is None
        assert n.ready("x") is False
        assert n.status("x") is False
        assert n.stopping("x") is False
        assert n.watchdog() is False
        assert n.send("A=1") is False
        assert n.watchdog_interval() is None


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With no mapping given, from_env reads the process environment."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "s"))
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    n = Notifier.from_env()
    assert n.socket_path == str(tmp_path / "s")
    assert n.watchdog_interval() == pytest.approx(15.0)


def test_missing_socket_returns_false_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A socket path that does not exist makes sends return False, with one warning logged."""
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert n.enabled
    with caplog.at_level(logging.WARNING, logger="bridge.sdnotify"):
        assert n.ready() is False
        assert n.watchdog() is False
        assert n.status("x") is False
    warnings = [r for r in caplog.records if r.name == "bridge.sdnotify"]
    assert len(warnings) == 1
    assert "nobody-listens.sock" in warnings[0].getMessage()


def test_a_socket_that_is_not_a_socket_returns_false(tmp_path: Path) -> None:
    """NOTIFY_SOCKET naming a regular file, or a stream socket, fails softly too."""
    plain = tmp_path / "plain"
    plain.write_text("")
    assert Notifier(str(plain), None).ready() is False
    stream_path = str(tmp_path / "stream.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stream:
        stream.bind(stream_path)
        stream.listen()
        assert Notifier(stream_path, None).watchdog() is False


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, 0.1),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_pid_and_usec(tmp_path: Path, env: dict[str, str], interval: float | None) -> None:
    """WATCHDOG_USEC counts only for this process (WATCHDOG_PID) and only when a positive integer."""
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "s"), **env})
    if interval is None:
        assert n.watchdog_interval() is None
    else:
        assert n.watchdog_interval() == pytest.approx(interval)


async def test_watchdog_pid_of_another_process_disables_the_loop(listener: tuple[socket.socket, str]) -> None:
    """With WATCHDOG_PID naming another process, watchdog_loop returns at once and sends nothing."""
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
    await asyncio.wait_for(watchdog_loop(n, lambda: True), 0.5)
    assert received(sock) == []


async def test_watchdog_loop_feeds_only_while_healthy(listener: tuple[socket.socket, str]) -> None:
    """WATCHDOG=1 about every interval while healthy() is True, none while it is False, then again."""
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # every 0.05 s
    state = {"healthy": True}

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(watchdog_loop(n, lambda: state["healthy"]), 0.5)
    pings = received(sock)
    assert set(pings) == {"WATCHDOG=1"}
    assert 6 <= len(pings) <= 12, pings  # 10 expected: at 0, 0.05, ..., 0.45 s

    task = asyncio.ensure_future(watchdog_loop(n, lambda: state["healthy"]))
    try:
        await asyncio.sleep(0.2)
        assert len(received(sock)) >= 2
        state["healthy"] = False  # no await between health check and send: none can slip through
        await asyncio.sleep(0.4)
        assert received(sock) == []
        state["healthy"] = True
        await asyncio.sleep(0.2)
        assert len(received(sock)) >= 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_watchdog_loop_counts_a_raising_health_check_as_unhealthy(
    listener: tuple[socket.socket, str],
) -> None:
    """A health check that raises withholds the keep-alive instead of ending the loop."""
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})

    def broken() -> bool:
        raise RuntimeError("health check bug")

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(watchdog_loop(n, broken), 0.2)
    assert received(sock) == []


async def test_watchdog_loop_returns_at_once_without_watchdog(listener: tuple[socket.socket, str]) -> None:
    """No WATCHDOG_USEC: the loop returns immediately (no task left spinning)."""
    sock, path = listener
    await asyncio.wait_for(watchdog_loop(Notifier.from_env({"NOTIFY_SOCKET": path}), lambda: True), 0.1)
    await asyncio.wait_for(watchdog_loop(Notifier.from_env({}), lambda: True), 0.1)
    assert received(sock) == []


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> every value given, in order (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        assert not line.endswith("\\"), "no continuation lines expected"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_for_checks(tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart runs a binary that exists here (/bin/true)."""
    true = shutil.which("true") or "/bin/true"
    lines = [
        f"ExecStart={true}" if line.startswith("ExecStart=") else line
        for line in UNIT.read_text().splitlines()
    ]
    copy = tmp_path / UNIT.name
    copy.write_text("\n".join(lines) + "\n")
    return copy


def test_unit_file_settings() -> None:
    """The unit is Type=notify with a watchdog, restarts on failure, and is sandboxed."""
    unit = parse_unit(UNIT.read_text())
    assert set(unit) == {"Unit", "Service", "Install"}
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert (
        service["ExecStart"] == "/opt/ami-bridge/venv/bin/ami-bridge run --config /etc/ami-bridge/config.yaml"
    )
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # systemctl reload: SIGHUP re-reads the config
    assert service["WatchdogSec"] == "30"
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"] == "2"
    assert service["TimeoutStopSec"] == "20"
    assert service["User"] == service["Group"] == "ami-bridge"
    assert service["StateDirectory"] == "ami-bridge"
    assert service["ConfigurationDirectory"] == "ami-bridge"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/ami-bridge"
    assert service["NoNewPrivileges"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateDevices"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert service["AmbientCapabilities"] == ""
    assert service["UMask"] == "0077"
    assert service["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert unit["Service"]["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    for key in (
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert service[key] == "yes", key
    assert unit["Unit"]["After"] == ["network-online.target"]
    assert unit["Unit"]["Wants"] == ["network-online.target"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    # the daemon's store must be where the sandbox lets it write
    assert "store:\n  path: /var/lib/ami-bridge/" in (REPO / "config.example.yaml").read_text()


def test_unit_for_checks_only_rewrites_exec_start(tmp_path: Path) -> None:
    """The copy verified below differs from the shipped unit in ExecStart alone."""
    original = parse_unit(UNIT.read_text())
    copy = parse_unit(unit_for_checks(tmp_path).read_text())
    assert copy["Service"].pop("ExecStart") != original["Service"].pop("ExecStart")
    assert copy == original


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze not found: apt-get install systemd to check the unit file",
)


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the unit, with no warning about it."""
    assert SYSTEMD_ANALYZE is not None
    copy = unit_for_checks(tmp_path)
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    # verify exits 0 on unknown keys and bad values too: it only warns, naming the file
    complaints = [line for line in proc.stderr.splitlines() if copy.name in line]
    assert complaints == [], proc.stderr


@needs_analyze
def test_systemd_analyze_security_exposure(tmp_path: Path) -> None:
    """The offline security review rates the unit at most 2.0 (1.6 OK with systemd 252)."""
    assert SYSTEMD_ANALYZE is not None
    copy = unit_for_checks(tmp_path)
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--threshold=20", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in proc.stderr or "--threshold" in proc.stderr:
        pytest.skip(f"this systemd-analyze has no offline security review: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "Overall exposure level" in proc.stdout


@needs_analyze
def test_the_commented_credentials_are_valid_when_turned_on(tmp_path: Path) -> None:
    """The unit's commented LoadCredential= lines (one per secret the config can read from
    ${CREDENTIALS_DIRECTORY}), uncommented, still verify cleanly."""
    assert SYSTEMD_ANALYZE is not None
    copy = unit_for_checks(tmp_path)
    text = copy.read_text()
    creds = [line[1:] for line in text.splitlines() if line.startswith("#LoadCredential=")]
    assert [c.partition("=")[2].partition(":")[0] for c in creds] == [
        "ami-secret", "api-token", "crm-secret", "webhook-secret", "mqtt-password"]  # fmt: skip
    copy.write_text(text.replace("#LoadCredential=", "LoadCredential="))
    assert (
        parse_unit(copy.read_text())["Service"]["LoadCredential"][0]
        == "ami-secret:/etc/ami-bridge/ami-secret"
    )
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if copy.name in line] == [], proc.stderr


def test_template_unit_is_the_unit_with_the_instance_config() -> None:
    """ami-bridge@.service: the same settings and sandbox as ami-bridge.service, but
    ExecStart reads /etc/ami-bridge/<instance>.yaml and the description names the instance."""
    single, template = parse_unit(UNIT.read_text()), parse_unit(TEMPLATE.read_text())
    assert template["Service"].pop("ExecStart") == [
        "/opt/ami-bridge/venv/bin/ami-bridge run --config /etc/ami-bridge/%i.yaml"
    ]
    single["Service"].pop("ExecStart")
    assert template["Service"] == single["Service"]  # ExecReload, watchdog, hardening: all the same
    assert template["Service"]["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert template["Unit"].pop("Description") == ["ami-bridge %i: Asterisk AMI events to webhooks"]
    single["Unit"].pop("Description")
    assert template["Unit"] == single["Unit"]
    assert template["Install"] == single["Install"]
    # the commented credentials: a per-instance AMI secret, the database password beside the others
    creds = [line[1:] for line in TEMPLATE.read_text().splitlines() if line.startswith("#LoadCredential=")]
    assert creds[:2] == ["LoadCredential=ami-secret:/etc/ami-bridge/%i.ami-secret",
                         "LoadCredential=db-password:/etc/ami-bridge/db-password"]  # fmt: skip


def template_for_checks(tmp_path: Path, name: str, credentials: bool = False) -> Path:
    """A copy of the template named ``name`` (the template itself or an instance of it),
    its ExecStart's binary /bin/true (arguments, %i included, kept)."""
    true = shutil.which("true") or "/bin/true"
    text = TEMPLATE.read_text().replace(
        "ExecStart=/opt/ami-bridge/venv/bin/ami-bridge ", f"ExecStart={true} "
    )
    assert f"ExecStart={true} run --config /etc/ami-bridge/%i.yaml" in text
    if credentials:
        text = text.replace("#LoadCredential=", "LoadCredential=")
    copy = tmp_path / name
    copy.write_text(text)
    return copy


@needs_analyze
@pytest.mark.parametrize("name", ["ami-bridge@.service", "ami-bridge@pbx1.service"])
@pytest.mark.parametrize("credentials", [False, True])
def test_systemd_analyze_verifies_the_template(tmp_path: Path, name: str, credentials: bool) -> None:
    """systemd-analyze verify accepts the template and an instance of it (pbx1), with its
    commented LoadCredential= lines on or off, with no warning about it."""
    assert SYSTEMD_ANALYZE is not None
    copy = template_for_checks(tmp_path, name, credentials)
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if "ami-bridge@" in line] == [], proc.stderr


@needs_analyze
def test_systemd_analyze_security_of_an_instance(tmp_path: Path) -> None:
    """An instance of the template is as locked down as the single unit (at most 2.0)."""
    assert SYSTEMD_ANALYZE is not None
    copy = template_for_checks(tmp_path, "ami-bridge@pbx1.service")
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--threshold=20", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in proc.stderr or "--threshold" in proc.stderr:
        pytest.skip(f"this systemd-analyze has no offline security review: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    level = proc.stdout.split("Overall exposure level for ami-bridge@pbx1.service:")[1].split()[0]
    assert float(level) <= 2.0, proc.stdout[-500:]
