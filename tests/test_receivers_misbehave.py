"""Receivers that misbehave, for real on loopback: each handled as documented, none
blocking the other subscribers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.config import DeliveryConfig
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.http import make_client
from bridge.store import Store

CONFIG = DeliveryConfig(backoff_initial=0.05, backoff_max=0.1, max_attempts=2, read_timeout=0.5,
                        total_timeout=1.5, allow_networks=["127.0.0.0/8"])  # fmt: skip


async def drip_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A slow loris: the status line, then a header line every 0.3 s, never the end of headers
    (each read is quick, so only a limit on the whole attempt stops it)."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(100):
            writer.write(f"X-Drip-{i}: x\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.3)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def huge(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200)
    await resp.prepare(request)
    chunk = b"y" * 65536
    for _ in range(1600):  # 100 MiB if anybody read it all
        await resp.write(chunk)
    return resp


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://169.254.169.254/latest/meta-data")


async def reset(request: web.Request) -> web.Response:
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


GOOD = web.AppKey("good", list)


async def good(request: web.Request) -> web.Response:
    request.app[GOOD].append(time.monotonic())
    return web.Response()


@pytest.fixture(params=["builtin", "aiohttp"])
def client(request: pytest.FixtureRequest) -> str:
    """Both HTTP clients (delivery.client) behave the same, down to the error names."""
    return str(request.param)


@pytest.fixture
async def base() -> AsyncIterator[tuple[str, list[float], str]]:
    app = web.Application()
    app[GOOD] = []
    for path, handler in (("/huge", huge), ("/redirect", redirect), ("/reset", reset), ("/good", good)):
        app.router.add_route("*", path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    loris = await asyncio.start_server(drip_headers, "127.0.0.1", 0)
    loris_url = f"http://127.0.0.1:{loris.sockets[0].getsockname()[1]}/loris"
    yield f"http://127.0.0.1:{server.port}", app[GOOD], loris_url
    loris.close()
    await server.close()


@pytest.mark.parametrize(
    ("path", "attempts", "error"),
    [
        ("/loris", 2, "TimeoutError"),  # total_timeout cuts it; retried, then failed
        ("/reset", 2, "ServerDisconnectedError"),  # retried, then failed
        ("/redirect", 1, "HTTP 302"),  # not followed, not retried
    ],
)
async def test_misbehaving_receiver_is_handled(base: Any, tmp_path: Path, path: str, attempts: int,
                                               error: str, client: str) -> None:  # fmt: skip
    """Slow loris, reset and redirect end as documented while a good receiver gets its event at once."""
    url, good_at, loris_url = base
    store = Store(tmp_path / "m.db")
    target = loris_url if path == "/loris" else url + path
    store.add_subscription(175, "hangup", target, "POST")
    store.add_subscription(175, "hangup", url + "/good", "POST")
    store.enqueue(175, {"EventType": "hangup", "CallID": "c1", "EventTime": 1})
    started = time.monotonic()
    async with make_client(client) as session:
        d = Dispatcher(store, CONFIG, session)
        d.wake()
        await asyncio.wait_for(d.idle(), 30)
    failed = store.deliveries("failed")
    assert len(failed) == 1 and failed[0]["attempts"] == attempts, failed
    assert error in (failed[0]["last_error"] or ""), failed
    assert good_at and good_at[0] - started < 0.5
    store.close()


async def test_huge_response_is_not_read_whole(base: Any, tmp_path: Path, client: str) -> None:
    """A 100 MiB answer counts as delivered after reading 64 KiB; memory stays small."""
    import resource

    url, _, _ = base
    store = Store(tmp_path / "h.db")
    store.add_subscription(175, "hangup", url + "/huge", "POST")
    store.enqueue(175, {"EventType": "hangup", "CallID": "c1", "EventTime": 1})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with make_client(client) as session:
        d = Dispatcher(store, CONFIG, session)
        d.wake()
        await asyncio.wait_for(d.idle(), 30)
    assert len(store.deliveries("delivered")) == 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
    store.close()
