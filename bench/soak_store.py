"""Benchmark: the store file stays bounded with store.retention, over many calls.

    .venv/bin/python bench/soak_store.py [--calls 100000] [--days 30] [--history 3d]

CALLS calls (the golden events of bench/synthetic.py's flows plus SIP messages: ~6.4
events and ~2.9 KB of JSON per call, every event with one subscribed delivery) go
through Store.enqueue_many in batches of BATCH calls, each batch carrying the previous
one's outcomes (all delivered) as the daemon's pipeline does, paced at RATE calls/s (the
daemon's top rate; 0: as fast as it goes), the WAL checkpointed in the background (every
CHECKPOINT s). A simulated clock spreads the calls over DAYS days.

Two stores take every batch, in turn (which goes first alternates, so the machine's
noise hits both alike): a baseline with retention off (its file grows with every call)
and one pruned by the daemon's Pruner from a thread, a pass every PRUNE_EVERY s of real
time at the simulated time, with ``delivered``/``failed`` of DELIVERED and ``history``
of HISTORY. Prints both stores' database and WAL sizes every tenth of the run with the
calls they keep; at the end their sizes (and after close), the enqueue rate of each over
the second half (batches per second of enqueue_many time, when pruning deletes as much
as is added) with the ratio, the median / 99th percentile / largest enqueue_many (a
pruning transaction the pipeline waits for shows there), and the pruner's busy time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.synthetic import FLOWS  # noqa: E402
from bridge.config import Retention  # noqa: E402
from bridge.retention import Pruner  # noqa: E402
from bridge.store import Mark, Store  # noqa: E402

DAY = 86400.0
#: the simulated start (unix seconds)
START = 1_800_000_000.0


def templates() -> list[list[tuple[int, dict[str, Any]]]]:
    """Each flow's golden events (and a SIP message's), as one call of the mix."""
    out = []
    for name in (*FLOWS, "sip-message"):
        lines = (REPO / "fixtures" / f"{name}.expected.jsonl").read_text(encoding="utf-8").splitlines()
        out.append([(item["extension_id"], item["event"]) for item in map(json.loads, lines)])
    return out


def copy(events: list[tuple[int, dict[str, Any]]], n: int, at_us: int) -> list[tuple[int, dict[str, Any]]]:
    """Call number ``n``'s events: its ids made unique, its times moved to ``at_us``."""
    first = min(e.get("EventTime", at_us) for _, e in events)
    out = []
    for ext, event in events:
        e = dict(event)
        for key in ("CallID", "SubCallID", "CallAPIID"):
            if key in e:
                e[key] = f"s{n}-{e[key]}"
        e["EventTime"] = at_us + (event.get("EventTime", first) - first)
        out.append((ext, e))
    return out


