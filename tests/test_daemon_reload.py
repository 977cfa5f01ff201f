"""SIGHUP reloads the configuration of a running `ami-bridge run`: a new extension's events
and a new token work at once, the AMI connection stays the one it was, a delivery in
flight finishes once; an invalid file is refused with check-config's errors and the old
configuration keeps running."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.ami.message import split_stream
from bridge.api.app import LIMITER_KEY
from bridge.config import load_config
from bridge.daemon import Daemon
from bridge.demo import action_id
from bridge.store import Store
from tests.conftest import FIXTURES, REPO, Backend, free_port
from tests.test_mqtt import MOSQUITTO, Broker, collect

FIXTURE = FIXTURES / "internal-answered-caller-hangup.ami"  # 101 calls 102, 102 answers, 101 hangs up
OLD_TOKEN, NEW_TOKEN = "reload-old-token-0123456789", "reload-new-token-0123456789"
PHONE_101 = '{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101"}'
PHONE_102 = '{id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "102"}'


def call(n: int) -> bytes:
    """The fixture's call as a new call (its own channel ids), sent without Timestamps."""
    blocks = split_stream(FIXTURE.read_bytes())[0]
    data = b"".join(b for b in blocks if not b.startswith(b"Event: FullyBooted"))
    data = data.replace(b"lab-1795730465.", f"lab{n}-1795730465.".encode())
    return re.sub(rb"Timestamp: [0-9.]+\r\n", b"", data)


