"""A synthetic AMI stream built from real fixtures: many overlapping calls, realistic mix.

Each call is a copy of a recorded lab flow whose channel ids (Uniqueid, Linkedid and
their Dest twins) and channel names are made unique; the copies' messages are
interleaved so that CONCURRENT calls are in progress at once, as on a busy PBX. The
messages themselves (VarSet, Newexten, RTCP... everything Asterisk sent) are unchanged.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

from bridge.ami.message import is_banner, split_stream

REPO = Path(__file__).resolve().parent.parent
#: the flows of a realistic mix: internal calls, queues, IVR, DIDs, busy, no answer, forwarding
FLOWS = (
    "internal-answered-caller-hangup", "internal-answered-callee-hangup", "internal-busy",
    "internal-noanswer", "queue-local-members", "queue-answered-second-member",
    "inbound-did-recorded", "ivr-to-phone", "forward-external-internal", "outbound-external",
    "voicemail", "blind-transfer-refer",
)  # fmt: skip
#: where a call's tag goes: before an id, and in place of the leading zeros of a channel
#: name's 8-hex counter (which must stay 8 hex: only that is a PJSIP channel's suffix)
_SLOT = re.compile(rb"^(?:Dest)?(?:Uniqueid|Linkedid): ()|^[A-Za-z]*Channel: [^\r\n]*-()00000[0-9a-f]{3}",
                   re.M)  # fmt: skip
#: the counter's digits a tag replaces (so a tag is that many hex digits: 1,048,576 calls)
_TAG_DIGITS = 5


def flow_blocks(name: str) -> list[bytes]:
    """A fixture's messages (the banner and any truncated tail left out)."""
    blocks, _ = split_stream((REPO / "fixtures" / f"{name}.ami").read_bytes())
    return [b for b in blocks if not is_banner(b)]


def slots(block: bytes) -> list[bytes]:
    """``block`` cut where a call's tag goes: ``tag.join(slots(block))`` renders a copy."""
    starts, ends = [0], []
    for m in _SLOT.finditer(block):
        cut = m.start(1) if m.start(1) >= 0 else m.start(2)
        ends.append(cut)
        starts.append(cut if m.start(1) >= 0 else cut + _TAG_DIGITS)
    ends.append(len(block))
    return [block[a:b] for a, b in zip(starts, ends, strict=True)]


def tag(call: int) -> bytes:
    """What makes call number ``call``'s ids and channel names unique."""
    if call >= 16**_TAG_DIGITS:
        raise ValueError(f"at most {16**_TAG_DIGITS:,} calls in one synthetic stream")
    return b"%05x" % call


def unique(block: bytes, call: int) -> bytes:
    """``block`` as it would be in call number ``call``: ids and channel names made unique."""
    return tag(call).join(slots(block))


def stream(calls: int, concurrent: int, flows: tuple[str, ...] = FLOWS) -> tuple[bytes, int]:
    """``calls`` calls, ``concurrent`` at a time, interleaved message by message.

    Returns the stream and its number of messages.
    """
    templates = [[slots(b) for b in flow_blocks(name)] for name in flows]
    out: list[bytes] = []
    live: deque[tuple[int, int, int]] = deque()  # (call, flow, next message)
    started = 0
    while started < calls or live:
        while len(live) < concurrent and started < calls:
            live.append((started, started % len(templates), 0))
            started += 1
        call, flow, i = live.popleft()
        out.append(tag(call).join(templates[flow][i]))
        if i + 1 < len(templates[flow]):
            live.append((call, flow, i + 1))
    return b"".join(out), len(out)
