"""The daemon end to end: real Asterisk -> `ami-bridge run` -> REST subscriptions -> receiver.

The receiver is a real aiohttp server on loopback; subscriptions are made over the
daemon's own REST API; the calls are placed by sipp through the lab's Asterisk.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from panoramisk import Manager

from tests.conftest import FIXTURES, REPO, free_port

pytestmark = pytest.mark.lab
sys.path.insert(0, str(REPO / "lab"))
TOKEN = "live-test-token-0123456789"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
    got: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        got.append({"method": request.method, "path": request.path, "query": dict(request.query),
                    "form": dict(parse_qsl(body.decode())), "key": request.headers.get("Idempotency-Key")})  # fmt: skip
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{name}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield got, f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(
        (FIXTURES / "lab.yaml").read_text()
        + f"""
api: {{listen: "127.0.0.1:{port}", tokens: [{{token: {TOKEN}}}]}}
store: {{path: "{tmp_path / "bridge.db"}"}}
delivery: {{backoff_initial: 0.2, backoff_max: 1}}
"""
    )
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)],
                                cwd=REPO, stderr=log)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                try:
                    async with s.get(f"{base}/limit/", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # AMI login
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            if os.environ.get("SHOW_DAEMON_LOG"):
                print((tmp_path / "daemon.log").read_text())


async def subscribe(base: str, ext: int, event_type: str, url: str, method: str) -> None:
    body = {"url": url, "event_type": event_type, "method": method}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{base}/extension/{ext}/event/", headers=headers, json=body) as r,
    ):
        assert r.status == 200, await r.text()


async def place(fn: Any) -> None:
    from driver import AMI, Lab  # type: ignore[import-not-found]

    ami = Manager(host=AMI[0], port=AMI[1], username="lab", secret="lab-secret", ping_delay=3600)
    ami.connect()
    lab = Lab(None, ami)
    try:
        await fn(lab)
    finally:
        await lab.close()
        ami.close()


async def wait_for(got: list[dict[str, Any]], n: int, timeout: float = 20) -> None:
    for _ in range(int(timeout * 10)):
        if len(got) >= n:
            await asyncio.sleep(0.5)  # and nothing more arrives
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {len(got)} of {n} requests arrived: {got}")


@pytest.mark.usefixtures("lab")
async def test_internal_call_reaches_get_and_post_subscribers(daemon: str, receiver: Any) -> None:
    """101 calls 102, answered: 101's GET subscriber and 102's POST subscriber get exactly their events."""
    got, url = receiver
    for ev in ("dial-out", "answer", "hangup"):
        await subscribe(daemon, 1101, ev, f"{url}/caller?myid=1101", "GET")
    for ev in ("dial-in", "answer", "hangup"):
        await subscribe(daemon, 1102, ev, f"{url}/callee", "POST")
    await subscribe(daemon, 1103, "dial-in", f"{url}/nobody", "GET")

    async def call(lab: Any) -> None:
        await lab.phone("102", ring_ms=500)
        await lab.call("101", "Anna", "102", hold_ms=1000)

    await place(call)
    await wait_for(got, 6)
    caller = [g for g in got if g["path"] == "/caller"]
    callee = [g for g in got if g["path"] == "/callee"]
    assert [g["query"]["EventType"] for g in caller] == ["dial-out", "answer", "hangup"]
    assert [g["form"]["EventType"] for g in callee] == ["dial-in", "answer", "hangup"]
    assert all(g["method"] == "GET" and g["query"]["myid"] == "1101" for g in caller)
    assert all(g["method"] == "POST" for g in callee)
    assert caller[-1]["query"]["CallStatus"] == "ANSWER" and int(caller[-1]["query"]["Duration"]) > 900_000
    assert callee[0]["form"]["CallerIDNum"] == "101" and callee[0]["form"]["CalledExtensionID"] == "1102"
    assert len({g["key"] for g in got}) == 6
    assert not [g for g in got if g["path"] == "/nobody"]
    assert len(got) == 6


@pytest.mark.usefixtures("lab")
async def test_busy_inbound_call_hangup_only(daemon: str, receiver: Any) -> None:
    """A subscriber of 102's hangups only gets one hangup BUSY for a busy DID call."""
    got, url = receiver
    await subscribe(daemon, 1102, "hangup", f"{url}/h", "POST")

    async def call(lab: Any) -> None:
        await lab.phone("102", "busy", ring_ms=300)
        await lab.inbound("+74950000002", "74951230005")

    await place(call)
    await wait_for(got, 1)
    assert len(got) == 1
    form = got[0]["form"]
    assert (form["EventType"], form["CallStatus"], form["CalledDID"]) == ("hangup", "BUSY", "74951230005")
