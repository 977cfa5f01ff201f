"""Benchmark: AMI parsing throughput, ours vs panoramisk's vs a minimal stdlib split.

    .venv/bin/python bench/parse.py [--copies 30] [--runs 5]

The stream is every fixture in fixtures/ concatenated COPIES times (real Asterisk 22
output). Each parser gets it in 64 KiB chunks, as from a socket:
  * bridge: bridge.ami.message.Framer + parse() of every message (the replay/daemon path),
    and the same with the early filter (messages no translator rule needs are skipped
    before parsing);
  * panoramisk: panoramisk's AMIProtocol.data_received (decode, split, Message.from_line),
    its dispatch replaced by a counter;
  * bridge replay: all of `ami-bridge replay` (filter, parse, translate);
  * baseline: bytes.split on the empty line, then each message split into (key, value)
    pairs: the least any parser must do.
Prints messages/s (median of --runs) and ratios to panoramisk and to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bridge.ami.message import Framer, parse  # noqa: E402

CHUNK = 65536


def stream(copies: int) -> bytes:
    data = b"".join(p.read_bytes() for p in sorted((REPO / "fixtures").glob("*.ami")))
    return data * copies


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def bridge_full(parts: list[bytes]) -> int:
    framer = Framer()
    n = 0
    for part in parts:
        for block in framer.feed(part):
            parse(block)
            n += 1
    return n


def bridge_filtered(parts: list[bytes]) -> int:
    from bridge.ami.filter import wanted

    framer = Framer()
    n = 0
    for part in parts:
        for block in framer.feed(part):
            if wanted(block):
                parse(block)
            n += 1
    return n


def bridge_replay(parts: list[bytes]) -> int:
    """The whole of `ami-bridge replay`: frame, filter, parse, translate."""
    from bridge.config import load_config
    from bridge.replay import replay_bytes
    from bridge.translate import Translator

    translator = Translator(load_config(REPO / "fixtures" / "lab.yaml"))
    for _ in replay_bytes(translator, parts):
        pass
    return sum(p.count(b"\r\n\r\n") for p in parts)


def panoramisk(parts: list[bytes]) -> int:
    from collections import deque

    from panoramisk.ami_protocol import AMIProtocol

    count = [0]

    class Factory:
        def dispatch(self, message: object) -> None:
            count[0] += 1

    proto = AMIProtocol()
    proto.transport = None
    proto.closed = False
    proto.queue = deque()
    proto.responses = {}
    proto.factory = Factory()
    proto.version = "9"
    proto.encoding = "utf8"
    import logging

    proto.log = logging.getLogger("bench")
    for part in parts:
        proto.data_received(part)
    return count[0]


def baseline(parts: list[bytes]) -> int:
    data = b"".join(parts)
    n = 0
    for block in data.split(b"\r\n\r\n"):
        if block:
            [line.partition(b": ")[::2] for line in block.split(b"\r\n")]
            n += 1
    return n


def measure(fn: Callable[[list[bytes]], int], parts: list[bytes], runs: int) -> tuple[float, int]:
    rates = []
    n = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        n = fn(parts)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=30)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    data = stream(args.copies)
    parts = chunks(data)
    rows = {name: measure(fn, parts, args.runs) for name, fn in (
        ("baseline (stdlib split)", baseline), ("panoramisk", panoramisk),
        ("bridge (parse all)", bridge_full), ("bridge (early filter)", bridge_filtered),
        ("bridge replay (+translate)", bridge_replay))}  # fmt: skip
    pano = rows["panoramisk"][0]
    base = rows["baseline (stdlib split)"][0]
    print(f"\n{len(data) / 1e6:.1f} MB, {rows['bridge (parse all)'][1]} messages, median of {args.runs} runs")
    print(f"{'':26} {'messages/s':>12} {'x panoramisk':>13} {'x baseline':>11}")
    for name, (rate, _) in rows.items():
        print(f"{name:26} {rate:12,.0f} {rate / pano:13.2f} {rate / base:11.2f}")


if __name__ == "__main__":
    main()
