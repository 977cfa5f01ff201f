"""Benchmark: the PostgreSQL store's driver, psycopg 3 (synchronous) against asyncpg.

    .venv/bin/python bench/pg_driver.py [--batch 20] [--commits 500] [--runs 3]

Starts a real PostgreSQL on loopback (tests/pg.py; Debian's server, fsync off as in the
tests), then, interleaved, ``--runs`` rounds of each contender:

  * ``psycopg store``: :meth:`bridge.store_pg.PgStore.enqueue_many` of ``--batch`` events
    (each with one delivery), i.e. the daemon's commit as it is: BEGIN, the subscriptions'
    version, the ids (one nextval round trip), executemany of events, calls, reached
    extensions and deliveries (psycopg pipelines them), COMMIT;
  * ``asyncpg same SQL``: the same statements and rows through asyncpg (prepared,
    executemany), awaited on an event loop;
  * ``sqlite (baseline)``: the same calls on the SQLite store (a file on local disk,
    ``synchronous = normal``), what a single-box bridge pays;
  * ``psycopg select`` / ``asyncpg select``: the dispatcher's small read, a subscription's
    oldest 100 pending deliveries with their events (rows fetched, nothing parsed);
    ``psycopg store.pending(100)``: the same read as the dispatcher makes it (the JSON
    payloads parsed, Delivery objects made).

Printed per contender: p50 and p99 of one call (ms; the time the event loop is blocked
for psycopg), and events/s committed; medians over the rounds. The machine is noisy:
compare the ratios in one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bridge.store import Store, _to_json
from bridge.store_pg import PgStore
from tests import pg

PENDING = (
    "SELECT d.id, d.event_id, d.subscription_id, d.attempts, d.next_at, e.payload "
    "FROM deliveries d JOIN events e ON e.id = d.event_id "
    "WHERE d.subscription_id = $1 AND d.state = 'pending' ORDER BY d.id LIMIT $2"
)


def events(start: int, n: int) -> list[tuple[int, dict[str, Any]]]:
    now = time.time_ns() // 1000
    return [(101, {"EventType": "hangup", "CallID": f"c{start + i}", "EventTime": now + i, "Duration": 3,
                   "CallerIDNum": "101", "CalledDID": "74950000000", "CallStatus": "ANSWER"})
            for i in range(n)]  # fmt: skip


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def run_psycopg(
    store: PgStore, sub: int, batch: int, commits: int, base: int
) -> tuple[list[float], list[float]]:
    write, read, parsed = [], [], []
    for c in range(commits):
        rows = events(base + c * batch, batch)
        t = time.perf_counter()
        store.enqueue_many(rows)
        write.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.db.execute(PENDING.replace("$1", "?").replace("$2", "?"), (sub, 100)).fetchall()
        read.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.pending(sub, 100)
        parsed.append(time.perf_counter() - t)
    return write, read, parsed


async def run_asyncpg(
    url: str, sub: int, batch: int, commits: int, base: int
) -> tuple[list[float], list[float]]:
    conn = await asyncpg.connect(url)
    write, read = [], []
    try:
        for c in range(commits):
            rows = events(base + c * batch, batch)
            t = time.perf_counter()
            async with conn.transaction():
                await conn.fetchval("SELECT version FROM store_versions WHERE name = 'subscriptions'")
                ids = await conn.fetchrow(
                    "SELECT ARRAY(SELECT nextval('events_id_seq') FROM generate_series(1, $1::int)), "
                    "ARRAY(SELECT nextval('deliveries_id_seq') FROM generate_series(1, $1::int))",
                    len(rows),
                )
                ev, dl = sorted(ids[0]), sorted(ids[1])
                await conn.executemany(
                    "INSERT INTO events (id, extension_id, event_type, payload, call_id, event_time) "
                    "VALUES ($1, $2, $3, $4, $5, $6)",
                    [(ev[i], x, e["EventType"], _to_json(e), e["CallID"], e["EventTime"])
                     for i, (x, e) in enumerate(rows)],
                )  # fmt: skip
                await conn.executemany(
                    "INSERT INTO calls (call_id, init_time) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    [(e["CallID"], e["EventTime"]) for _, e in rows],
                )
                await conn.executemany(
                    "INSERT INTO call_extensions (call_id, extension_id) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    [(e["CallID"], x) for x, e in rows],
                )
                await conn.executemany(
                    "INSERT INTO deliveries (id, event_id, subscription_id) VALUES ($1, $2, $3)",
                    [(dl[i], ev[i], sub) for i in range(len(rows))],
                )
            write.append(time.perf_counter() - t)
            t = time.perf_counter()
            await conn.fetch(PENDING, sub, 100)
            read.append(time.perf_counter() - t)
    finally:
        await conn.close()
    return write, read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=20, help="events per commit")
    ap.add_argument("--commits", type=int, default=500, help="commits per round")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    server = pg.start()
    try:
        store = PgStore(server.url)
        sub = store.add_subscription(101, "hangup", "http://127.0.0.1:9/", "POST").id
        lite = Store(Path(tempfile.mkdtemp(prefix="pg-driver-")) / "baseline.db")
        lite_sub = lite.add_subscription(101, "hangup", "http://127.0.0.1:9/", "POST").id
        results: dict[str, list[tuple[float, float, float]]] = {}

        def record(name: str, times: list[float], per_call_events: int) -> None:
            rate = per_call_events * len(times) / sum(times)
            results.setdefault(name, []).append((pct(times, 0.5), pct(times, 0.99), rate))

        base = 0
        contenders: dict[str, Callable[[int], tuple[list[float], ...]]] = {
            "psycopg": lambda b: run_psycopg(store, sub, args.batch, args.commits, b),
            "asyncpg": lambda b: asyncio.run(run_asyncpg(server.url, sub, args.batch, args.commits, b)),
            "sqlite (baseline)": lambda b: run_psycopg(lite, lite_sub, args.batch, args.commits, b),
        }
        for _ in range(args.runs):
            for name, fn in contenders.items():
                write, read, *parsed = fn(base)
                base += args.batch * args.commits
                record(f"{name} commit ({args.batch} events)", write, args.batch)
                record(f"{name} select (100 pending)", read, 1)
                if parsed:
                    record(f"{name} store.pending(100)", parsed[0], 1)
        store.close()
        lite.close()
        shutil.rmtree(Path(lite.path).parent)
    finally:
        server.stop()
    print(f"{'contender':40} {'p50 ms':>8} {'p99 ms':>8} {'per s':>10}   (medians of {args.runs} runs)")
    for name, rows in results.items():
        p50, p99, rate = (statistics.median(r[i] for r in rows) for i in range(3))
        unit = "events/s" if "commit" in name else "calls/s"
        print(f"{name:40} {p50:8.3f} {p99:8.3f} {rate:10.0f} {unit}")


if __name__ == "__main__":
    main()
