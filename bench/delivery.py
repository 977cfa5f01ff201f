"""Benchmark: events delivered per second and AMI-to-receiver latency, against a baseline.

    .venv/bin/python bench/delivery.py [--calls 200] [--rate 50] [--runs 3]

Three things run on loopback:
  * a receiver in its own process (bench/receiver_proc.py);
  * the demo's AMI replay server (bridge.demo.ReplayServer) sending a real lab fixture
    (internal-answered-caller-hangup) CALLS times at RATE calls/s, each copy with fresh
    Uniqueids and every Timestamp rewritten to the moment it is sent;
  * the bridge daemon (in this process) subscribed with every event type of the two
    phones (POST), so each call is 6 requests.
Latency = receive time at the receiver - the event's EventTime (= when the AMI server
sent the event that caused it). The baseline sends the same number of POSTs with a
plain aiohttp client loop (same concurrency), latency = receive - send time.
Results: medians over --runs runs, printed as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridge.config import parse_config  # noqa: E402
from bridge.daemon import Daemon  # noqa: E402
from bridge.demo import ReplayServer  # noqa: E402
from bridge.store import Store  # noqa: E402

FIXTURE = REPO / "fixtures" / "internal-answered-caller-hangup.ami"
TOKEN = "bench-token-0123456789abcdef"


def pct(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] / 1000.0


async def run_bridge(calls: int, rate: float, receiver: str) -> tuple[float, list[int]]:
    replay = ReplayServer([(FIXTURE.stem, FIXTURE.read_bytes())], passes=calls, rate=rate)
    port = await replay.start()
    tmp = Path(tempfile.mkdtemp(prefix="ami-bridge-bench-"))
    with socket_port() as api_port:
        pass  # a free port for the API, released for the daemon to bind
    config = parse_config(f"""
ami: {{host: 127.0.0.1, port: {port}, username: bridge, secret: x, ping_interval: 3600}}
extensions:
  - {{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101"}}
  - {{id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "102"}}
api: {{listen: "127.0.0.1:{api_port}", tokens: [{{token: {TOKEN}}}]}}
store: {{path: "{tmp / "bridge.db"}"}}
delivery: {{allow_networks: ["127.0.0.0/8"]}}
""")
    store = Store(config.store.path)
    for ext in (1101, 1102):
        for ev in ("dial-in", "dial-out", "answer", "hangup"):
            store.add_subscription(ext, ev, f"{receiver}/hook", "POST")
    store.close()
    daemon = Daemon(config)
    task = asyncio.ensure_future(daemon.run())
    await replay.logged_in.wait()
    t0 = time.monotonic()
    expected = calls * 6
    async with aiohttp.ClientSession() as s:
        while True:
            async with s.get(f"{receiver}/stats") as r:
                got = await r.json()
            if len(got) >= expected or time.monotonic() - t0 > 120:
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
        async with s.get(f"{receiver}/stats?reset=1") as r:
            got = await r.json()
    daemon.stopping.set()
    await task
    await replay.close()
    return len(got) / elapsed, got


async def run_baseline(n: int, concurrency: int, receiver: str) -> tuple[float, list[int]]:
    body = "EventType=hangup&CallID=lab-1.0&SubCallID=lab-1.0-1&CallFlow=IN&CallStatus=ANSWER&Duration=1"
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as s:

        async def one() -> None:
            async with sem:
                headers = {"X-Sent-At": str(time.time_ns() // 1000),
                           "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
                async with s.post(f"{receiver}/hook", data=body, headers=headers) as r:
                    await r.read()

        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(n)))
        elapsed = time.monotonic() - t0
        async with s.get(f"{receiver}/stats?reset=1") as r:
            got = await r.json()
    return n / elapsed, got


class socket_port:
    def __enter__(self) -> int:
        import socket

        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return int(self.s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.s.close()


async def amain(args: argparse.Namespace) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "receiver_proc.py")], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    receiver = f"http://127.0.0.1:{proc.stdout.readline().decode().strip()}"
    rows: dict[str, list[tuple[float, float, float]]] = {"bridge": [], "baseline": []}
    try:
        for _ in range(args.runs):
            rps, lat = await run_bridge(args.calls, args.rate, receiver)
            rows["bridge"].append((rps, pct(lat, 0.5), pct(lat, 0.99)))
            rps, lat = await run_baseline(args.calls * 6, 50, receiver)
            rows["baseline"].append((rps, pct(lat, 0.5), pct(lat, 0.99)))
    finally:
        proc.terminate()
    print(f"\n{args.calls} calls at {args.rate:g} calls/s (6 requests per call), median of {args.runs} runs")
    print(f"{'':10} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
    med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in rows.items()}
    for name, (rps, p50, p99) in med.items():
        print(f"{name:10} {rps:11.1f} {p50:8.2f} {p99:8.2f}")
    print(
        "bridge requests/s are bounded by the offered load (rate x 6); the baseline sends as fast as it can."
    )
    print(json.dumps({"calls": args.calls, "rate": args.rate, "median": med}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--runs", type=int, default=3)
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
