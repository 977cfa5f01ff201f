"""The live dashboard: EventHub's views and subscribers, its HTTP routes and SSE stream, and the page in headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge import hub as hub_module
from bridge.hub import CLOSED, EventHub

STATIC = Path(hub_module.__file__).resolve().parent / "static"
SCREENSHOT = Path("/tmp/dashboard.png")
T0 = 1_795_730_681_729_162  # EventTime of the first event, µs since the epoch


def ev(
    kind: str,
    call: str = "c1",
    sub: str = "c1-1",
    caller: str = "000*101",
    called: str = "000*102",
    status: str = "CALLING",
    t: int = T0,
    flow: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One Telphin-style event (CallFlow by the kind of event unless given)."""
    flow = flow or ("out" if kind == "dial-out" else "in")
    return {
        "EventType": kind,
        "CallID": call,
        "SubCallID": sub,
        "CallFlow": flow,
        "CallStatus": status,
        "CallerIDNum": caller,
        "CalledNumber": called,
        "EventTime": t,
        **extra,
    }


def two_party_call(
    call: str = "c1", caller: str = "000*101", t: int = T0
) -> list[tuple[int, dict[str, Any]]]:
    """101 (ext 1101) calls 102 (ext 1102), 102 answers, both hang up: as the translator sends it."""
    a, b = f"{call}-1", f"{call}-2"
    return [
        (1101, ev("dial-out", call, a, caller, t=t)),
        (1102, ev("dial-in", call, b, caller, t=t)),
        (1102, ev("answer", call, b, caller, status="ANSWER", t=t + 1_000_000)),
        (1101, ev("answer", call, a, caller, status="ANSWER", t=t + 1_000_000, flow="out")),
        (
            1101,
            ev("hangup", call, a, caller, status="ANSWER", t=t + 9_000_000, flow="out", Duration=9_000_000),
        ),
        (1102, ev("hangup", call, b, caller, status="ANSWER", t=t + 9_000_000, Duration=9_000_000)),
    ]


# -- EventHub ---------------------------------------------------------------------------


def test_two_component_call_opens_and_closes() -> None:
    """A call is active from its first event until both components have hung up, answered once either answers."""
    hub = EventHub()
    events = two_party_call()
    seen: list[list[dict[str, Any]]] = []
    for ext, event in events:
        hub.publish(ext, event)
        seen.append(hub.active_calls())
    assert seen[0] == [
        {
            "CallID": "c1",
            "EventTime": T0,
            "CallerIDNum": "000*101",
            "CalledNumber": "000*102",
            "extensions": [1101],
            "answered": False,
        }
    ]
    assert seen[1][0]["extensions"] == [1101, 1102] and seen[1][0]["answered"] is False
    assert seen[2][0]["answered"] is True
    assert seen[3][0]["EventTime"] == T0  # "since" stays the first event's time
    assert seen[4] == [
        {
            "CallID": "c1",
            "EventTime": T0,
            "CallerIDNum": "000*101",
            "CalledNumber": "000*102",
            "extensions": [1101, 1102],
            "answered": True,
        }
    ]  # 102 is still on the line
    assert seen[5] == []
    assert hub.active_call("c1") is None
    assert [r["event"]["EventType"] for r in hub.recent()] == [e["EventType"] for _, e in events]
    assert hub.recent()[0] == {"extension_id": 1101, "event": events[0][1]}


def test_unanswered_and_concurrent_calls() -> None:
    """Two calls at once are tracked apart, oldest first; an unanswered one stays answered=False."""
    hub = EventHub()
    hub.publish(1101, ev("dial-out", "a", "a-1", t=T0))
    hub.publish(1103, ev("dial-out", "b", "b-1", caller="000*103", called="000*104", t=T0 + 5))
    hub.publish(1104, ev("dial-in", "b", "b-2", caller="000*103", called="000*104", t=T0 + 5))
    assert [c["CallID"] for c in hub.active_calls()] == ["a", "b"]
    hub.publish(1101, ev("hangup", "a", "a-1", status="NOANSWER"))
    assert hub.active_calls() == [
        {
            "CallID": "b",
            "EventTime": T0 + 5,
            "CallerIDNum": "000*103",
            "CalledNumber": "000*104",
            "extensions": [1103, 1104],
            "answered": False,
        }
    ]


