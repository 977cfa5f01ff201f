"""Benchmark receiver, run in its own process: counts requests and their latency.

Prints its port on stdout, then serves: any POST is recorded as (receive time in µs,
the request's EventTime field or X-Sent-At header). GET /stats returns the latencies.
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import parse_qsl

from aiohttp import web

lat: list[int] = []


async def hook(request: web.Request) -> web.Response:
    body = await request.read()
    now = time.time_ns() // 1000
    sent = request.headers.get("X-Sent-At") or dict(parse_qsl(body.decode())).get("EventTime")
    if sent:
        lat.append(now - int(sent))
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    data = list(lat)
    if request.query.get("reset"):
        lat.clear()
    return web.json_response(data)


async def main() -> None:
    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
