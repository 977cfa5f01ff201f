"""Benchmark: the whole pipeline end to end, AMI in to webhooks out, against a baseline.

    .venv/bin/python bench/delivery.py [--calls 1000] [--rate 200] [--tput-calls 5000]
                                       [--tput-rate 500] [--runs 3] [--profile DIR]

Three processes besides this one, all on loopback:
  * the AMI server: bench/replay_proc.py, i.e. bridge.demo.ReplayServer playing a mix of
    real lab recordings (MIX below: internal calls answered and busy, a queue with Local
    members, an inbound DID call recorded, an IVR to a phone, an outbound call), RATE
    calls per second, each copy with fresh Uniqueids and every Timestamp set to the
    moment it is sent;
  * the daemon, ``python -m bridge run --config ...`` (what systemd runs), configured
    with the lab's extensions (fixtures/lab.yaml) and subscribed (POST) to every event
    type of every extension: 63 subscriptions, about 6 requests per call;
  * the receiver: bench/receiver_proc.py.

Two modes (three with --eventfilter), each run --runs times (medians are printed), or
with --find-rate LO:HI a bisection for the highest rate the pipeline keeps up with:
  * latency: CALLS calls at RATE calls/s (default 200);
  * throughput: TPUT_CALLS calls offered at TPUT_RATE calls/s (default 500, about 53,000
    AMI messages/s); "AMI msg/s" is then what the pipeline sustained end to end;
  * throughput+filter (--eventfilter): the same, with Asterisk's side of the filter
    applied by the AMI server (the manager.conf lines ``ami-bridge eventfilter`` prints,
    for fixtures/lab.yaml); "AMI msg/s" still counts every message the PBX generated.
After each bridge run the baseline posts the same number of requests to the same
receiver with a plain aiohttp client loop (50 at a time, as fast as it can).

Columns: delivered requests/s and AMI messages/s, both over the time from the first
message sent to the last request received (the offered load bounds them); p50/p99 of
latency = receive time at the receiver - the event's EventTime (= when the AMI server
sent the message that caused it; baseline: receive - send); the AMI messages/s the
daemon itself counted (``ami_bridge_ami_messages_total``: the early filter drops most
messages unparsed and uncounted); daemon CPU (utime + stime from /proc) per call; the
daemon's peak RSS (VmHWM).

``--spread N`` spreads the calls over N renamed copies of the lab's extensions (with 1,
phone 101 is in nearly every call and its subscriptions, sent in order one request at a
time, are what falls behind first). ``--daemon-src DIR`` runs the daemon from another
source tree (a before/after comparison); ``--profile DIR`` runs the daemon of each
mode's first run under cProfile and prints its top functions. ``--instructions N1:N2
--rate 6`` counts the daemon's instructions per call under valgrind's callgrind (runs of
N1 and N2 calls, the difference per call): the same for the same tree whatever else the
machine does, so a change worth a few percent shows even where timings vary by 30%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synthetic import flow_blocks  # noqa: E402
from bridge.store import Store  # noqa: E402

FIXTURES = REPO / "fixtures"
MIX = ["internal-answered-caller-hangup", "internal-busy", "queue-local-members", "inbound-did-recorded",
       "ivr-to-phone", "outbound-external"]  # fmt: skip
EVENT_TYPES = ("dial-in", "dial-out", "answer", "hangup", "voicemail", "message-in", "message-out")
TOKEN = "bench-token-0123456789abcdef"
TICK = os.sysconf("SC_CLK_TCK")
COLUMNS = ("rps", "p50", "p99", "ami_rate", "counted_rate", "cpu_ms_per_call", "rss_mb")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[int], p: float) -> float:
    """Percentile of µs values, in ms."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] / 1000.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def spread_extensions(extensions: list[dict[str, Any]], copies: int) -> list[dict[str, Any]]:
    """The lab's extensions and ``copies - 1`` renamed copies of them, as
    bench/replay_proc.py's spread_names renames the recordings (101 -> 5101 in copy 5)."""
    out = list(extensions)
    for k in range(1, copies):
        for ext in extensions:
            clone = dict(ext, id=ext["id"] + 10000 * k)
            clone["name"] = re.sub(r"\*(\d+)@", lambda m: f"*{k}{m.group(1)}@", ext["name"])  # noqa: B023
            for key in ("endpoint", "mailbox"):
                if key in ext:
                    clone[key] = f"{k}{ext[key]}"
            for key in ("queue", "context"):
                if key in ext:
                    clone[key] = f"{ext[key]}{k}"
            out.append(clone)
    return out


