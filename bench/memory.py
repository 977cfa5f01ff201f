"""Benchmark: translator memory with many concurrent calls, and flat after many calls.

    .venv/bin/python bench/memory.py [--concurrent 10000] [--calls 1000000]

Real flows (internal call, queue with Local members, recorded inbound DID) are copied
with unique channel ids and interleaved so that CONCURRENT calls are in progress at once;
CALLS calls go through in all. Only the messages the early filter keeps are fed (what
the daemon's translator sees). Prints RSS (VmRSS from /proc/self/status) and live
Python objects at the start, with CONCURRENT calls up, every tenth of the run and at
the end, plus messages/s through parse + translator.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synthetic import flow_blocks, slots, tag  # noqa: E402
from bridge.ami.filter import needs, wanted  # noqa: E402
from bridge.ami.message import parse  # noqa: E402
from bridge.config import load_config  # noqa: E402
from bridge.translate import Translator  # noqa: E402

CONFIG = load_config(REPO / "fixtures" / "lab.yaml")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def templates(name: str) -> list[list[bytes]]:
    need = needs(CONFIG)
    return [slots(b) for b in flow_blocks(name) if wanted(b, need)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrent", type=int, default=10000)
    p.add_argument("--calls", type=int, default=100000)
    args = p.parse_args()
    flows = [
        templates(n)
        for n in ("internal-answered-caller-hangup", "queue-local-members", "inbound-did-recorded")
    ]
    t = Translator(CONFIG)
    gc.collect()
    print(f"{'':28} {'calls done':>10} {'calls up':>9} {'RSS MB':>8} {'objects':>9}")

    def row(label: str, done: int) -> None:
        print(
            f"{label:28} {done:10} {t.active_calls:9} {rss_mb():8.1f} {len(gc.get_objects()):9}", flush=True
        )

    row("start", 0)
    live: deque[tuple[int, int, int]] = deque()
    started = fed = done = 0
    peak_shown = False
    step = max(1, args.calls // 10)
    t0 = time.perf_counter()
    while started < args.calls or live:
        while len(live) < args.concurrent and started < args.calls:
            live.append((started, started % 3, 0))
            started += 1
        call, flow, i = live.popleft()
        t.feed(parse(tag(call).join(flows[flow][i])))
        fed += 1
        if i + 1 < len(flows[flow]):
            live.append((call, flow, i + 1))
        else:
            done += 1
            if not peak_shown and started == min(args.calls, args.concurrent) and done == 1:
                row(f"{args.concurrent} calls up", done)
                peak_shown = True
            if done % step == 0:
                row("", done)
    took = time.perf_counter() - t0
    gc.collect()
    row("end (after gc)", done)
    print(f"\n{args.calls} calls, up to {args.concurrent} at once, {fed} AMI messages (after the filter)")
    print("(RSS does not shrink when Python frees memory: the object count shows what is still held)")
    print(f"parse + translate: {fed / took:,.0f} messages/s ({took:.1f} s, ids made unique included)")


if __name__ == "__main__":
    main()