class FakeAmi:
    """Logs anyone in (counting the logins), answers Pings, and sends what it is told to."""

    def __init__(self) -> None:
        self.logins = 0
        self.writer: asyncio.StreamWriter | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            login = await reader.readuntil(b"\r\n\r\n")
            self.logins += 1
            writer.write(b"Response: Success\r\nActionID: " + action_id(login) +
                         b"\r\nMessage: Authentication accepted\r\n\r\n")  # fmt: skip
            self.writer = writer
            while True:
                action = await reader.readuntil(b"\r\n\r\n")
                writer.write(
                    b"Response: Success\r\nActionID: " + action_id(action) + b"\r\nPing: Pong\r\n\r\n"
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async def send(self, data: bytes) -> None:
        for _ in range(100):
            if self.writer is not None:
                break
            await asyncio.sleep(0.05)
        assert self.writer is not None, "the bridge never logged in"
        self.writer.write(data)
        await self.writer.drain()


@dataclass
class Bridge:
    """A running `ami-bridge run` process and what surrounds it."""

    proc: subprocess.Popen[bytes]
    config: Path
    log: Path
    api: str
    ami: FakeAmi
    #: (path, form) of every webhook received
    got: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    ami_port: int = 0
    #: the management listener (/metrics, /health, the console)
    management: str = field(default_factory=lambda: f"http://127.0.0.1:{free_port()}")
    #: where its store is (None: the SQLite file beside the config)
    backend: Backend | None = None

    def config_text(self, extensions: list[str], tokens: list[str], extra: str = "") -> str:
        port = int(self.api.rsplit(":", 1)[1])
        return f"""
ami: {{host: 127.0.0.1, port: {self.ami_port}, username: bridge, secret: x{extra}}}
extensions: [{", ".join(extensions)}]
api: {{listen: "127.0.0.1:{port}", tokens: [{", ".join(f"{{token: {t}}}" for t in tokens)}]}}
management: {{listen: "{self.management.removeprefix("http://")}"}}
{self.backend.yaml() if self.backend else f'store: {{path: "{self.config.parent / "bridge.db"}"}}'}
delivery: {{allow_networks: ["127.0.0.0/8"]}}
"""

    def log_lines(self) -> list[dict[str, str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    async def until_logged(self, text: str, count: int = 1) -> dict[str, str]:
        for _ in range(200):
            found = [r for r in self.log_lines() if text in r["msg"]]
            if len(found) >= count:
                return found[count - 1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"never logged {text!r}:\n{self.log.read_text()}")

    async def until_got(self, n: int) -> None:
        for _ in range(200):
            if len(self.got) >= n:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(self.got)} webhooks received, expected {n}: {self.got}")

    async def status(self, token: str, path: str = "/api/ver1.0/user/") -> int:
        async with (
            aiohttp.ClientSession() as s,
            s.get(self.api + path, headers={"Authorization": f"Bearer {token}"}) as r,
        ):
            return r.status

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as s, s.get(self.management + "/metrics") as r:
            return await r.text()

    def reload(self, text: str) -> None:
        self.config.write_text(text)
        self.proc.send_signal(signal.SIGHUP)

    def events(self, ext: str) -> list[str]:
        return [form["EventType"] for path, form in self.got if path.endswith(f"/{ext}")]


@asynccontextmanager
async def running(
    tmp_path: Path, slow: float = 0.0, env: dict[str, str] | None = None, backend: Backend | None = None
) -> AsyncIterator[Bridge]:
    """The bridge with phone 101 only and OLD_TOKEN; every event of 101 and 102 subscribed
    (101's hangup to a receiver that answers after ``slow`` seconds)."""
    ami = FakeAmi()
    server = await asyncio.start_server(ami.serve, "127.0.0.1", 0)
    bridge_holder: list[Bridge] = []

    async def hook(request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode()))
        bridge_holder[0].got.append((request.path, form))
        if request.path.startswith("/slow"):
            await asyncio.sleep(slow)
        return web.Response()

    app = web.Application()
    app.router.add_post("/{kind}/{ext}", hook)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    config, log = tmp_path / "bridge.yaml", tmp_path / "daemon.log"
    bridge = Bridge(None, config, log, f"http://127.0.0.1:{free_port()}", ami)  # type: ignore[arg-type]
    bridge.ami_port = int(server.sockets[0].getsockname()[1])
    bridge.backend = backend
    bridge_holder.append(bridge)
    config.write_text(bridge.config_text([PHONE_101], [OLD_TOKEN]))
    store = backend.open() if backend else Store(tmp_path / "bridge.db")
    for ext in (1101, 1102):
        for kind in ("dial-in", "dial-out", "answer", "hangup"):
            where = "slow" if (ext, kind) == (1101, "hangup") else "h"
            store.add_subscription(ext, kind, f"http://127.0.0.1:{receiver.port}/{where}/{ext}", "POST")
    store.close()
    with open(log, "ab") as out:
        bridge.proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)],
                                       cwd=REPO, stderr=out, env=env)  # fmt: skip
    try:
        await bridge.until_logged("AMI logged in")
        yield bridge
    finally:
        bridge.proc.send_signal(signal.SIGTERM)
        assert bridge.proc.wait(timeout=20) == 0, log.read_text()
        server.close()
        await receiver.close()


