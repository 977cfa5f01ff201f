"""The MQTT mirror against a real mosquitto on loopback: topics, QoS, status and Last
Will, buffering while the broker is away, and the bound on that buffer."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.config import MqttConfig
from bridge.mqtt import MqttMirror
from tests.conftest import REPO, free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    """A real mosquitto on a loopback port, started and stopped by PID."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             "log_dest stderr\n")  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        import socket
        import time

        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not os.path.exists(MOSQUITTO):
        pytest.fail("mosquitto is not installed: scripts/system-deps installs it")
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


async def collect(port: int, topic: str, n: int, timeout: float = 10) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with aiomqtt.Client("127.0.0.1", port) as c:
        await c.subscribe(topic, qos=1)
        async with asyncio.timeout(timeout):
            async for m in c.messages:
                got.append(m)
                if len(got) >= n:
                    break
    return got


def event(n: int, kind: str = "hangup") -> dict[str, Any]:
    return {"EventType": kind, "CallID": f"c{n}", "EventTime": n, "CallerIDName": "Müller"}


@pytest.fixture
async def mirror_task(broker: Broker) -> AsyncIterator[tuple[MqttMirror, asyncio.Task[None]]]:
    mirror = MqttMirror(MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}", topic_prefix="pbx/events", qos=1))
    task = asyncio.ensure_future(mirror.run())
    yield mirror, task
    mirror.stop()
    await asyncio.wait_for(task, 5)


async def test_events_are_published_per_extension_and_type(broker: Broker, mirror_task: Any) -> None:
    """Each event lands on <prefix>/<extension_id>/<EventType> as its JSON fields, QoS 1."""
    mirror, _ = mirror_task
    listener = asyncio.ensure_future(collect(broker.port, "pbx/events/+/+", 2))
    await asyncio.sleep(0.5)
    mirror.publish(1101, event(1, "dial-out"))
    mirror.publish(1102, event(2, "hangup"))
    got = await listener
    assert [str(m.topic) for m in got] == ["pbx/events/1101/dial-out", "pbx/events/1102/hangup"]
    assert json.loads(got[0].payload) == event(1, "dial-out")  # type: ignore[arg-type]
    assert got[0].qos == 1


async def test_status_is_retained_online_then_offline_on_stop(broker: Broker) -> None:
    """The retained status topic says online while connected and offline after a clean stop."""
    mirror = MqttMirror(MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}"))
    task = asyncio.ensure_future(mirror.run())
    for _ in range(100):
        if mirror.connected:
            break
        await asyncio.sleep(0.05)
    online = await collect(broker.port, "pbx/events/status", 1)
    assert online[0].payload == b"online" and online[0].retain
    mirror.stop()
    await asyncio.wait_for(task, 5)
    offline = await collect(broker.port, "pbx/events/status", 1)
    assert offline[0].payload == b"offline" and offline[0].retain


