"""``ami-bridge demo``: the whole bridge on an embedded default, no PBX needed.

A built-in AMI server replays real recordings of the lab's Asterisk over TCP (so the
real AMI client path runs), with every Timestamp set to the moment it is sent and fresh
Uniqueids on each pass; the daemon runs against it with a temporary SQLite store; every
extension is subscribed (POST) to a local receiver that prints each webhook it gets.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import tempfile
import time
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qsl

from aiohttp import web

from bridge.ami.message import split_stream
from bridge.config import Config, parse_config

_TS = re.compile(rb"^Timestamp: ([0-9.]+)\r$", re.M)
_NO_TS = re.compile(rb"^Timestamp: [0-9.]+\r\n", re.M)
_ID = re.compile(rb"((?:Dest)?(?:Uniqueid|Linkedid)): ")
DEMO_EXTENSIONS = """
  - {id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101", mailbox: "101@default"}
  - {id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "102", mailbox: "102@default"}
  - {id: 1103, name: "000*103@pbx.example", type: phone, endpoint: "103", mailbox: "103@default"}
  - {id: 1104, name: "000*104@pbx.example", type: phone, endpoint: "104", mailbox: "104@default"}
  - {id: 1105, name: "000*105@pbx.example", type: phone, endpoint: "105", mailbox: "105@default"}
  - {id: 1300, name: "000*300@pbx.example", type: queue, queue: support}
  - {id: 1400, name: "000*400@pbx.example", type: ivr, context: ivr-main}
"""


def demo_streams() -> list[tuple[str, bytes]]:
    """The recordings shipped with the package, by name."""
    root = resources.files("bridge") / "demo_data"
    return sorted(
        (p.name.removesuffix(".ami"), p.read_bytes()) for p in root.iterdir() if p.name.endswith(".ami")
    )


def action_id(action: bytes) -> bytes:
    """The ActionID of a raw AMI action (empty when it has none)."""
    m = re.search(rb"ActionID: (.*)\r\n", action)
    return m.group(1) if m else b""


def _stamp(now_us: int) -> bytes:
    return b"Timestamp: " + _seconds(now_us) + b"\r"


def _seconds(now_us: int) -> bytes:
    digits = str(now_us).encode()
    return digits[:-6] + b"." + digits[-6:]


#: placeholders of a template: where the copy's id prefix and the send time go
_PREFIX, _NOW = b"\x01", b"\x02"


def _template(blocks: list[bytes]) -> tuple[bytes, int] | None:
    """A recording as one buffer with placeholders, and its number of messages (None if
    the recording happens to contain a placeholder byte)."""
    data = b"".join(blocks)
    if _PREFIX in data or _NOW in data:
        return None
    rendered = [_TS.sub(b"Timestamp: " + _NOW + b"\r", _ID.sub(b"\\g<0>" + _PREFIX, b)) for b in blocks]
    return b"".join(rendered), len(blocks)


class ReplayServer:
    """An AMI server that logs anyone in and replays recorded streams to them.

    ``speed`` divides the recorded gaps between events (capped at ``max_gap`` seconds);
    ``passes`` is how often the whole set is played (None: for ever); ``rate`` (calls per
    second), when given, replaces the recorded timing: each recording is sent at once, as
    one write of a copy rendered from a template made once (so the server stays cheap at
    tens of thousands of messages per second). Clear ``go`` before a client logs in to
    hold the replay until it is set again. ``fresh_ids=False`` keeps the recorded
    Uniqueids and Linkedids (one pass to one client: the ids stay as recorded, so ids that
    mean something, such as a callback's ``cb-...`` ChannelId, still do).
    ``timestamps=False`` sends every event without its ``Timestamp`` header, as Asterisk
    does unless ``timestampevents = yes``. ``shared=True`` plays one stream to every
    connection, as one Asterisk does to several AMI clients (a cluster's bridges, issue
    19): it starts when the first client logs in, and a client that logs in later (or
    again) gets it from there on.
    """

    def __init__(self, streams: Iterable[tuple[str, bytes]], speed: float = 1.0, max_gap: float = 1.0,
                 passes: int | None = 1, rate: float | None = None,
                 fresh_ids: bool = True, timestamps: bool = True, shared: bool = False) -> None:  # fmt: skip
        self.streams = [(name, split_stream(data)[0]) for name, data in streams]
        self.templates = [_template(blocks) for _, blocks in self.streams]
        self.speed, self.max_gap, self.passes, self.rate = speed, max_gap, passes, rate
        self.fresh_ids = fresh_ids
        self.timestamps = timestamps
        self.sent = 0
        #: recordings played so far, over all connections
        self.played = 0
        self.logged_in = asyncio.Event()
        self.go = asyncio.Event()
        self.go.set()
        self.finished = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.shared = shared
        #: clients logged in so far
        self.logins = 0
        #: shared: the connections the stream goes to, and the task playing it
        self._fanout = _Fanout()
        self._player: asyncio.Task[None] | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.server = await asyncio.start_server(self._serve, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self._player is not None:
            self._player.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            login = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        writer.write(
            b"Response: Success\r\nActionID: "
            + action_id(login)
            + b"\r\nMessage: Authentication accepted\r\n\r\n"
        )
        writer.write(b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
        self.logins += 1
        self.logged_in.set()
        pinger = asyncio.ensure_future(self._answer_pings(reader, writer))
        try:
            await self.go.wait()
            if self.shared:
                self._fanout.writers.add(writer)
                if self._player is None:
                    self._player = asyncio.ensure_future(self._play_shared())
                await pinger  # until the client goes
                return
            await self._play(writer)
            self.finished.set()
            await pinger
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._fanout.writers.discard(writer)
            pinger.cancel()
            writer.close()

    async def _play_shared(self) -> None:
        await self._play(self._fanout)  # type: ignore[arg-type]  # (what _play calls of a writer)
        self.finished.set()

    async def _answer_pings(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                action = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(b"Response: Success\r\nActionID: " + action_id(action) + b"\r\nPing: Pong\r\n\r\n")
            if b"Action: UserEvent\r\n" in action:  # as Asterisk does: the event comes back
                name = re.search(rb"UserEvent: (.*)\r\n", action)
                stamp = _stamp(time.time_ns() // 1000) + b"\n" if self.timestamps else b""
                writer.write(b"Event: UserEvent\r\nPrivilege: user,all\r\n" + stamp
                             + b"UserEvent: " + (name.group(1) if name else b"") + b"\r\n\r\n")  # fmt: skip

    async def _play(self, writer: asyncio.StreamWriter) -> None:
        n = 0
        started = time.monotonic()
        while self.passes is None or n < self.passes * len(self.streams):
            _, blocks = self.streams[n % len(self.streams)]
            template = self.templates[n % len(self.streams)]
            # ids unique across connections too: a reconnecting client never sees a call twice
            prefix = f"d{self.played}-".encode()
            self.played += 1
            if self.rate is not None:
                delay = started + n / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if template is not None:
                    data, count = template
                    ids = prefix if self.fresh_ids else b""
                    if not self.timestamps:
                        data = data.replace(b"Timestamp: " + _NOW + b"\r\n", b"")
                    writer.write(data.replace(_PREFIX, ids).replace(_NOW, _seconds(time.time_ns() // 1000)))
                    self.sent += count
                    await writer.drain()
                    n += 1
                    continue
            last: float | None = None
            for block in blocks:
                m = _TS.search(block)
                if m and self.rate is None:
                    ts = float(m.group(1))
                    if last is not None and ts > last:
                        await asyncio.sleep(min(self.max_gap, (ts - last) / self.speed))
                    last = ts
                if self.fresh_ids:
                    block = _ID.sub(b"\\g<0>" + prefix, block)
                if self.timestamps:
                    writer.write(_TS.sub(_stamp(time.time_ns() // 1000), block))
                else:
                    writer.write(_NO_TS.sub(b"", block))
                self.sent += 1
            await writer.drain()
            n += 1


class _Fanout:
    """A writer that writes to every connection of a shared replay (one dropped on error)."""

    def __init__(self) -> None:
        self.writers: set[asyncio.StreamWriter] = set()

    def write(self, data: bytes) -> None:
        for writer in list(self.writers):
            if writer.is_closing():
                self.writers.discard(writer)
            else:
                writer.write(data)

    async def drain(self) -> None:
        for writer in list(self.writers):
            try:
                await writer.drain()
            except ConnectionError:
                self.writers.discard(writer)


def management_port(api_port: int) -> int:
    """The console's port: the API's + 1 when free, else any free one."""
    for port in (api_port + 1, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError(f"no free port for the console near {api_port}")


def demo_config(
    ami_port: int, api_port: int, store: Path, token: str, mgmt_port: int | None = None
) -> Config:
    return parse_config(f"""
ami: {{host: 127.0.0.1, port: {ami_port}, username: demo, secret: demo}}
extensions: {DEMO_EXTENSIONS}
trunks: [trunk]
api: {{listen: "127.0.0.1:{api_port}", tokens: [{{token: {token}}}]}}
management: {{listen: "127.0.0.1:{mgmt_port or api_port + 1}"}}
store: {{path: "{store}"}}
delivery: {{backoff_initial: 0.5, backoff_max: 5, allow_networks: ["127.0.0.0/8"]}}
""", "demo")  # fmt: skip


async def run_demo(api_port: int = 8080, duration: float | None = None, speed: float = 2.0) -> int:
    """Start the replay server, a receiver, the daemon; subscribe everything; print webhooks."""
    from bridge.daemon import Daemon

    received = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal received
        received += 1
        f = dict(parse_qsl((await request.read()).decode()))
        print(f"webhook {request.path.rsplit('/', 1)[-1]:>5} {f.get('EventType', '?'):12} "
              f"{f.get('CallFlow', ''):3} {f.get('CallStatus', ''):11} "
              f"{f.get('CallerIDNum', '')} -> {f.get('CalledNumber', '')}"
              f"{'  Bridged=' + f['Bridged'] if 'Bridged' in f else ''}", flush=True)  # fmt: skip
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/hook/{ext}", hook)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rport = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    replay = ReplayServer(demo_streams(), speed=speed, passes=None if duration is None else 1)
    ami_port = await replay.start()
    tmp = Path(tempfile.mkdtemp(prefix="ami-bridge-demo-"))
    token = secrets.token_urlsafe(18)
    mport = management_port(api_port)
    config = demo_config(ami_port, api_port, tmp / "bridge.db", token, mport)

    from bridge.store import Store

    store = Store(config.store.path)
    for ext in config.extensions:
        for kind in ("dial-in", "dial-out", "answer", "hangup", "voicemail", "message-in", "message-out"):
            store.add_subscription(ext.id, kind, f"http://127.0.0.1:{rport}/hook/{ext.id}", "POST")
    store.close()
    print(f"""ami-bridge demo: replaying real Asterisk recordings over AMI (127.0.0.1:{ami_port})
  API        http://127.0.0.1:{api_port}/  (Authorization: Bearer {token})
  API docs   http://127.0.0.1:{api_port}/docs
  console    http://127.0.0.1:{mport}/dashboard  (on the API's port too, after a login)
  metrics    http://127.0.0.1:{mport}/metrics
  store      {config.store.path}
Every extension is subscribed to a local receiver; it prints each webhook below. Ctrl-C stops.
""", flush=True)  # fmt: skip
    daemon = Daemon(config)
    task = asyncio.ensure_future(daemon.run())
    try:
        if duration is not None:
            await asyncio.wait({task}, timeout=duration)
            daemon.stopping.set()
        await task
    finally:
        await replay.close()
        await runner.cleanup()
    print(f"demo: {received} webhooks received", flush=True)
    return 0
