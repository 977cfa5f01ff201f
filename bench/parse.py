"""Benchmark: AMI parsing, ours vs panoramisk's vs a minimal stdlib split, same stream.

    .venv/bin/python bench/parse.py [--copies 10] [--runs 5]

The stream is every fixture in fixtures/ concatenated COPIES times (real Asterisk 22
output), handed over in 64 KiB chunks as from a socket. Contenders, interleaved in each
round (medians of --runs rounds):
  * baseline: bytes.split on the empty line, decode, each line split into a (key, value)
    pair: a header multimap per message, the least any parser must do; and the same
    without decoding or pairs (bytes partition only), for reference;
  * panoramisk: its AMIProtocol.data_received (decode, split, Message.from_line), its
    dispatch replaced by a counter;
  * bridge, parse all: our Framer, then every message parsed into all its pairs;
  * bridge, AMI path: Framer with the filter's C first pass, the early filter, parse:
    what the daemon and replay do before translating (headers are then found on demand);
  * bridge replay: all of `ami-bridge replay` but the JSON output: frame, filter, parse,
    translate (the configuration loaded once, outside the timing).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import baseline_bytes, baseline_multimap, chunks, measure, table  # noqa: E402
from bridge.ami.filter import coarse_filter, early_filter, needs  # noqa: E402
from bridge.ami.message import Framer, parse  # noqa: E402
from bridge.config import load_config  # noqa: E402
from bridge.replay import replay_bytes  # noqa: E402
from bridge.translate import Translator  # noqa: E402

CONFIG = load_config(REPO / "fixtures" / "lab.yaml")
NEEDS = needs(CONFIG)


def stream(copies: int) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((REPO / "fixtures").glob("*.ami"))) * copies


def bridge_full(parts: list[bytes]) -> int:
    framer = Framer()
    n = 0
    for part in parts:
        for block in framer.feed(part):
            parse(block).pairs  # noqa: B018 - every header, as a full parser would
            n += 1
    return n


def bridge_path(parts: list[bytes], messages: int) -> int:
    # what the daemon's protocol does: the framer drops what the C first pass refuses,
    # the early filter decides on the rest, what it keeps is parsed
    framer = Framer()
    want, coarse = early_filter(NEEDS), coarse_filter(NEEDS)
    for part in parts:
        for block in framer.feed(part, coarse):
            if want(block):
                parse(block)
    return messages


def bridge_replay(parts: list[bytes], messages: int) -> int:
    for _ in replay_bytes(Translator(CONFIG), parts):
        pass
    return messages


def panoramisk(parts: list[bytes]) -> int:
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
    proto.log = logging.getLogger("bench")
    for part in parts:
        proto.data_received(part)
    return count[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    data = stream(args.copies)
    parts = chunks(data)
    messages = bridge_full(parts)
    rows = measure({
        "baseline: stdlib split to multimaps": lambda: baseline_multimap(parts),
        "(stdlib split, bytes only)": lambda: baseline_bytes(parts),
        "panoramisk": lambda: panoramisk(parts),
        "bridge: parse all": lambda: bridge_full(parts),
        "bridge: AMI path (filter, parse)": lambda: bridge_path(parts, messages),
        "bridge replay (+ translate)": lambda: bridge_replay(parts, messages),
    }, args.runs)  # fmt: skip
    print(f"\n{len(data) / 1e6:.1f} MB, {messages} messages, median of {args.runs} interleaved runs")
    table(rows, {"panoramisk": "panoramisk", "baseline": "baseline: stdlib split to multimaps"})


if __name__ == "__main__":
    main()