async def test_sighup_applies_a_new_extension_and_token_without_touching_ami_or_deliveries(
    tmp_path: Path, store_backend: Backend
) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "PATH": "/usr/bin:/bin"}
    async with running(tmp_path, slow=1.5, env=env, backend=store_backend) as bridge:
        assert await bridge.status(NEW_TOKEN) == 401
        await bridge.ami.send(call(1))
        await bridge.until_got(3)  # 101's dial-out, answer, and its hangup now in flight (1.5 s)
        assert bridge.events("1101") == ["dial-out", "answer", "hangup"] and bridge.events("1102") == []
        bridge.reload(bridge.config_text([PHONE_101, PHONE_102], [OLD_TOKEN, NEW_TOKEN]))
        record = await bridge.until_logged("configuration reloaded")
        assert (
            "2 extensions (2 phones" in record["msg"] and "changed: extensions, api.tokens" in record["msg"]
        )
        assert await bridge.status(NEW_TOKEN) == 200 and await bridge.status(OLD_TOKEN) == 200
        await bridge.ami.send(call(2))
        await bridge.until_got(9)
        await asyncio.sleep(2.0)  # the slow hangup of the first call had time to finish (and not twice)
        assert bridge.events("1102") == ["dial-in", "answer", "hangup"]
        assert bridge.events("1101") == ["dial-out", "answer", "hangup"] * 2
        slow = [form["CallID"] for path, form in bridge.got if path.startswith("/slow")]
        assert len(slow) == 2 and len(set(slow)) == 2  # each call's hangup once: none sent again
        assert bridge.ami.logins == 1  # the AMI connection was never re-opened
        metrics = await bridge.metrics()
        assert 'ami_bridge_config_reloads_total{result="ok"} 1.0' in metrics
        assert 'ami_bridge_config_reloads_total{result="refused"} 0.0' in metrics
    check = store_backend.open()
    assert len(check.deliveries("delivered")) == 9 and check.deliveries("pending") == []
    assert all(d["attempts"] == 1 for d in check.deliveries("delivered"))
    check.close()
    said = []
    while True:
        try:
            said.append(notify.recv(4096).decode())
        except BlockingIOError:
            break
    notify.close()
    reloading = next(i for i, m in enumerate(said) if m.startswith("RELOADING=1\n"))
    assert re.search(r"^MONOTONIC_USEC=\d+$", said[reloading], re.M)
    assert said[reloading + 1].startswith("READY=1\nSTATUS=configuration reloaded: 2 extensions")