def test_voicemail_messages_and_stray_hangups_never_open_a_call() -> None:
    """voicemail, message-in/out and a hangup of an unknown call are kept as events but open no call."""
    hub = EventHub()
    hub.publish(1102, ev("voicemail", "vm1", "vm1-1", status="ANSWER"))
    hub.publish(1102, ev("message-in", "m1", "m1-1"))
    hub.publish(1101, ev("message-out", "m2", "m2-1"))
    hub.publish(1101, ev("hangup", "gone", "gone-1", status="ANSWER"))
    hub.publish(1101, {"EventType": "dial-out"})  # no CallID: an event, not a call
    assert hub.active_calls() == []
    assert len(hub.recent()) == 5


def test_history_is_bounded() -> None:
    """Only the last `history` events are kept, oldest first."""
    hub = EventHub(history=3)
    for i in range(10):
        hub.publish(100 + i, ev("dial-out", f"c{i}", f"c{i}-1"))
    assert [r["extension_id"] for r in hub.recent()] == [107, 108, 109]
    assert EventHub(history=0).recent() == []


def test_active_calls_are_capped_oldest_dropped() -> None:
    """Calls whose hangup never comes cannot grow the view past MAX_ACTIVE_CALLS: the oldest go."""
    hub = EventHub()
    hub.MAX_ACTIVE_CALLS = 5
    for i in range(12):
        hub.publish(1101, ev("dial-out", f"c{i}", f"c{i}-1"))
    assert [c["CallID"] for c in hub.active_calls()] == [f"c{i}" for i in range(7, 12)]
    assert EventHub.MAX_ACTIVE_CALLS == 100_000


def test_publish_never_raises() -> None:
    """Odd events (unhashable CallID or SubCallID, no keys at all) are recorded without an exception."""
    hub = EventHub()
    hub.publish(1, {"EventType": "dial-in", "CallID": ["not", "hashable"]})
    hub.publish(2, {})
    hub.publish(3, {"EventType": "dial-in", "CallID": "x", "SubCallID": {"odd": 1}})  # follows the CallID
    hub.publish(3, {"EventType": "hangup", "CallID": "x"})
    assert len(hub.recent()) == 4 and hub.active_calls() == []


async def test_subscribers_get_events_in_order() -> None:
    """Each subscriber gets every event published after it subscribed, as {"extension_id", "event"}."""
    hub = EventHub()
    hub.publish(1, ev("dial-out", caller="early"))
    q1, q2 = hub.subscribe(), hub.subscribe()
    for ext, event in two_party_call():
        hub.publish(ext, event)
    for q in (q1, q2):
        got = [q.get_nowait() for _ in range(q.qsize())]
        assert [g["extension_id"] for g in got] == [1101, 1102, 1102, 1101, 1101, 1102]
        assert got[0]["event"]["EventType"] == "dial-out" and got[0]["event"]["CallerIDNum"] == "000*101"
    hub.unsubscribe(q1)
    hub.unsubscribe(q1)  # twice is harmless
    hub.publish(1, ev("dial-out"))
    assert q1.empty() and q2.qsize() == 1