def expected_requests(calls: int) -> int:
    """One request per event (every event type of every extension is subscribed)."""
    per_pass = sum(len((FIXTURES / f"{name}.expected.jsonl").read_text().splitlines()) for name in MIX)
    return -(-calls // len(MIX)) * per_pass


@dataclass
class Result:
    rps: float
    p50: float
    p99: float
    ami_rate: float = float("nan")
    counted_rate: float = float("nan")
    cpu_ms_per_call: float = float("nan")
    rss_mb: float = float("nan")
    complete: bool = True


def readline_json(stream: IO[bytes], timeout: float) -> dict[str, Any]:
    import select

    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise TimeoutError("the replay server said nothing")
    line = stream.readline()
    if not line:
        raise RuntimeError("the replay server exited")
    doc: dict[str, Any] = json.loads(line)
    return doc


async def metric(session: aiohttp.ClientSession, api: str, name: str) -> float:
    async with session.get(f"{api}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return float("nan")


async def run_bridge(args: argparse.Namespace, calls: int, rate: float, receiver: str,
                     profile: Path | None, eventfilter: bool = False,
                     callgrind: Path | None = None) -> Result:  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="ami-bridge-bench-"))
    calls = -(-calls // (len(MIX) * args.spread)) * len(MIX) * args.spread  # whole passes
    replay = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "replay_proc.py"), "--calls", str(calls), "--rate", str(rate),
         "--spread", str(args.spread),
         *(["--eventfilter", str(FIXTURES / "lab.yaml")] if eventfilter else []),
         *(str(FIXTURES / f"{name}.ami") for name in MIX)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert replay.stdin is not None and replay.stdout is not None
    ami_port = readline_json(replay.stdout, 20)["port"]
    api_port = free_port()
    lab = yaml.safe_load((FIXTURES / "lab.yaml").read_text())
    lab["extensions"] = spread_extensions(lab["extensions"], args.spread)
    config = {
        "ami": {"host": "127.0.0.1", "port": ami_port, "username": "bridge", "secret": "x",
                "ping_interval": 3600},
        "extensions": lab["extensions"],
        "trunks": lab["trunks"],
        "api": {"listen": f"127.0.0.1:{api_port}", "tokens": [{"token": TOKEN}]},
        "store": {"path": str(tmp / "bridge.db")},
        "delivery": {"allow_networks": ["127.0.0.0/8"]},
    }  # fmt: skip
    (tmp / "bridge.yaml").write_text(yaml.safe_dump(config))
    store = Store(tmp / "bridge.db")
    for ext in lab["extensions"]:
        for kind in EVENT_TYPES:
            store.add_subscription(ext["id"], kind, f"{receiver}/hook", "POST")
    store.close()
    cmd = [sys.executable, "-m", "bridge", "run", "--config", str(tmp / "bridge.yaml")]
    if profile is not None:
        cmd[1:1] = ["-m", "cProfile", "-o", str(profile)]
    if callgrind is not None:  # ~50x slower: start-up takes a minute, hence the long waits below
        cmd[0:0] = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}"]
    patience = 20 if callgrind is not None else 1
    log = open(tmp / "daemon.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen(cmd, cwd=args.daemon_src, stderr=log)
    expected = expected_requests(calls)
    api = f"http://127.0.0.1:{api_port}"
    try:
        readline_json(replay.stdout, 30 * patience)  # logged in
        async with aiohttp.ClientSession() as s:
            for _ in range(300 * patience):
                try:
                    async with s.get(f"{api}/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            async with s.get(f"{receiver}/stats?reset=1&count=1") as r:
                await r.read()
            counted0 = await metric(s, api, "ami_bridge_ami_messages_total")
            cpu0 = cpu_seconds(daemon.pid)
            replay.stdin.write(b"go\n")
            replay.stdin.flush()
            done = await asyncio.get_running_loop().run_in_executor(None, readline_json, replay.stdout, 600)
            seen, since = -1, time.monotonic()
            while True:  # until every request arrived, or nothing more for 15 s
                async with s.get(f"{receiver}/stats?count=1") as r:
                    n = (await r.json())["n"]
                if n >= expected or time.monotonic() - since > 15:
                    break
                if n != seen:
                    seen, since = n, time.monotonic()
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # anything beyond the expected (duplicates) shows up too
            cpu1 = cpu_seconds(daemon.pid)
            counted1 = await metric(s, api, "ami_bridge_ami_messages_total")
            rss = peak_rss_mb(daemon.pid)
            async with s.get(f"{receiver}/stats?reset=1") as r:
                got = await r.json()
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        replay.stdin.close()
        replay.wait(timeout=10)
    if args.dump is not None:
        (args.dump / f"latency-{calls}-{rate:g}-{int(time.time())}.json").write_text(json.dumps(got["lat"]))
    took = got["last"] / 1e6 - done["start"]
    if got["n"] != expected:
        print(f"  warning: {got['n']} requests received, {expected} expected (log: {tmp / 'daemon.log'})",
              file=sys.stderr)  # fmt: skip
    if profile is not None:
        print(f"\ndaemon profile ({calls} calls at {rate:g}/s), top 25 by own time:", file=sys.stderr)
        pstats.Stats(str(profile), stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return Result(
        rps=got["n"] / took,
        p50=pct(got["lat"], 0.5),
        p99=pct(got["lat"], 0.99),
        ami_rate=done.get("generated", done["sent"]) / took,
        counted_rate=(counted1 - counted0) / took,
        cpu_ms_per_call=(cpu1 - cpu0) * 1000 / done["calls"],
        rss_mb=rss,
        complete=got["n"] >= expected,
    )


async def run_baseline(n: int, concurrency: int, receiver: str) -> Result:
    body = "EventType=hangup&CallID=lab-1.0&SubCallID=lab-1.0-1&CallFlow=in&CallStatus=ANSWER&Duration=1"
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as s:

        async def one() -> None:
            async with sem:
                headers = {"X-Sent-At": str(time.time_ns() // 1000),
                           "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
                async with s.post(f"{receiver}/hook", data=body, headers=headers) as r:
                    await r.read()

        async with s.get(f"{receiver}/stats?reset=1&count=1") as r:
            await r.read()
        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(n)))
        elapsed = time.monotonic() - t0
        async with s.get(f"{receiver}/stats?reset=1") as r:
            got = await r.json()
    return Result(n / elapsed, pct(got["lat"], 0.5), pct(got["lat"], 0.99))


async def find_rate(args: argparse.Namespace, receiver: str) -> None:
    """The highest offered rate the pipeline keeps up with: runs of SECONDS at a rate,
    bisected between LO and HI calls/s; kept up = every request arrived, p99 latency
    stayed under --max-p99 ms (a daemon that lags falls further behind every second) and
    the messages/s over the run reached 90% of the rate offered."""
    lo, hi = (float(x) for x in args.find_rate.split(":"))
    per_call = sum(len(flow_blocks(name)) for name in MIX) / len(MIX)
    print(f"\nsearching the sustained rate in [{lo:g}, {hi:g}] calls/s, {args.seconds:g} s per run, "
          f"p99 <= {args.max_p99:g} ms; ~{per_call:.0f} AMI messages per call")  # fmt: skip
    best: float | None = None
    for _ in range(args.steps):
        rate = (lo + hi) / 2
        r = await run_bridge(args, max(len(MIX), int(rate * args.seconds)), rate, receiver, None,
                             args.eventfilter)  # fmt: skip
        # and the AMI server really sent at that rate (a daemon reading slowly would make
        # it wait on the socket: a lower rate offered, with latencies that look fine)
        ok = r.complete and r.p99 <= args.max_p99 and r.ami_rate >= 0.9 * rate * per_call
        verdict = "kept up" if ok else "behind"
        print(f"  {rate:6.1f} calls/s ({rate * per_call:8,.0f} msg/s offered): p50 {r.p50:8.1f} ms, "
              f"p99 {r.p99:8.1f} ms, CPU {r.cpu_ms_per_call:.2f} ms/call -> {verdict}")  # fmt: skip
        lo, hi = (rate, hi) if ok else (lo, rate)
        best = rate if ok else best
    if best is None:  # LO itself was never run: say so rather than claim it
        print(f"sustained: no rate tried was kept up with (all above {lo:g} calls/s); try a lower LO")
    else:
        print(f"sustained: {best:.1f} calls/s, {best * per_call:,.0f} AMI messages/s "
              f"(p99 <= {args.max_p99:g} ms)")  # fmt: skip


def instructions(path: Path) -> int:
    """The total instruction count of a callgrind output file."""
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {path}")


async def count_instructions(args: argparse.Namespace, receiver: str) -> None:
    """The daemon's instructions per call under callgrind: runs of N1 and N2 calls at
    --rate, each through the latency mode's path; the difference per call leaves start-up
    and shutdown out. Repeatable to a fraction of a percent whatever the machine's load."""
    n1, n2 = (int(x) for x in args.instructions.split(":"))
    per_pass = len(MIX)
    n1, n2 = -(-n1 // per_pass) * per_pass, -(-n2 // per_pass) * per_pass
    tmp = Path(tempfile.mkdtemp(prefix="ami-bridge-callgrind-"))
    counts = []
    for n in (n1, n2):
        out = tmp / f"callgrind.{n}"
        r = await run_bridge(args, n, args.rate, receiver, None, args.eventfilter, callgrind=out)
        if not r.complete:
            print(f"  warning: the {n}-call run lost requests (too high a --rate under valgrind?)")
        counts.append(instructions(out))
    per_call = (counts[1] - counts[0]) / (n2 - n1)
    mode = "Asterisk-side eventfilter" if args.eventfilter else "every message"
    print(f"\ndaemon from {args.daemon_src}, {mode}, {args.rate:g} calls/s under callgrind: "
          f"{counts[0]:,} instructions for {n1} calls, {counts[1]:,} for {n2}: "
          f"{per_call:,.0f} instructions per call")  # fmt: skip


async def amain(args: argparse.Namespace) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "receiver_proc.py")], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    receiver = f"http://127.0.0.1:{proc.stdout.readline().decode().strip()}"
    if args.find_rate or args.instructions:
        try:
            await (find_rate(args, receiver) if args.find_rate else count_instructions(args, receiver))
        finally:
            proc.terminate()
        return
    modes = {
        "latency": (args.calls, args.rate, False),
        "throughput": (args.tput_calls, args.tput_rate, False),
    }
    if args.eventfilter:
        modes["throughput+filter"] = (args.tput_calls, args.tput_rate, True)
    rows: dict[str, list[Result]] = {}
    try:
        for mode, (calls, rate, filtered) in modes.items():
            if calls <= 0:
                continue
            for i in range(args.runs):
                prof = args.profile / f"daemon-{mode}.prof" if args.profile is not None and i == 0 else None
                rows.setdefault(f"{mode} bridge", []).append(
                    await run_bridge(args, calls, rate, receiver, prof, filtered)
                )
                if filtered:
                    continue  # the same requests as the throughput run's: same baseline
                n = expected_requests(calls)
                rows.setdefault(f"{mode} baseline", []).append(await run_baseline(n, 50, receiver))
    finally:
        proc.terminate()
    mix = ", ".join(MIX)
    print(f"\nmix of {len(MIX)} recordings ({mix}), ~{expected_requests(len(MIX)) / len(MIX):.1f} requests "
          f"per call; median of {args.runs} runs")  # fmt: skip
    print(
        f"latency: {args.calls} calls at {args.rate:g} calls/s; "
        f"throughput: {args.tput_calls} calls offered at {args.tput_rate:g} calls/s"
    )
    head = ("", "req/s", "p50 ms", "p99 ms", "AMI msg/s", "counted/s", "CPU ms/call", "RSS MB")
    print(f"{head[0]:20} " + " ".join(f"{h:>11}" for h in head[1:]))
    summary: dict[str, list[float]] = {}
    for name, results in rows.items():
        med = [statistics.median(getattr(r, f) for r in results) for f in COLUMNS]
        summary[name] = med
        flag = "" if all(r.complete for r in results) else "  (incomplete: requests missing)"
        cells = " ".join("          -" if v != v else f"{v:11.1f}" for v in med)
        print(f"{name:20} {cells}{flag}")
    print("bridge rates are bounded by the offered load; the baseline sends as fast as it can.")
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "median": summary}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=1000, help="calls of the latency run (0: skip it)")
    p.add_argument("--rate", type=float, default=200.0, help="calls/s of the latency run")
    p.add_argument("--tput-calls", type=int, default=5000, help="calls of the throughput run (0: skip it)")
    p.add_argument("--tput-rate", type=float, default=500.0, help="calls/s offered in the throughput run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--spread",
        type=int,
        default=1,
        help="spread the calls over this many renamed copies of the lab's extensions (1: all "
        "calls on the lab's own, phone 101 in nearly every one)",
    )
    p.add_argument(
        "--find-rate",
        metavar="LO:HI",
        default=None,
        help="instead: bisect the highest calls/s kept up with (see --seconds, --steps, --max-p99)",
    )
    p.add_argument(
        "--instructions",
        metavar="N1:N2",
        default=None,
        help="instead: the daemon's instructions per call under valgrind's callgrind, from runs "
        "of N1 and N2 calls at --rate (use a low one, e.g. --rate 6); deterministic, for "
        "comparing trees with --daemon-src on a noisy machine",
    )
    p.add_argument("--seconds", type=float, default=15.0, help="length of each --find-rate run")
    p.add_argument("--steps", type=int, default=5, help="bisection steps of --find-rate")
    p.add_argument("--max-p99", type=float, default=500.0, help="p99 ms under which a rate is kept up")
    p.add_argument("--eventfilter", action="store_true",
                   help="also run the throughput mode with the AMI server sending only what the "
                        "manager.conf lines of `ami-bridge eventfilter` let through")  # fmt: skip
    p.add_argument("--daemon-src", type=Path, default=REPO, help="source tree the daemon runs from")
    p.add_argument("--profile", type=Path, default=None, help="write daemon cProfile output here")
    p.add_argument(
        "--dump", type=Path, default=None, help="write each run's latencies (µs, in arrival order) here"
    )
    args = p.parse_args()
    for d in (args.profile, args.dump):
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
