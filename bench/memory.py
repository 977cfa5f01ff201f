"""Benchmark: translator memory with many concurrent calls, and after many calls.

    .venv/bin/python bench/memory.py [--concurrent 10000] [--calls 100000]

Real flows (internal call, queue with Local members, recorded inbound DID) are copied
with unique channel ids and interleaved so that CONCURRENT calls are in progress at once;
CALLS calls go through in all. Prints RSS (from /proc/self/status) at the start, with
CONCURRENT calls up, and at the end, plus messages/s through the translator (pre-parsed
messages: this measures the translator alone).
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

from bridge.config import load_config  # noqa: E402
from bridge.translate import Translator  # noqa: E402
from tests.test_soak import copy_for, templates  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrent", type=int, default=10000)
    p.add_argument("--calls", type=int, default=100000)
    args = p.parse_args()
    flows = [
        templates(n)
        for n in ("internal-answered-caller-hangup", "queue-local-members", "inbound-did-recorded")
    ]
    t = Translator(load_config(REPO / "fixtures" / "lab.yaml"))
    start_rss = rss_mb()
    live: deque[tuple[int, int, int]] = deque()
    started = fed = 0
    peak_rss = peak_calls = 0.0
    peak_objects = 0
    gc.collect()
    start_objects = len(gc.get_objects())
    t0 = time.perf_counter()
    while started < args.calls or live:
        while len(live) < args.concurrent and started < args.calls:
            live.append((started, started % 3, 0))
            started += 1
        call, flow, i = live.popleft()
        t.feed(copy_for(flows[flow][i], f"s{call}-"))
        fed += 1
        if i + 1 < len(flows[flow]):
            live.append((call, flow, i + 1))
        if fed % 50000 == 0 and t.active_calls > peak_calls:
            peak_calls, peak_rss = t.active_calls, rss_mb()
            peak_objects = len(gc.get_objects())
    took = time.perf_counter() - t0
    print(f"\n{args.calls} calls, up to {args.concurrent} at once, {fed} AMI messages")
    print(f"RSS at start           {start_rss:8.1f} MB")
    print(f"RSS with {int(peak_calls):>6} calls up {peak_rss:7.1f} MB")
    gc.collect()
    left = f"calls left: {t.active_calls}, channels: {len(t.channels)}"
    print(f"RSS at the end         {rss_mb():8.1f} MB  ({left})")
    end_objects = len(gc.get_objects())
    print(f"live Python objects: start {start_objects}, with calls up {peak_objects}, end {end_objects}")
    print("(RSS does not shrink when Python frees memory: the object count shows what is still held)")
    print(f"translator: {fed / took:,.0f} messages/s ({took:.1f} s, pre-parsed messages)")


if __name__ == "__main__":
    main()
