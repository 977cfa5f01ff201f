"""Benchmark: webhooks/s and p99 with 1, 2 and 3 bridge processes on one PostgreSQL,
against one process on SQLite, on the same machine (ratios in one run).

    .venv/bin/python bench/cluster.py [--procs 1,2,3] [--calls 3000] [--rate 300] [--runs 3]
                                      [--daemon-src DIR]

Workload: N Asterisk servers sharing one database (README, "Past one machine"), each
bridge process on its own AMI stream with its own extensions. Process k gets
bench/replay_proc.py playing the benchmark mix of bench/delivery.py (MIX) renamed to copy
k of the lab's extensions (``--first-copy k``: 101 -> k101 ...), at RATE calls/s, CALLS
calls; its config lists only copy k's extensions (``ami.name`` = ``pbxK`` when this tree's
config has that key), with ports of its own; every event type of every extension is
subscribed (POST) to one shared receiver (bench/receiver_proc.py). The PostgreSQL is
Debian's, started here on loopback (tests/pg.py: fsync off, as in the tests); each run
gets a fresh schema in it. The baseline is one process on a SQLite file (the single-box
default), same stream, same receiver.

The N replays start together; printed per setup (medians over ``--runs``, setups
interleaved run by run so that the machine's drift hits each alike):

  * ``webhooks/s``: requests received over the time from the first AMI message sent to
    the last request received (bounded by what is offered: N x RATE x ~6 per call);
  * ``p50``/``p99`` ms: receive time - the event's EventTime, over every request;
  * ``got/expected``: requests received / one per event (more: duplicates; fewer: lost
    or still pending after 15 s without progress);
  * ``CPU ms/call``: all bridge processes' CPU (utime + stime) per call;
  * ``x SQLite``: webhooks/s against the SQLite single process's, and ``/N``: that per
    process (1.0 = linear scaling).

The machine has 2 cores shared by the N bridges, N replay servers, the receiver and
PostgreSQL: where the ratio stops growing is where the CPU runs out, not a limit of the
design; read it with the CPU column. An HA pair (two processes on one stream, each event
delivered once) needs deterministic event ids and delivery leases (issue 19, part 3):
not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.delivery import (  # noqa: E402
    EVENT_TYPES,
    FIXTURES,
    MIX,
    TOKEN,
    cpu_seconds,
    expected_requests,
    free_port,
    pct,
    readline_json,
    spread_extensions,
)
from bridge.config import AmiConfig  # noqa: E402
from bridge.store import Store  # noqa: E402
from tests import pg  # noqa: E402

#: ``ami.name`` exists once issue 19's part 2 is merged: pass it only then
HAS_AMI_NAME = "name" in AmiConfig.model_fields


@dataclass
class Result:
    rps: float
    p50: float
    p99: float
    got: int
    expected: int
    cpu_ms_per_call: float


def extensions_of_copy(k: int) -> list[dict[str, Any]]:
    """The lab's extensions renamed to copy k (what replay_proc --first-copy k plays)."""
    lab = yaml.safe_load((FIXTURES / "lab.yaml").read_text())["extensions"]
    return spread_extensions(lab, k + 1)[k * len(lab) :]