class Run:
    """One store the calls go through, and what it measured."""

    def __init__(self, path: Path, flows: list[list[tuple[int, dict[str, Any]]]], checkpoint: float) -> None:
        self.path = path
        self.store = Store(path)
        for ext, kind in sorted({(ext, e["EventType"]) for flow in flows for ext, e in flow}):
            self.store.add_subscription(ext, kind, "http://127.0.0.1:9/hook", "POST")
        self.store.checkpoint_in_background(checkpoint)
        self.marks: list[Mark] = []
        self.times: list[float] = []

    def commit(self, batch: list[tuple[int, dict[str, Any]]]) -> None:
        """One pipeline turn: the batch, with the previous one's outcomes (all delivered)."""
        a = time.perf_counter()
        out = self.store.enqueue_many(batch, self.marks)
        self.times.append(time.perf_counter() - a)
        self.marks = [("delivered", 1, 0.0, 200, None, d.id) for d in out]

    def calls(self) -> int:
        return int(self.store.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def sizes(self) -> tuple[float, float]:
        """(database, WAL) in MB."""
        wal = Path(f"{self.path}-wal")
        return self.path.stat().st_size / 1e6, (wal.stat().st_size / 1e6 if wal.exists() else 0.0)

    def stats(self, since: int) -> tuple[float, float, float, float]:
        """Batches/s from batch ``since`` on, and the median, 99th percentile and largest
        enqueue_many time (ms) over the run."""
        tail = self.times[since:]
        every = sorted(self.times)
        return (len(tail) / sum(tail), statistics.median(every) * 1000,
                every[int(len(every) * 0.99)] * 1000, every[-1] * 1000)  # fmt: skip


def prune_loop(pruner: Pruner, clock: list[float], every: float, stop: threading.Event) -> None:
    """The daemon's PruneThread, with a pass every ``every`` seconds of real time."""
    while not stop.wait(every):
        pruner.run(clock[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=100000)
    p.add_argument("--days", type=float, default=30.0, help="simulated days the calls are spread over")
    p.add_argument("--delivered", default="2d", help="store.retention.delivered and .failed")
    p.add_argument("--history", default="3d", help="store.retention.history")
    p.add_argument("--batch", type=int, default=10, help="calls per enqueue_many")
    p.add_argument("--rate", type=float, default=550.0, help="calls/s offered (0: as fast as it goes)")
    p.add_argument("--prune-every", type=float, default=1.0, help="real seconds between pruning passes")
    p.add_argument("--checkpoint", type=float, default=0.05, help="real seconds between WAL checkpoints")
    p.add_argument("--dir", default=None, help="where the store files go (default: a temporary directory)")
    args = p.parse_args()
    retention = Retention(delivered=args.delivered, failed=args.delivered, history=args.history)
    window = (retention.calls or 0) / (args.days * DAY) * args.calls
    print(f"{args.calls:,} calls over {args.days:g} simulated days ({args.calls / args.days:,.0f} a day); "
          f"retention delivered/failed {args.delivered}, history {args.history}: "
          f"~{window:,.0f} calls kept")  # fmt: skip
    flows = templates()
    per_call = args.days * DAY / args.calls
    step = max(args.batch, args.calls // 10 // args.batch * args.batch)
    clock = [START]
    stop = threading.Event()
    events = 0
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        off = Run(Path(tmp) / "off.db", flows, args.checkpoint)
        on = Run(Path(tmp) / "on.db", flows, args.checkpoint)
        pruner = Pruner(str(on.path), retention)
        thread = threading.Thread(target=prune_loop, args=(pruner, clock, args.prune_every, stop))
        thread.start()
        print(f"\n{'':17} {'retention off':>27} {'retention on':>27}")
        print(f"{'calls':>8} {'sim day':>8}" + f" {'db MB':>8} {'WAL MB':>7} {'calls kept':>10}" * 2)
        t0 = time.perf_counter()
        half = 0
        try:
            for first in range(0, args.calls, args.batch):
                batch = []
                for n in range(first, min(first + args.batch, args.calls)):
                    clock[0] = START + n * per_call
                    batch += copy(flows[n % len(flows)], n, int(clock[0] * 1_000_000))
                events += len(batch)
                if args.rate:  # paced: the calls a PBX sends at that rate
                    time.sleep(max(0.0, t0 + first / args.rate - time.perf_counter()))
                # both stores take every batch, in turn (which goes first alternates): the
                # machine's noise hits them alike
                for run in (off, on) if first // args.batch % 2 else (on, off):
                    run.commit(batch)
                done = min(first + args.batch, args.calls)
                if done <= args.calls // 2:
                    half = len(on.times)
                if done % step == 0 or done == args.calls:
                    cells = "".join(
                        f" {r.sizes()[0]:8.1f} {r.sizes()[1]:7.1f} {r.calls():10,}" for r in (off, on)
                    )
                    print(f"{done:8,} {(clock[0] - START) / DAY:8.1f}{cells}", flush=True)
        finally:
            stop.set()
            thread.join()
        took = time.perf_counter() - t0
        pruner.run(clock[0])
        pruner.close()
        final = [r.sizes() for r in (off, on)]
        for r in (off, on):
            r.store.close()
        closed = [r.sizes()[0] for r in (off, on)]
    print(f"\n{'':26} {'db+WAL MB':>9} {'closed MB':>9} {'batches/s (2nd half)':>21} "
          f"{'enqueue ms p50':>15} {'p99':>7} {'max':>7}")  # fmt: skip
    rates = []
    for name, r, (db, wal), shut in zip(
        ("retention off", "retention on"), (off, on), final, closed, strict=True
    ):
        rate, p50, p99, most = r.stats(half)
        rates.append(rate)
        print(f"{name:26} {db + wal:9.1f} {shut:9.1f} {rate:21,.0f} {p50:15.2f} {p99:7.2f} {most:7.1f}")
    print(f"\nretention on / off: file {(final[1][0] + final[1][1]) / (final[0][0] + final[0][1]):.2f}x, "
          f"enqueue rate over the second half {rates[1] / rates[0]:.2f}x "
          f"({events / args.calls:.2f} events, {args.batch} calls per enqueue_many; "
          f"{took:.0f} s in all)")  # fmt: skip
    busy = pruner.busy
    print(f"{pruner.passes} pruning passes, {busy:.1f} s busy ({busy / took:.0%} of the run); "
          f"deleted {', '.join(f'{n:,} {k}' for k, n in pruner.pruned.items() if n)}")  # fmt: skip


if __name__ == "__main__":
    main()