async def test_an_invalid_config_is_refused_with_check_config_errors_and_the_old_one_runs(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as bridge:
        bad = bridge.config_text([PHONE_101, PHONE_102], [NEW_TOKEN], extra=", hots: typo")
        bridge.reload(bad)
        record = await bridge.until_logged("reload refused")
        checked = subprocess.run([sys.executable, "-m", "bridge", "check-config", str(bridge.config)],
                                 cwd=REPO, capture_output=True, text=True)  # fmt: skip
        assert checked.returncode == 1 and "ami.hots: unknown key" in checked.stderr
        assert checked.stderr.strip() in record["msg"]
        assert record["msg"].endswith("still running the previous configuration")
        assert record["level"] == "error"
        assert await bridge.status(OLD_TOKEN) == 200 and await bridge.status(NEW_TOKEN) == 401
        await bridge.ami.send(call(1))
        await bridge.until_got(3)
        await asyncio.sleep(0.5)
        assert bridge.events("1101") == ["dial-out", "answer", "hangup"] and bridge.events("1102") == []
        assert 'ami_bridge_config_reloads_total{result="refused"} 1.0' in await bridge.metrics()
        assert bridge.ami.logins == 1


async def test_settings_that_need_a_restart_are_named_and_the_rest_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reload that also changes ami.host, api.listen and delivery.client: those keep their
    running values and the log names them; delivery settings, the SSRF guard, the variables
    (and so the AMI filters) and the rate limit are the new ones."""
    ami = FakeAmi()
    server = await asyncio.start_server(ami.serve, "127.0.0.1", 0)
    ami_port = int(server.sockets[0].getsockname()[1])
    listen, management = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    path = tmp_path / "bridge.yaml"

    def text(host: str, listen: str, delivery: str, variables: str, limit: int) -> str:
        return f"""
ami: {{host: {host}, port: {ami_port}, username: bridge, secret: x}}
extensions: [{PHONE_101}]
variables: {variables}
api: {{listen: "{listen}", rate_limit_per_minute: {limit}}}
management: {{listen: "{management}"}}
store: {{path: "{tmp_path / "bridge.db"}"}}
delivery: {delivery}
"""

    path.write_text(text("127.0.0.1", listen, "{read_timeout: 10}", "default", 600))
    daemon = Daemon(load_config(path), config_path=str(path))
    task = asyncio.ensure_future(daemon.run())
    try:
        for _ in range(100):
            if daemon._running is not None and ami.logins:
                break
            await asyncio.sleep(0.05)
        running = daemon._running
        assert running is not None
        protocol = running.source.manager.protocol
        want_before = protocol._want
        varset = b"Event: VarSet\r\nUniqueid: 1.1\r\nVariable: MY_TAG\r\nValue: x\r\n\r\n"
        assert not want_before(varset)
        path.write_text(text("localhost", f"127.0.0.1:{free_port()}",
                             '{read_timeout: 3, client: aiohttp, allow_networks: ["10.0.0.0/8"]}',
                             "{preset: default, tag: MY_TAG}", 5))  # fmt: skip
        with caplog.at_level(logging.INFO, logger="bridge.daemon"):
            assert daemon.reload()
        restart = [r.getMessage() for r in caplog.records if "needs a restart" in r.getMessage()]
        assert restart == ["needs a restart to apply: ami.host, api.listen, delivery.client (everything else "
                           "is applied; the running values are kept until then)"]  # fmt: skip
        assert daemon.config.ami.host == running.source.config.host == "127.0.0.1"
        assert daemon.config.api.listen == listen and daemon.config.delivery.client == "builtin"
        assert running.dispatcher.config.read_timeout == 3 == daemon.config.delivery.read_timeout
        assert (
            [str(n) for n in running.guard.allow]
            == ["10.0.0.0/8"]
            == [str(n) for n in running.dispatcher.allow]
        )
        assert running.translator.config.variables.tag == "MY_TAG"
        assert protocol is running.source.manager.protocol and protocol._want(varset)  # same connection
        assert running.app[LIMITER_KEY].capacity == 5
        assert ami.logins == 1
    finally:
        daemon.stopping.set()
        await task
        server.close()


async def test_a_reload_adds_and_removes_the_mqtt_mirror(tmp_path: Path) -> None:
    """No mqtt: at start; a reload adding it starts a mirror that connects and is in the
    metrics; a reload removing it stops that mirror (its status "offline")."""
    if not os.path.exists(MOSQUITTO):
        pytest.fail("mosquitto is not installed: scripts/system-deps installs it")
    broker = Broker(tmp_path)
    broker.start()
    ami = FakeAmi()
    server = await asyncio.start_server(ami.serve, "127.0.0.1", 0)
    path = tmp_path / "bridge.yaml"
    base = f"""
ami: {{host: 127.0.0.1, port: {server.sockets[0].getsockname()[1]}, username: bridge, secret: x}}
extensions: [{PHONE_101}]
api: {{listen: "127.0.0.1:{free_port()}"}}
management: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{tmp_path / "bridge.db"}"}}
"""
    path.write_text(base)
    daemon = Daemon(load_config(path), config_path=str(path))
    task = asyncio.ensure_future(daemon.run())
    try:
        for _ in range(100):
            if daemon._running is not None:
                break
            await asyncio.sleep(0.05)
        running = daemon._running
        assert running is not None and daemon.mirror is None
        path.write_text(base + f'mqtt: {{url: "mqtt://127.0.0.1:{broker.port}", topic_prefix: reload}}\n')
        assert daemon.reload()
        mirror = daemon.mirror
        assert mirror is not None and running.parts.mirror is mirror
        for _ in range(100):
            if mirror.connected:
                break
            await asyncio.sleep(0.05)
        assert mirror.connected
        online = await collect(broker.port, "reload/status", 1)
        assert online[0].payload == b"online"
        path.write_text(base)
        assert daemon.reload()
        assert daemon.mirror is None and running.parts.mirror is None
        await asyncio.wait_for(asyncio.gather(*daemon._retired), 5)  # flushed, "offline" said
        assert not mirror.connected
        offline = await collect(broker.port, "reload/status", 1)
        assert offline[0].payload == b"offline"
        assert ami.logins == 1
    finally:
        daemon.stopping.set()
        await task
        server.close()
        broker.stop()
