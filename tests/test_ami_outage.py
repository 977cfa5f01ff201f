"""AMI outages with a scripted AMI server (exact timings): a connection dropped mid-call
is resynchronised with CoreShowChannels, and a hung connection is detected by ping."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.ami.message import split_stream
from bridge.ami.source import AmiSource
from bridge.config import AmiConfig, parse_config
from bridge.daemon import Daemon
from bridge.demo import action_id
from bridge.store import Store
from tests.conftest import FIXTURES, free_port

FIXTURE = FIXTURES / "internal-answered-caller-hangup.ami"


class ScriptedAmi:
    """Logs anyone in; per connection: send ``scripts[n]`` blocks, then either drop the
    socket (``drop``) or answer actions (CoreShowChannels with ``live`` channels, Ping
    unless ``mute``)."""

    def __init__(self, scripts: list[list[bytes]], drop: list[bool], live: set[str] | None = None,
                 mute: bool = False) -> None:  # fmt: skip
        self.scripts, self.drop, self.live, self.mute = scripts, drop, live or set(), mute
        self.connections = 0
        self.actions: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = self.connections
        self.connections += 1
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        login = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"Response: Success\r\nActionID: " + action_id(login) +
                     b"\r\nMessage: Authentication accepted\r\n\r\n")  # fmt: skip
        for block in self.scripts[min(n, len(self.scripts) - 1)]:
            writer.write(block)
        await writer.drain()
        if self.drop[min(n, len(self.drop) - 1)]:
            await asyncio.sleep(0.2)
            writer.transport.abort()
            return
        try:
            while True:
                action = await reader.readuntil(b"\r\n\r\n")
                name = re.search(rb"Action: (\w+)", action)
                a = action_id(action)
                kind = name.group(1).decode() if name else ""
                self.actions.append(kind)
                if kind == "CoreShowChannels":
                    writer.write(b"Response: Success\r\nActionID: " + a + b"\r\nEventList: start\r\n"
                                 b"Message: Channels will follow\r\n\r\n")  # fmt: skip
                    for uid in sorted(self.live):
                        writer.write(b"Event: CoreShowChannel\r\nActionID: " + a + b"\r\nUniqueid: " +
                                     uid.encode() + b"\r\n\r\n")  # fmt: skip
                    writer.write(b"Event: CoreShowChannelsComplete\r\nActionID: " + a +
                                 b"\r\nEventList: Complete\r\nListItems: " + str(len(self.live)).encode() +
                                 b"\r\n\r\n")  # fmt: skip
                elif kind == "Ping" and not self.mute:
                    writer.write(b"Response: Success\r\nActionID: " + a + b"\r\nPing: Pong\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return


@contextlib.asynccontextmanager
async def running_bridge(tmp_path: Path, ami_port: int, ami_extra: str = "",
                         ) -> AsyncIterator[tuple[Daemon, asyncio.Task[None], list[dict[str, str]]]]:  # fmt: skip
    """The daemon in this process with phones 101 and 102, every event type of each
    subscribed to a loopback receiver: yields it, its task and the forms received; at the
    end it is stopped (and the receiver closed)."""
    got: list[dict[str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(dict(parse_qsl((await request.read()).decode())))
        return web.Response()

    app = web.Application()
    app.router.add_post("/h", hook)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    config = parse_config(f"""
