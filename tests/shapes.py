"""Events compared by what they say, not by their ids and times: the same call flow
recorded twice (live, or through another dialplan profile) gives the same shapes."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from tests.conftest import FIXTURES

#: fields compared as they are; ids, times and lengths only for being there
SAME = ("EventType", "CallFlow", "CallStatus", "CallerIDNum", "CallerIDName", "CalledNumber", "CalledDID",
        "CallerExtensionID", "CalledExtensionID", "Transfered", "Bridged", "RemoteNumber", "ANI", "Tag",
        "Diversion", "ClientApiID", "Message")  # fmt: skip
THERE = ("RecID", "CallBackID")
#: whether a length is zero or not is the outcome; its value is the lab's timing
NONZERO = ("Duration", "BridgedDuration")


def shape(ext: int, event: dict[str, Any]) -> tuple[Any, ...]:
    return (
        int(ext),
        *(str(event.get(k, "")) for k in SAME),
        *(k in event for k in THERE),
        *(int(event.get(k, 0) or 0) > 0 for k in NONZERO),
    )


def components(events: list[tuple[int, dict[str, Any]]]) -> Counter[tuple[tuple[Any, ...], ...]]:
    """Each component (SubCallID; messages by their own id) as the shapes of its events, in
    order (Asterisk orders events of the same millisecond as it likes from one run to the
    next: components are compared as a whole, not their interleaving)."""
    by_sub: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for ext, event in events:
        by_sub[f"{ext}/{event.get('SubCallID')}"].append(shape(ext, event))
    return Counter(tuple(evs) for evs in by_sub.values())


def golden(name: str) -> list[tuple[int, dict[str, Any]]]:
    """A fixture's reviewed events."""
    lines = (FIXTURES / f"{name}.expected.jsonl").read_text(encoding="utf-8").splitlines()
    return [(d["extension_id"], d["event"]) for d in map(json.loads, lines)]


def described(diff: Counter[tuple[tuple[Any, ...], ...]]) -> list[list[dict[str, Any]]]:
    """Components of a difference, each event as its non-empty fields (for a readable failure)."""
    names = ("ext", *SAME, *THERE, *NONZERO)
    return [[{k: v for k, v in zip(names, e, strict=True) if v not in ("", False)} for e in c]
            for c in diff.elements()]  # fmt: skip