def schema_url(server_url: str, name: str) -> str:
    """A fresh schema in the server's database, as a URL whose connections use it."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{name}"')
    return f"{server_url}?options=-csearch_path%3D{name}"


async def wait_healthy(session: aiohttp.ClientSession, url: str, daemon: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if daemon.poll() is not None:
            raise RuntimeError(f"a bridge exited at start (code {daemon.returncode})")
        try:
            async with session.get(url) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never said ready")


async def run_setup(args: argparse.Namespace, n: int, store_url: str | None, receiver: str,
                    tag: str) -> Result:  # fmt: skip
    """N bridges, each on its own replay stream and extensions, on one store."""
    tmp = Path(tempfile.mkdtemp(prefix=f"ami-bridge-cluster-{tag}-"))
    calls = -(-args.calls // len(MIX)) * len(MIX)
    if store_url is None:
        assert n == 1, "a SQLite store is one process's"
        store: dict[str, str] = {"path": str(tmp / "bridge.db")}
        subs_store: Any = Store(tmp / "bridge.db")
    else:
        from bridge.store_pg import PgStore

        store = {"url": store_url}
        subs_store = PgStore(store_url)
    lab = yaml.safe_load((FIXTURES / "lab.yaml").read_text())
    replays: list[subprocess.Popen[bytes]] = []
    daemons: list[subprocess.Popen[bytes]] = []
    health: list[str] = []
    logs = []
    try:
        for k in range(n):
            exts = extensions_of_copy(k)
            for ext in exts:
                for kind in EVENT_TYPES:
                    subs_store.add_subscription(ext["id"], kind, f"{receiver}/hook", "POST")
            replay = subprocess.Popen(
                [sys.executable, str(REPO / "bench" / "replay_proc.py"), "--calls", str(calls), "--rate",
                 str(args.rate), "--first-copy", str(k), *(str(FIXTURES / f"{m}.ami") for m in MIX)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )  # fmt: skip
            replays.append(replay)
            assert replay.stdout is not None
            ami: dict[str, Any] = {"host": "127.0.0.1", "port": readline_json(replay.stdout, 20)["port"],
                                   "username": "bridge", "secret": "x", "ping_interval": 3600}  # fmt: skip
            if HAS_AMI_NAME:
                ami["name"] = f"pbx{k + 1}"
            mport = free_port()
            config = {
                "ami": ami,
                "extensions": exts,
                "trunks": lab["trunks"],
                "api": {"listen": f"127.0.0.1:{free_port()}", "tokens": [{"token": TOKEN}]},
                "management": {"listen": f"127.0.0.1:{mport}"},
                "store": store,
                "delivery": {"allow_networks": ["127.0.0.0/8"]},
            }
            path = tmp / f"pbx{k + 1}.yaml"
            path.write_text(yaml.safe_dump(config))
            log = open(tmp / f"pbx{k + 1}.log", "wb")  # noqa: SIM115
            logs.append(log)
            daemons.append(subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(path)],
                                            cwd=args.daemon_src, stderr=log))  # fmt: skip
            health.append(f"http://127.0.0.1:{mport}/health")
        subs_store.close()
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as s:
            for replay in replays:
                assert replay.stdout is not None
                await loop.run_in_executor(None, readline_json, replay.stdout, 30)  # logged in
            for url, daemon in zip(health, daemons, strict=True):
                await wait_healthy(s, url, daemon)
            async with s.get(f"{receiver}/stats?reset=1&count=1") as r:
                await r.read()
            cpu0 = sum(cpu_seconds(d.pid) for d in daemons)
            for replay in replays:  # all at once
                assert replay.stdin is not None
                replay.stdin.write(b"go\n")
                replay.stdin.flush()
            done = [await loop.run_in_executor(None, readline_json, r.stdout, 600) for r in replays]
            expected = expected_requests(calls) * n
            seen, since = -1, time.monotonic()
            while True:  # until every request arrived, or nothing more for 15 s
                async with s.get(f"{receiver}/stats?count=1") as r:
                    got_n = (await r.json())["n"]
                if got_n >= expected or time.monotonic() - since > 15:
                    break
                if got_n != seen:
                    seen, since = got_n, time.monotonic()
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # duplicates, if any, show up too
            cpu1 = sum(cpu_seconds(d.pid) for d in daemons)
            async with s.get(f"{receiver}/stats?reset=1") as r:
                got = await r.json()
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
        for log in logs:
            log.close()
        for replay in replays:
            if replay.stdin is not None:
                replay.stdin.close()
            replay.wait(timeout=10)
    took = got["last"] / 1e6 - min(d["start"] for d in done)
    if got["n"] != expected:
        print(f"  {tag}: {got['n']} requests received, {expected} expected (logs: {tmp})", file=sys.stderr)
    return Result(got["n"] / took, pct(got["lat"], 0.5), pct(got["lat"], 0.99), got["n"], expected,
                  (cpu1 - cpu0) * 1000 / sum(d["calls"] for d in done))  # fmt: skip


async def amain(args: argparse.Namespace) -> None:
    procs = [int(x) for x in args.procs.split(",")]
    server = pg.start()
    receiver_proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "receiver_proc.py")], stdout=subprocess.PIPE
    )
    assert receiver_proc.stdout is not None
    receiver = f"http://127.0.0.1:{receiver_proc.stdout.readline().decode().strip()}"
    rows: dict[str, list[Result]] = {}
    try:
        for i in range(args.runs):
            setups: list[tuple[str, int, str | None]] = [("sqlite x1", 1, None)]
            setups += [(f"postgresql x{n}", n, schema_url(server.url, f"run{i}_n{n}")) for n in procs]
            for name, n, url in setups:
                r = await run_setup(args, n, url, receiver, f"{name.replace(' ', '-')}-{i}")
                rows.setdefault(name, []).append(r)
                print(f"  run {i + 1}: {name:15} {r.rps:8.1f} webhooks/s, p99 {r.p99:7.1f} ms, "
                      f"{r.got}/{r.expected}", file=sys.stderr)  # fmt: skip
    finally:
        receiver_proc.terminate()
        server.stop()
    base = statistics.median(r.rps for r in rows["sqlite x1"])
    print(f"\nN servers sharing one database: N bridge processes, each on its own AMI stream ({args.calls} "
          f"calls at {args.rate:g} calls/s, ~{expected_requests(len(MIX)) / len(MIX):.1f} webhooks per call) "
          f"and extensions; ami.name {'set' if HAS_AMI_NAME else 'not in this tree (not set)'}; "
          f"median of {args.runs} runs")  # fmt: skip
    head = ("", "webhooks/s", "p50 ms", "p99 ms", "got/expected", "CPU ms/call", "x SQLite", "/N")
    print(f"{head[0]:16} " + " ".join(f"{h:>12}" for h in head[1:]))
    summary = {}
    for name, results in rows.items():
        n = int(name.rsplit("x", 1)[1])
        rps = statistics.median(r.rps for r in results)
        p50 = statistics.median(r.p50 for r in results)
        p99 = statistics.median(r.p99 for r in results)
        got = f"{statistics.median(r.got for r in results):.0f}/{results[0].expected}"
        cpu = statistics.median(r.cpu_ms_per_call for r in results)
        summary[name] = {"rps": rps, "p50": p50, "p99": p99, "ratio": rps / base, "cpu": cpu,
                         "got": [r.got for r in results], "expected": results[0].expected}  # fmt: skip
        print(f"{name:16} {rps:12.1f} {p50:12.1f} {p99:12.1f} {got:>12} {cpu:12.2f} {rps / base:12.2f} "
              f"{rps / base / n:12.2f}")  # fmt: skip
    print(f"offered: N x {args.rate:g} calls/s; webhooks/s cannot exceed N x {args.rate:g} x ~6.")
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "median": summary}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--procs", default="1,2,3", help="bridge process counts on PostgreSQL (comma-separated)")
    p.add_argument("--calls", type=int, default=3000, help="calls per process (per AMI stream)")
    p.add_argument("--rate", type=float, default=300.0, help="calls/s offered per process")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--daemon-src", type=Path, default=REPO, help="source tree the daemons run from")
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