ami: {{host: 127.0.0.1, port: {ami_port}, username: x, secret: x{ami_extra}}}
extensions:
  - {{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101"}}
  - {{id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "102"}}
api: {{listen: "127.0.0.1:{free_port()}"}}
management: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{tmp_path / "b.db"}"}}
delivery: {{allow_networks: ["127.0.0.0/8"]}}
""")
    store = Store(config.store.path)
    for ext in (1101, 1102):
        for kind in ("dial-in", "dial-out", "answer", "hangup"):
            store.add_subscription(ext, kind, f"http://127.0.0.1:{receiver.port}/h", "POST")
    store.close()
    daemon = Daemon(config)
    task = asyncio.ensure_future(daemon.run())
    try:
        yield daemon, task, got
    finally:
        daemon.stopping.set()
        await task
        await receiver.close()


async def until(got: list[dict[str, str]], n: int) -> None:
    """Until ``n`` requests came (5 s at most)."""
    for _ in range(100):
        if len(got) >= n:
            break
        await asyncio.sleep(0.05)


def components(got: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(extension id of the component, event type) of each request, sorted."""
    return sorted((e["CalledExtensionID"] if e["CallFlow"] == "in" else e["CallerExtensionID"], e["EventType"])
                  for e in got)  # fmt: skip


async def test_call_that_ended_during_an_outage_gets_its_hangups(tmp_path: Path) -> None:
    """AMI drops after the answer of 101 -> 102; after reconnecting, CoreShowChannels lists
    nothing: both components get exactly one hangup (ANSWER), and no dial-in is repeated."""
    blocks, _ = split_stream(FIXTURE.read_bytes())
    upto = next(i for i, b in enumerate(blocks) if b.startswith(b"Event: BridgeEnter")) + 2
    ami = ScriptedAmi([blocks[:upto], []], drop=[True, False])
    server = await asyncio.start_server(ami.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_bridge(tmp_path, port, ", reconnect_min: 0.2") as (_, _, got):
            await until(got, 6)
            await asyncio.sleep(0.3)
    finally:
        server.close()
    assert components(got) == [("1101", "answer"), ("1101", "dial-out"), ("1101", "hangup"),
                               ("1102", "answer"), ("1102", "dial-in"), ("1102", "hangup")]  # fmt: skip
    assert all(e["CallStatus"] == "ANSWER" for e in got if e["EventType"] == "hangup")
    assert ami.connections == 2 and "CoreShowChannels" in ami.actions


async def test_a_hung_connection_is_dropped_by_the_ping_watchdog() -> None:
    """When AMI stops answering pings the source drops the connection and logs in again."""
    ami = ScriptedAmi([[]], drop=[False], mute=True)
    server = await asyncio.start_server(ami.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    source = AmiSource(AmiConfig(host="127.0.0.1", port=port, username="x", secret="x", ping_interval=0.3,
                                 reconnect_min=0.1))  # fmt: skip
    source.start()
    kinds: list[str] = []
    try:
        async with asyncio.timeout(10):
            async for item in source:
                if item.kind != "message":
                    kinds.append(item.kind)
                if kinds.count("connected") == 2:
                    break
    finally:
        source.close()
        server.close()
    assert kinds == ["connected", "disconnected", "connected"]
    assert ami.actions.count("Ping") >= 1


def test_resync_ends_only_what_is_gone() -> None:
    """resync() hangs up components whose channels are not listed, keeps the listed ones."""
    from bridge.ami.message import parse
    from bridge.config import load_config
    from bridge.translate import Translator

    blocks, _ = split_stream((FIXTURES / "overlapping-calls.ami").read_bytes())
    t = Translator(load_config(FIXTURES / "lab.yaml"))
    cut = next(i for i, b in enumerate(blocks) if b.startswith(b"Event: DialEnd") and b"PJSIP/104" in b)
    for b in blocks[: cut + 1]:
        t.feed(parse(b))
    first_call = {uid for uid, c in t.channels.items() if c.name.startswith(("PJSIP/101", "PJSIP/102"))}
    emitted = t.resync(first_call, now_us=1)
    assert sorted((ext, e["EventType"]) for ext, e in emitted) == [(1103, "hangup"), (1104, "hangup")]
    assert set(t.channels) == first_call
    assert t.resync(first_call, now_us=2) == []


async def test_a_translator_failure_skips_a_message_not_the_bridge(tmp_path: Path, monkeypatch: Any) -> None:
    """Should the translator raise on a message (a bug), the daemon logs and counts it,
    skips that message and goes on: the call's other events still arrive."""
    from bridge.translate import Translator

    blocks, _ = split_stream(FIXTURE.read_bytes())
    ami = ScriptedAmi([blocks], drop=[False])
    server = await asyncio.start_server(ami.serve, "127.0.0.1", 0)
    feed = Translator.feed

    def broken(self: Translator, msg: Any, now_us: int | None = None) -> Any:
        if msg.event == "DialEnd":
            raise RuntimeError("a translator bug")
        return feed(self, msg, now_us)

    monkeypatch.setattr(Translator, "feed", broken)
    try:
        async with running_bridge(tmp_path, server.sockets[0].getsockname()[1]) as (daemon, task, got):
            await until(got, 4)
            await asyncio.sleep(0.3)
            assert not task.done()
    finally:
        server.close()
    # DialEnd (the answer) was skipped: dial-out, dial-in and both hangups still came
    assert components(got) == [
        ("1101", "dial-out"),
        ("1101", "hangup"),
        ("1102", "dial-in"),
        ("1102", "hangup"),
    ]
    assert daemon.stats.translate_errors == 1


async def test_what_arrived_before_a_stop_is_still_delivered(tmp_path: Path, monkeypatch: Any) -> None:
    """A stop while AMI messages wait in the pipeline's queue (here: a group-commit
    interval made 30 s long) translates and commits them anyway: the call's answer and
    hangups still reach the receiver within the shutdown's grace."""
    import bridge.daemon

    monkeypatch.setattr(bridge.daemon, "COMMIT_INTERVAL", 30.0)
    blocks, _ = split_stream(FIXTURE.read_bytes())
    half = next(i for i, b in enumerate(blocks) if b.startswith(b"Event: DialBegin")) + 1

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        login = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"Response: Success\r\nActionID: " + action_id(login) + b"\r\n\r\n")
        writer.write(b"".join(blocks[:half]))
        await asyncio.sleep(0.5)  # the first part committed, the pipeline now waits
        writer.write(b"".join(blocks[half:]))
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.read()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        async with running_bridge(tmp_path, server.sockets[0].getsockname()[1]) as (_, _, got):
            await until(got, 2)
            await asyncio.sleep(1.0)  # the rest has arrived and waits in the queue
            assert sorted(e["EventType"] for e in got) == ["dial-in", "dial-out"]
    finally:
        server.close()
    kinds = sorted(e["EventType"] for e in got)
    assert kinds == ["answer", "answer", "dial-in", "dial-out", "hangup", "hangup"]
