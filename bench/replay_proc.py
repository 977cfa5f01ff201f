"""Benchmark AMI server, run in its own process: bridge.demo.ReplayServer.

    replay_proc.py --calls N --rate R [--eventfilter CONFIG.yaml] FIXTURE.ami [FIXTURE.ami ...]

Plays the fixtures in turn (a mix) until N recordings (calls; rounded up to whole passes
over the fixtures) have been sent, at R calls
per second, each copy with fresh Uniqueids and every Timestamp set to when it is sent.
Prints ``{"port": ...}`` on stdout, ``{"logged_in": true}`` once the daemon has logged in,
then waits for a line on stdin before playing; when done it prints
``{"sent": <messages>, "generated": <messages>, "calls": ..., "start": <epoch s>, "end": <epoch s>}``.

``--serve --port P``: instead, an AMI server to try the bridge against (README, "Past one
machine: topologies"): it plays to every client as soon as it logs in, at R calls per
second, and runs until stopped (Ctrl-C or SIGTERM); nothing is read from stdin.

``--eventfilter``: send only what Asterisk would send a manager user carrying the lines
``ami-bridge eventfilter --config CONFIG.yaml`` prints (their advanced-filter semantics
applied here: include filters, by event name, one header's value exact or regex);
"generated" still counts every message of the recordings (what the PBX produced).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridge.ami.filter import eventfilters  # noqa: E402
from bridge.ami.message import split_stream  # noqa: E402
from bridge.config import load_config  # noqa: E402
from bridge.demo import ReplayServer  # noqa: E402

_CRITERION = re.compile(r"(action|name|header|method)\(([^)]*)\)")
#: the lab's extension numbers (phones, queues, IVR) as whole tokens, and its queue and
#: IVR context names: what --spread renames in each copy (see spread_names)
_NUMBER = re.compile(rb"(?<![0-9A-Za-z.])(10[1-6]|30[01]|400)(?![0-9A-Za-z])")
_NAMES = re.compile(rb"\b(support|sales|ivr-main)\b")


def spread_names(data: bytes, copy: int) -> bytes:
    """A recording moved to copy ``copy`` of the lab's extensions: numbers 101 -> 5101
    (copy 5), queue ``sales`` -> ``sales5``, context ``ivr-main`` -> ``ivr-main5``; copy 0
    is the lab itself. bench/delivery.py configures the same copies (spread_extensions)."""
    if copy == 0:
        return data
    tag = str(copy).encode()
    return _NAMES.sub(lambda m: m.group(1) + tag, _NUMBER.sub(lambda m: tag + m.group(1), data))


def asterisk_filter(lines: list[str]) -> Callable[[bytes], bool]:
    """Whether Asterisk would send an event to a user with these include filters."""
    rules = []
    for line in lines:
        if not line.startswith("eventfilter("):
            continue
        criteria, _, value = line.partition(") =")
        crit = dict(_CRITERION.findall(criteria))
        rules.append((crit.get("name"), crit.get("header"), crit.get("method", "none"), value.strip()))

    def passes(block: bytes) -> bool:
        text = block.decode("utf-8", "replace")
        event = text.split("\r\n", 1)[0].removeprefix("Event: ")
        for name, header, method, value in rules:
            if name is not None and name != event:
                continue
            if header is None:
                return True
            m = re.search(rf"^{re.escape(header)}: (.*?)\r$", text, re.M)
            got = m.group(1) if m else None
            if got is not None and (got == value if method == "exact" else re.search(value, got)):
                return True
        return False

    return passes


def say(doc: dict[str, object]) -> None:
    print(json.dumps(doc), flush=True)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--eventfilter", type=Path, default=None, metavar="CONFIG.yaml")
    p.add_argument("--spread", type=int, default=1, help="copies of the lab's extensions the calls go round")
    p.add_argument("--first-copy", type=int, default=0,
                   help="the first of those copies (bench/cluster.py: one copy per AMI server)")  # fmt: skip
    p.add_argument("--serve", action="store_true", help="play to every client at login, until stopped")
    p.add_argument("--port", type=int, default=0, help="the port to listen on (0: a free one)")
    p.add_argument("fixtures", nargs="+", type=Path)
    args = p.parse_args()
    streams = [
        (f"{f.stem}-{k}", spread_names(f.read_bytes(), k))
        for k in range(args.first_copy, args.first_copy + args.spread)
        for f in args.fixtures
    ]
    generated_per_pass = sum(len(split_stream(data)[0]) for _, data in streams)
    if args.eventfilter is not None:
        keep = asterisk_filter(eventfilters(load_config(args.eventfilter)))
        streams = [(name, b"".join(b for b in split_stream(data)[0] if keep(b))) for name, data in streams]
    passes = -(-args.calls // len(streams))
    replay = ReplayServer(streams, passes=passes, rate=args.rate)
    if args.serve:
        say({"port": await replay.start(port=args.port)})
        await asyncio.Event().wait()  # until stopped
    replay.go.clear()
    say({"port": await replay.start(port=args.port)})
    await replay.logged_in.wait()
    say({"logged_in": True})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    start = time.time()
    replay.go.set()
    await replay.finished.wait()
    end = time.time()
    generated = generated_per_pass * replay.played // len(streams)
    say({"sent": replay.sent, "generated": generated, "calls": replay.played, "start": start, "end": end})
    await loop.run_in_executor(None, sys.stdin.readline)  # until told (or stdin closes)
    await replay.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # --serve: Ctrl-C stops it
        asyncio.run(main())
