"""Benchmark AMI server, run in its own process: bridge.demo.ReplayServer.

    replay_proc.py --calls N --rate R FIXTURE.ami [FIXTURE.ami ...]

Plays the fixtures in turn (a mix) until N recordings (calls; rounded up to whole passes
over the fixtures) have been sent, at R calls
per second, each copy with fresh Uniqueids and every Timestamp set to when it is sent.
Prints ``{"port": ...}`` on stdout, ``{"logged_in": true}`` once the daemon has logged in,
then waits for a line on stdin before playing; when done it prints
``{"sent": <messages>, "calls": ..., "start": <epoch s>, "end": <epoch s>}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridge.demo import ReplayServer  # noqa: E402


def say(doc: dict[str, object]) -> None:
    print(json.dumps(doc), flush=True)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("fixtures", nargs="+", type=Path)
    args = p.parse_args()
    streams = [(f.stem, f.read_bytes()) for f in args.fixtures]
    passes = -(-args.calls // len(streams))
    replay = ReplayServer(streams, passes=passes, rate=args.rate)
    replay.go.clear()
    say({"port": await replay.start()})
    await replay.logged_in.wait()
    say({"logged_in": True})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    start = time.time()
    replay.go.set()
    await replay.finished.wait()
    end = time.time()
    say({"sent": replay.sent, "calls": replay.played, "start": start, "end": end})
    await loop.run_in_executor(None, sys.stdin.readline)  # until told (or stdin closes)
    await replay.close()


if __name__ == "__main__":
    asyncio.run(main())