async def test_last_will_says_offline_when_the_bridge_dies(broker: Broker) -> None:
    """kill -9 of a connected mirror: the broker publishes the retained Last Will 'offline'."""
    code = (
        "import asyncio, sys\n"
        "from bridge.config import MqttConfig\n"
        "from bridge.mqtt import MqttMirror\n"
        "async def main():\n"
        f"    m = MqttMirror(MqttConfig(url='mqtt://127.0.0.1:{broker.port}', keepalive=5))\n"
        "    t = asyncio.ensure_future(m.run())\n"
        "    while not m.connected: await asyncio.sleep(0.05)\n"
        "    await asyncio.sleep(0.3); print('up', flush=True); await t\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    online = await collect(broker.port, "pbx/events/status", 1)
    assert online[0].payload == b"online"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    await asyncio.sleep(0.5)
    will = await collect(broker.port, "pbx/events/status", 1)
    assert will[0].payload == b"offline" and will[0].retain


async def test_events_wait_for_a_broker_that_comes_back(tmp_path: Path) -> None:
    """With the broker down, events are buffered (oldest dropped past buffer_max) and the
    kept ones are published once it is reachable; the AMI side never waits."""
    b = Broker(tmp_path)
    mirror = MqttMirror(MqttConfig(url=f"mqtt://127.0.0.1:{b.port}", buffer_max=5, reconnect_max=3))
    task = asyncio.ensure_future(mirror.run())
    for n in range(8):
        mirror.publish(1101, event(n))
    assert len(mirror.buffer) == 5 and mirror.dropped == 3
    # start the broker right after a failed attempt: the next one is >= 1 s away, time
    # enough for the test's subscriber to be listening before the mirror reconnects
    while mirror.failures < 2:
        await asyncio.sleep(0.01)
    b.start()
    try:
        got = await collect(b.port, "pbx/events/1101/hangup", 5, timeout=15)
        assert [json.loads(m.payload)["CallID"] for m in got] == ["c3", "c4", "c5", "c6", "c7"]  # type: ignore[arg-type]
    finally:
        mirror.stop()
        await asyncio.wait_for(task, 5)
        b.stop()


async def test_daemon_mirrors_a_replayed_call_to_mqtt(broker: Broker, tmp_path: Path) -> None:
    """The running daemon publishes each event of a real recorded call on its topic, in
    the webhooks' format."""
    from bridge.config import parse_config
    from bridge.daemon import Daemon
    from bridge.demo import ReplayServer
    from tests.conftest import FIXTURES

    fixture = FIXTURES / "internal-answered-caller-hangup.ami"
    replay = ReplayServer([(fixture.stem, fixture.read_bytes())], rate=100)
    ami_port = await replay.start()
    config = parse_config(f"""
ami: {{host: 127.0.0.1, port: {ami_port}, username: x, secret: x}}
extensions:
  - {{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101"}}
  - {{id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "102"}}
api: {{listen: "127.0.0.1:{free_port()}"}}
management: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{tmp_path / "b.db"}"}}
mqtt: {{url: "mqtt://127.0.0.1:{broker.port}", topic_prefix: "pbx"}}
""")
    listener = asyncio.ensure_future(collect(broker.port, "pbx/+/+", 6))
    await asyncio.sleep(0.5)
    daemon = Daemon(config)
    task = asyncio.ensure_future(daemon.run())
    try:
        got = await listener
    finally:
        daemon.stopping.set()
        await task
        await replay.close()
    topics = [str(m.topic) for m in got]
    assert topics == ["pbx/1101/dial-out", "pbx/1102/dial-in", "pbx/1102/answer", "pbx/1101/answer",
                      "pbx/1101/hangup", "pbx/1102/hangup"]  # fmt: skip
    payloads = [json.loads(m.payload) for m in got]  # type: ignore[arg-type]
    assert payloads[-1]["CallStatus"] == "ANSWER"
    # the same values as the webhooks: lower-case CallFlow, extended numbers
    assert [(p["CallFlow"], p["CallerIDNum"], p["CalledNumber"]) for p in payloads[:2]] == [
        ("out", "000*101", "000*102"),
        ("in", "000*101", "000*102"),
    ]


async def test_reconfigure_reconnects_with_the_new_settings(broker: Broker, tmp_path: Path) -> None:
    """A reload pointing the mirror at another broker and prefix: it leaves the first one
    ("offline" on its old status topic) and connects to the second at once, where the
    next events go under the new prefix."""
    (tmp_path / "other").mkdir()
    other = Broker(tmp_path / "other")
    other.start()
    try:
        mirror = MqttMirror(MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}", topic_prefix="pbx/events"))
        task = asyncio.ensure_future(mirror.run())
        for _ in range(100):
            if mirror.connected:
                break
            await asyncio.sleep(0.05)
        assert mirror.connected
        listener = asyncio.ensure_future(collect(other.port, "pbx2/#", 2))
        await asyncio.sleep(0.3)
        mirror.reconfigure(MqttConfig(url=f"mqtt://127.0.0.1:{other.port}", topic_prefix="pbx2"))
        mirror.publish(1101, event(1))
        got = await listener
        assert [(str(m.topic), m.payload) for m in got] == [
            ("pbx2/status", b"online"),
            ("pbx2/1101/hangup", json.dumps(event(1), ensure_ascii=False).encode()),
        ]
        offline = await collect(broker.port, "pbx/events/status", 1)
        assert offline[0].payload == b"offline"
        assert mirror.published == 1
        mirror.stop()
        await asyncio.wait_for(task, 5)
    finally:
        other.stop()
