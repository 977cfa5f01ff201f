"""Benchmark: AMI messages/s through the translator, on a busy PBX's worth of calls.

    .venv/bin/python bench/translate.py [--calls 3000] [--concurrent 1000] [--runs 5]

The stream (bench/synthetic.py) is CALLS copies of twelve real lab flows (internal,
busy, no answer, queues, DID with recording, IVR, forwarding, outbound, voicemail,
blind transfer), CONCURRENT of them overlapping, every message Asterisk sent kept.
Contenders, interleaved in each round (medians of --runs rounds):
  * baseline: the stream cut into messages and decoded into (key, value) multimaps
    (bench/common.py), and the bytes-only variant for reference;
  * bridge replay: frame, early filter, parse, translate: `ami-bridge replay` without
    its JSON output (the configuration loaded once, outside the timing);
  * translator alone: the same messages already framed, filtered and parsed.
The events produced are checked against the fixtures' reviewed golden files (so many
events per copy of each flow): a benchmark of a translator that went wrong is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import synthetic  # noqa: E402
from bench.common import baseline_bytes, baseline_multimap, chunks, measure, table  # noqa: E402
from bridge.ami.filter import needs, wanted  # noqa: E402
from bridge.ami.message import Framer, is_banner, parse  # noqa: E402
from bridge.config import load_config  # noqa: E402
from bridge.replay import replay_bytes  # noqa: E402
from bridge.translate import Translator  # noqa: E402

CONFIG = load_config(REPO / "fixtures" / "lab.yaml")


def expected_events(calls: int) -> int:
    per_flow = [
        len((REPO / "fixtures" / f"{name}.expected.jsonl").read_text().splitlines())
        for name in synthetic.FLOWS
    ]
    return sum(per_flow[c % len(per_flow)] for c in range(calls))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--concurrent", type=int, default=1000)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    data, messages = synthetic.stream(args.calls, args.concurrent)
    parts = chunks(data)
    need = needs(CONFIG)
    framer = Framer()
    kept = [b for part in parts for b in framer.feed(part) if wanted(b, need) and not is_banner(b)]
    events = [0]

    def replay() -> int:
        events[0] = sum(1 for _ in replay_bytes(Translator(CONFIG), parts))
        return messages

    def translator_alone() -> int:
        msgs = [parse(b) for b in kept]  # parsing is lazy: this costs next to nothing
        t = Translator(CONFIG)
        for msg in msgs:
            t.feed(msg)
        return len(msgs)

    rows = measure({
        "baseline: stdlib split to multimaps": lambda: baseline_multimap(parts),
        "(stdlib split, bytes only)": lambda: baseline_bytes(parts),
        "bridge replay (all messages)": replay,
        "translator alone (kept messages)": translator_alone,
    }, args.runs)  # fmt: skip
    want = expected_events(args.calls)
    if events[0] != want:
        sys.exit(
            f"the translator gave {events[0]} events, the golden files say {want}: not benchmarking that"
        )
    size = f"{len(data) / 1e6:.1f} MB"
    print(f"\n{args.calls} calls ({args.concurrent} at once), {size}, {messages} messages,",
          f"{len(kept)} kept by the filter, {events[0]} events; median of {args.runs} runs")  # fmt: skip
    table(rows, {"baseline": "baseline: stdlib split to multimaps"})


if __name__ == "__main__":
    main()