async def test_full_subscriber_is_dropped_without_blocking_publish() -> None:
    """A subscriber that stops reading is dropped once its queue is full; publish goes on at once for the others."""
    hub = EventHub(queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    started = time.monotonic()
    for i in range(1000):
        hub.publish(1, ev("dial-out", f"c{i}", f"c{i}-1"))
        while not fast.empty():
            fast.get_nowait()
    assert time.monotonic() - started < 2
    assert hub.subscriber_count == 1 and hub.dropped_subscribers == 1
    assert slow.get_nowait() is CLOSED and slow.empty()  # woken, told to stop, nothing more
    hub.publish(1, ev("dial-out"))
    assert slow.empty() and fast.qsize() == 1


# -- HTTP routes ------------------------------------------------------------------------


def make_dashboard_app(hub: EventHub) -> web.Application:
    """An aiohttp app with the console as the management listener serves it (no login),
    over an empty store."""
    from bridge.console.web import Console, add_console
    from bridge.store import Store

    store = Store(Path(tempfile.mkdtemp(prefix="console-")) / "bridge.db")
    app = web.Application()
    add_console(app, Console(hub, store), login=False, hosts=None)

    async def close(_app: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close)
    return app


@pytest.fixture
async def served() -> AsyncIterator[tuple[EventHub, TestClient[Any, Any]]]:
    """A hub and a test client of its dashboard routes."""
    hub = EventHub()
    async with TestClient(TestServer(make_dashboard_app(hub))) as client:
        yield hub, client


async def read_message(content: aiohttp.StreamReader, timeout: float = 5) -> list[str]:
    """The lines of the next server-sent event message (up to the blank line)."""
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            raw = await content.readline()
            assert raw, f"stream ended after {lines!r}"
            line = raw.decode().rstrip("\n")
            if line == "":
                if lines:
                    return lines
                continue
            lines.append(line)


def message_data(lines: list[str]) -> Any:
    """The JSON in a message's data field."""
    return json.loads("\n".join(line[len("data: ") :] for line in lines if line.startswith("data: ")))


async def test_page_and_assets_are_served(served: tuple[EventHub, TestClient[Any, Any]]) -> None:
    """/dashboard, /dashboard/app.js and /dashboard/app.css are the packaged files with their types."""
    _, client = served
    for path, name, ctype in [
        ("/dashboard", "dashboard.html", "text/html"),
        ("/dashboard/app.js", "dashboard.js", "text/javascript"),
        ("/dashboard/app.css", "dashboard.css", "text/css"),
    ]:
        resp = await client.get(path)
        assert resp.status == 200 and resp.content_type == ctype, path
        assert await resp.read() == (STATIC / name).read_bytes()
    html = await (await client.get("/dashboard")).text()
    for needle in ('id="conn"', 'id="active"', 'id="events"', '"/dashboard/app.js"', '"/dashboard/app.css"'):
        assert needle in html


async def test_state_is_active_calls_and_recent(served: tuple[EventHub, TestClient[Any, Any]]) -> None:
    """/dashboard/state is JSON {"active_calls", "recent"} from the hub, uncached."""
    hub, client = served
    assert await (await client.get("/dashboard/state")).json() == {"active_calls": [], "recent": []}
    for ext, event in two_party_call()[:3]:
        hub.publish(ext, event)
    resp = await client.get("/dashboard/state")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-cache"
    body = await resp.json()
    assert body == {"active_calls": hub.active_calls(), "recent": hub.recent()}
    assert body["active_calls"][0]["answered"] is True and len(body["recent"]) == 3


async def test_stream_sends_state_then_live_events(served: tuple[EventHub, TestClient[Any, Any]]) -> None:
    """/dashboard/stream sends `event: state` first, then `event: call` with each published event and its call."""
    hub, client = served
    hub.publish(1101, ev("dial-out", "old", "old-1", caller="before"))
    resp = await client.get("/dashboard/stream")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-cache"
    first = await read_message(resp.content)
    assert first[0] == "event: state"
    assert message_data(first) == {"active_calls": hub.active_calls(), "recent": hub.recent()}

    hub.publish(1102, ev("dial-in", "old", "old-2", caller="before"))
    msg = await read_message(resp.content)
    assert msg[0] == "event: call"
    assert message_data(msg) == {
        "extension_id": 1102,
        "event": ev("dial-in", "old", "old-2", caller="before"),
        "active_call": {
            "CallID": "old",
            "EventTime": T0,
            "CallerIDNum": "before",
            "CalledNumber": "000*102",
            "extensions": [1101, 1102],
            "answered": False,
        },
    }
    hub.publish(1101, ev("hangup", "old", "old-1", caller="before"))
    hub.publish(1102, ev("hangup", "old", "old-2", caller="before"))
    hub.publish(1102, ev("voicemail", "vm", "vm-1", caller="X\ny"))  # a newline stays inside one data line
    types = []
    for _ in range(3):
        data = message_data(await read_message(resp.content))
        types.append(data["event"]["EventType"])
        assert data["active_call"] is None  # the call is over by the time these are sent
    assert types == ["hangup", "hangup", "voicemail"]
    resp.close()


async def test_stream_keepalive(
    served: tuple[EventHub, TestClient[Any, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle stream sends a `: keepalive` comment every KEEPALIVE_SECONDS."""
    monkeypatch.setattr(hub_module, "KEEPALIVE_SECONDS", 0.1)
    monkeypatch.setattr(hub_module, "DISCONNECT_POLL_SECONDS", 0.05)
    _, client = served
    resp = await client.get("/dashboard/stream")
    await read_message(resp.content)
    assert await read_message(resp.content) == [": keepalive"]
    resp.close()


async def wait_until(check: Callable[[], bool], timeout: float = 5) -> None:
    """Poll `check` until it holds, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_stream_ends_when_the_client_goes(served: tuple[EventHub, TestClient[Any, Any]]) -> None:
    """A client that disconnects is unsubscribed within about a second, even with no event to write."""
    hub, client = served
    resp = await client.get("/dashboard/stream")
    await read_message(resp.content)
    assert hub.subscriber_count == 1
    resp.close()
    await wait_until(lambda: hub.subscriber_count == 0, timeout=5)


async def test_shutdown_ends_open_streams_at_once() -> None:
    """Stopping the app ends every open stream (on_shutdown wakes them), so shutdown does not wait for browsers."""
    hub = EventHub()
    server = TestServer(make_dashboard_app(hub))
    async with TestClient(server) as client:
        streams = [await client.get("/dashboard/stream") for _ in range(3)]
        for resp in streams:
            await read_message(resp.content)
        assert hub.subscriber_count == 3
        started = time.monotonic()
        await server.close()
        assert time.monotonic() - started < 5
        assert hub.subscriber_count == 0
        for resp in streams:
            async with asyncio.timeout(5):
                assert await resp.content.read() == b""  # the stream ended, nothing after the state


async def test_dashboard_needs_a_login_on_the_api_app(tmp_path: Path) -> None:
    """Mounted on the real API app, the console asks for a login: the page is the login form,
    the state is 401 (the API still wants its token)."""
    from bridge.api import make_app
    from bridge.config import parse_config
    from bridge.console.web import Console, add_console
    from bridge.store import Store

    config = parse_config(
        "ami: {username: bridge, secret: s}\napi:\n  tokens:\n    - {token: t0123456789abcdef}\n"
    )
    store = Store(tmp_path / "bridge.db")
    try:
        app = make_app(config, store)
        add_console(app, Console(EventHub(), store), login=True, hosts=None)
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/dashboard/state")).status == 401
            page = await client.get("/dashboard")
            assert page.status == 200 and 'id="login-form"' in await page.text()
            assert (await client.get("/limit/")).status == 401
    finally:
        store.close()


def test_page_loads_nothing_from_the_network() -> None:
    """No http:// or https:// URL (no CDN, no web font) in the page's HTML, JS or CSS."""
    files = sorted(STATIC.glob("dashboard.*")) + sorted(STATIC.glob("login.*"))
    assert [f.suffix for f in files] == [".css", ".html", ".js", ".html", ".js"]
    for f in files:
        text = f.read_text()
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", text, re.I), f.name


# -- headless Chromium ------------------------------------------------------------------


def find_or_install_chromium() -> str:
    """Debian's chromium, installed with apt-get (as root) when missing; skip only if it cannot be had."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "chromium is not installed and cannot be: not root or no apt-get (apt-get install chromium)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.skip(f"chromium cannot be installed: {' '.join(cmd)} failed: {done.stderr[-500:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium cannot be installed: apt-get succeeded but no chromium binary")
    return found


class Browser:
    """Headless Chromium driven over the DevTools protocol (a websocket on a loopback port it picks)."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
    ) -> None:
        self.proc, self.session, self.ws = proc, session, ws
        self._id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events in between are ignored)."""
        self._id += 1
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        async with asyncio.timeout(20):
            while True:
                msg = await self.ws.receive_json()
                if msg.get("id") == self._id:
                    assert "error" not in msg, f"{method}: {msg['error']}"
                    result: dict[str, Any] = msg["result"]
                    return result

    async def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in r, r["exceptionDetails"]
        return r["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10) -> Any:
        """Poll a JavaScript expression until it is truthy (a throw counts as not yet); fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
            value = None if "exceptionDetails" in r else r["result"].get("value")
            if value:
                return value
            if time.monotonic() > deadline:
                dom = await self.eval("document.body ? document.body.innerText : ''")
                raise AssertionError(f"page never had {expression!r} (last: {r['result']}); it shows:\n{dom}")
            await asyncio.sleep(0.1)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """A fresh headless Chromium with one blank page, killed (its whole process group) afterwards."""
    exe = find_or_install_chromium()
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
    log = (tmp_path / "chromium.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-dev-shm-usage", "--window-size=1200,800",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", "about:blank",
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    session = aiohttp.ClientSession()
    try:
        active_port = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (active_port.exists() and active_port.read_text().count("\n") >= 1):
            assert proc.returncode is None, (
                f"chromium exited: {(tmp_path / 'chromium.log').read_text()[-2000:]}"
            )
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = int(active_port.read_text().split()[0])
        async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
            pages = [t for t in await r.json() if t["type"] == "page"]
        ws = await session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        b = Browser(proc, session, ws)
        await b.call("Runtime.enable")
        await b.call("Page.enable")
        yield b
        await ws.close()
    finally:
        await session.close()
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        log.close()


@pytest.fixture
async def live_server() -> AsyncIterator[tuple[EventHub, web.AppRunner, str]]:
    """A real aiohttp server of the dashboard on 127.0.0.1, a random port: hub, runner and base URL."""
    hub = EventHub()
    runner = web.AppRunner(make_dashboard_app(hub))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield hub, runner, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def now_us() -> int:
    """EventTime for now."""
    return time.time_ns() // 1000


EVENT_CALLERS = "[...document.querySelectorAll('#events .event .parties')].map(e => e.textContent)"
ACTIVE_ROWS = (
    "[...document.querySelectorAll('#active tr')].map(tr => [...tr.cells].map(td => td.textContent))"
)


async def test_page_in_headless_chromium(
    live_server: tuple[EventHub, web.AppRunner, str], browser: Browser
) -> None:
    """In real Chromium the page shows what happened before it loaded, then events and calls live over SSE."""
    hub, runner, base = live_server
    t = now_us()
    hub.publish(1101, ev("dial-out", "pre-call", "pre-1", caller="pre-caller", called="555", t=t))
    hub.publish(1102, ev("dial-in", "pre-call", "pre-2", caller="pre-caller", called="555", t=t))
    hub.publish(1105, ev("voicemail", "pre-vm", "pre-vm-1", caller="pre-vm-caller", status="ANSWER", t=t))

    await browser.call("Page.navigate", url=f"{base}/dashboard")
    await browser.wait_for("location.pathname === '/dashboard' && document.readyState === 'complete'")
    await browser.wait_for("document.getElementById('conn').dataset.state === 'connected'")
    await browser.wait_for("document.querySelectorAll('#events .event').length === 3")
    # before load: from the state, newest first; one active call, the voicemail opened none
    assert await browser.eval(EVENT_CALLERS) == [
        "pre-vm-caller -> 000*102",
        "pre-caller -> 555",
        "pre-caller -> 555",
    ]
    assert await browser.eval("[...document.querySelectorAll('.event')].map(e => e.dataset.eventType)") == [
        "voicemail",
        "dial-in",
        "dial-out",
    ]
    # the call's direction as Telphin writes it, lower case
    assert await browser.eval("[...document.querySelectorAll('.event .flow')].map(e => e.textContent)") == [
        "in",
        "in",
        "out",
    ]
    rows = await browser.eval(ACTIVE_ROWS)
    assert len(rows) == 1
    call_id, since, caller, called, exts, answered = rows[0]
    assert (call_id, caller, called, exts, answered) == ("pre-call", "pre-caller", "555", "1101, 1102", "no")
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", since), since  # local time of day
    assert await browser.eval("document.getElementById('conn').textContent") == "connected"

    # live, after load: a whole second call, one event every 200 ms from a timer
    subscribed = hub.subscriber_count
    assert subscribed >= 1  # the page's EventSource

    async def publish_live() -> None:
        for i, (ext, event) in enumerate(two_party_call("live-call", caller="live-caller", t=now_us())):
            await asyncio.sleep(0.2)
            hub.publish(ext, {**event, "CallerIDNum": f"live-{i}"})

    pump = asyncio.create_task(publish_live())
    # while it runs the live call appears in the table, gets answered ...
    await browser.wait_for(
        "[...document.querySelectorAll('#active tr')].some(tr => tr.dataset.callId === 'live-call')"
    )
    await browser.wait_for(
        "[...document.querySelectorAll('#active tr')].some(tr => tr.dataset.callId === 'live-call'"
        " && tr.cells[5].textContent === 'yes')"
    )
    await pump
    # ... and is gone after both hangups; every live event is listed, newest first, above the old ones
    await browser.wait_for("document.querySelectorAll('#events .event').length === 9")
    callers = await browser.eval(EVENT_CALLERS)
    assert callers[:6] == [f"live-{i} -> 000*102" for i in reversed(range(6))]
    assert callers[6:] == ["pre-vm-caller -> 000*102", "pre-caller -> 555", "pre-caller -> 555"]
    await browser.wait_for("document.querySelectorAll('#active tr').length === 1")
    assert [r[0] for r in await browser.eval(ACTIVE_ROWS)] == ["pre-call"]
    types = await browser.eval(
        "[...document.querySelectorAll('.event')].slice(0, 6).map(e => e.dataset.eventType)"
    )
    assert types == ["hangup", "hangup", "answer", "answer", "dial-in", "dial-out"]

    # the picture for people: a few calls and events
    await take_screenshot(hub, browser)

    # a burst of 150 events: the list keeps the newest 100
    for i in range(150):
        hub.publish(1101, ev("dial-out", f"burst{i}", f"burst{i}-1", caller=f"burst-{i}", t=now_us()))
    await browser.wait_for(
        "document.querySelector('#events .event .parties').textContent === 'burst-149 -> 000*102'"
    )
    assert await browser.eval("document.querySelectorAll('#events .event').length") == 100
    for i in range(150):
        hub.publish(1101, ev("hangup", f"burst{i}", f"burst{i}-1", caller=f"burst-{i}", t=now_us()))
    await browser.wait_for("document.querySelectorAll('#active tr').length === 3")
    assert [r[0] for r in await browser.eval(ACTIVE_ROWS)] == [
        "pre-call",
        "lab-1795730681.54",
        "lab-1795730699.61",
    ]

    # the server stopping ends the stream at once and the page says it is reconnecting
    started = time.monotonic()
    await runner.cleanup()
    assert time.monotonic() - started < 5, "shutdown waited for the browser's stream"
    await browser.wait_for("document.getElementById('conn').dataset.state === 'reconnecting'")


async def take_screenshot(hub: EventHub, browser: Browser) -> None:
    """A 1200x800 PNG of the page with a few calls and events, at /tmp/dashboard.png."""
    base = now_us()
    for i, (ext, event) in enumerate(two_party_call("lab-1795730681.54", caller="000*101", t=base)[:4]):
        hub.publish(ext, {**event, "EventTime": base + i * 400_000})
    hub.publish(
        1103,
        ev(
            "dial-in",
            "lab-1795730699.61",
            "lab-1795730699.61-1",
            caller="+74951234567",
            called="000*103",
            t=base + 2_000_000,
        ),
    )
    hub.publish(
        1104,
        ev(
            "voicemail",
            "lab-1795730650.40",
            "lab-1795730650.40-1",
            caller="+79161112233",
            called="000*104",
            status="ANSWER",
            t=base + 2_500_000,
        ),
    )
    await browser.wait_for("document.querySelectorAll('#active tr').length === 3")
    await browser.call(
        "Emulation.setDeviceMetricsOverride", width=1200, height=800, deviceScaleFactor=1, mobile=False
    )
    shot = await browser.call("Page.captureScreenshot", format="png")
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
