"""Benchmark: CPU per webhook request, the bridge's HTTP client vs aiohttp's, same receiver.

    .venv/bin/python bench/http_client.py [--requests 4000] [--runs 3]

The receiver (bench/receiver_proc.py) runs in its own process. Each contender sends the
same form POST (a typical hangup event, ~400 bytes) REQUESTS times from 8 concurrent
senders, one request at a time each (as the dispatcher does per subscription), over
kept-alive connections; this process's CPU time (getrusage) per request is reported, with
requests/s. Contenders, interleaved in each run (medians of --runs):
  * bridge: bridge.delivery.http.WebhookClient (delivery.client: builtin);
  * aiohttp: aiohttp's ClientSession as the dispatcher used it before (behind
    bridge.delivery.http.AiohttpClient, without trust_env);
  * aiohttp+env: the same with trust_env, as ``delivery.client: aiohttp`` runs it (proxy
    settings and ~/.netrc looked up for every request);
  * floor: a bare asyncio stream writing the request and reading the answer (what any
    client must at least do).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridge.delivery.http import AiohttpClient, WebhookClient  # noqa: E402
from bridge.delivery.request import build_request  # noqa: E402

EVENT = {"EventType": "hangup", "CallID": "lab-1795730545.26", "SubCallID": "lab-1795730545.26-3",
         "CallFlow": "in", "CallerIDNum": "000*101", "CallerIDName": "Anna", "CalledNumber": "000*102",
         "CallerExtension": "000*101@pbx.example", "CallerExtensionID": 1101, "CallStatus": "ANSWER",
         "EventTime": 1795730545973772, "Duration": 5123456, "CallAPIID": "lab-1795730545.27"}  # fmt: skip
SENDERS = 8


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def timed(send: Callable[[], Awaitable[None]], n: int) -> tuple[float, float]:
    """(µs of CPU per request, requests/s) for n requests from SENDERS senders."""

    async def sender() -> None:
        for _ in range(n // SENDERS):
            await send()

    c0, t0 = cpu(), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(SENDERS)))
    return (cpu() - c0) / n * 1e6, n / (time.perf_counter() - t0)


async def amain(args: argparse.Namespace) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "receiver_proc.py")], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    url = f"http://127.0.0.1:{port}/hook"
    req = build_request("POST", url, EVENT, "1-2")
    head = (f"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
            + f"Content-Length: {len(req.body)}\r\n\r\n").encode()  # fmt: skip
    results: dict[str, list[tuple[float, float]]] = {
        "bridge": [],
        "aiohttp": [],
        "aiohttp+env": [],
        "floor": [],
    }
    try:
        for _ in range(args.runs):
            clients = (("bridge", WebhookClient()), ("aiohttp", AiohttpClient(trust_env=False)),
                       ("aiohttp+env", AiohttpClient()))  # fmt: skip
            for name, client in clients:
                async with client:

                    async def send(c: WebhookClient | AiohttpClient = client) -> None:
                        assert (await c.request("POST", url, req.headers, req.body)).status == 200

                    results[name].append(await timed(send, args.requests))
            streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(SENDERS)]
            free = list(streams)

            async def raw(free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = free) -> None:
                reader, writer = free.pop()
                writer.write(head + req.body)
                answer = await reader.readuntil(b"\r\n\r\n")
                length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                free.append((reader, writer))

            results["floor"].append(await timed(raw, args.requests))
            for _, writer in streams:
                writer.close()
    finally:
        proc.terminate()
    print(f"\n{args.requests} POSTs, {SENDERS} senders, median of {args.runs} runs")
    print(f"{'':10} {'CPU us/request':>15} {'requests/s':>11} {'x floor CPU':>12}")
    floor = statistics.median(c for c, _ in results["floor"])
    for name, rows in results.items():
        c = statistics.median(r[0] for r in rows)
        rps = statistics.median(r[1] for r in rows)
        print(f"{name:10} {c:15.1f} {rps:11,.0f} {c / floor:12.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--runs", type=int, default=3)
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
