"""Helpers of the live tier: a loopback receiver, the daemon as a subprocess, sipp calls."""

from __future__ import annotations

import asyncio
import contextlib
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

sys.path.insert(0, str(REPO / "lab"))
TOKEN = "live-test-token-0123456789"
#: an OAuth client of the live daemon (what a Telphin integration signs in as)
CLIENT_ID, CLIENT_SECRET = "crm", "live-crm-secret-0123456789"
LAB_CACHE = Path(os.environ.get("LAB_CACHE", "/var/cache/ami-bridge-lab"))
#: the lab Asterisk's spool as this machine sees it (Asterisk names it /var/spool/ami-bridge-lab)
SPOOL = LAB_CACHE / "chroot" / "var" / "spool" / "ami-bridge-lab"
VOICEMAIL_SPOOL = SPOOL / "voicemail"


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
    """``ami-bridge run`` against the lab, with the lab's configuration (fixtures/lab.yaml)."""
    async with running_daemon(tmp_path, FIXTURES / "lab.yaml") as base:
        yield base


#: a running daemon's base URL -> its management listener's (/health, /metrics, the console)
MANAGEMENT: dict[str, str] = {}


@contextlib.asynccontextmanager
async def running_daemon(tmp_path: Path, profile: Path) -> AsyncIterator[str]:
    """``ami-bridge run`` against the lab with a profile's configuration (fixtures/*.yaml),
    the test token, a store in ``tmp_path`` and the lab's voicemail spool; its base URL."""
    port, mport = free_port(), free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(
        profile.read_text()
        + f"""
management: {{listen: "127.0.0.1:{mport}"}}
api:
  listen: "127.0.0.1:{port}"
  tokens: [{{token: {TOKEN}}}]
  clients: [{{client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}}}]
store: {{path: "{tmp_path / "bridge.db"}"}}
delivery: {{backoff_initial: 0.2, backoff_max: 1, allow_networks: ["127.0.0.0/8"]}}
voicemail: {{spool: "{VOICEMAIL_SPOOL}"}}
recordings:
  dirs: ["{SPOOL / "monitor"}", "{VOICEMAIL_SPOOL}"]
  path_map: {{/var/spool/ami-bridge-lab: "{SPOOL}"}}
"""
    )
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)],
                                cwd=REPO, stderr=log)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    MANAGEMENT[base] = f"http://127.0.0.1:{mport}"
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


async def api(base: str, method: str, path: str, body: Any = None) -> Any:
    """Call the daemon's REST API with the test token; return the JSON answer (None for 204)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as s, s.request(method, base + path, headers=headers, json=body) as r:
        assert r.status == {"POST": 201, "DELETE": 204}.get(method, 200), await r.text()
        return None if r.status == 204 else await r.json()


async def subscribe(base: str, ext: int, event_type: str, url: str, method: str) -> None:
    body = {"url": url, "event_type": event_type, "method": method}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{base}/extension/{ext}/event/", headers=headers, json=body) as r,
    ):
        assert r.status == 201, await r.text()


async def place(fn: Any) -> None:
    from driver import AMI, Lab, fresh_switches  # type: ignore[import-not-found]

    ami = Manager(host=AMI[0], port=AMI[1], username="lab", secret="lab-secret", ping_delay=3600)
    ami.connect()
    for _ in range(100):
        if ami.authenticated:
            break
        await asyncio.sleep(0.05)
    await fresh_switches(ami)  # a scenario played before may have left LAB/wrap=1 or forwarding
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
