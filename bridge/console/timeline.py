"""Per-minute series for the console's charts: calls, events by type, webhook latency, AMI.

Pure: every method takes the time (unix seconds) it is about; nothing reads a clock.
Memory is bounded: ``minutes`` buckets (older ones are dropped as time moves on), at
most :data:`LATENCY_SAMPLES` latencies kept per minute, and a bounded set of the calls
already counted.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

#: latencies kept per minute for its percentiles (a reservoir past that: every n-th)
LATENCY_SAMPLES = 2000
#: CallIDs remembered as already counted (a call is counted in the minute it is first seen)
SEEN_CALLS = 200_000


@dataclass(slots=True)
class _Minute:
    events: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    delivered: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    latency_seen: int = 0
    reconnects: int = 0
    #: seconds of this minute AMI was not logged in (counted when the state changes)
    ami_down: float = 0.0


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) of ``values`` by nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


class Timeline:
    """What happened in each of the last ``minutes`` minutes."""

    def __init__(self, minutes: int = 360) -> None:
        if minutes < 1:
            raise ValueError("minutes must be >= 1")
        self.minutes = minutes
        self._buckets: dict[int, _Minute] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        #: AMI logged in now, and since when (unix seconds)
        self.ami_up = False
        self._ami_since: float | None = None
        #: when the AMI state was first told (before it, the share of AMI up is unknown)
        self._ami_first: float | None = None
        #: logged in at least once (a login after that is a reconnect)
        self._logged_in = False

    def _bucket(self, t: float) -> _Minute:
        minute = int(t // 60)
        b = self._buckets.get(minute)
        if b is None:
            b = self._buckets[minute] = _Minute()
            oldest = minute - self.minutes
            for m in [m for m in self._buckets if m <= oldest]:
                del self._buckets[m]
        return b

    def event(self, event_type: str, call_id: Any, t: float) -> None:
        """An event emitted; a call is counted in the minute its first event is."""
        b = self._bucket(t)
        b.events[event_type] += 1
        counted = not isinstance(call_id, str) or not call_id or call_id in self._seen
        if not counted and not event_type.startswith("message-"):
            assert isinstance(call_id, str)
            self._seen[call_id] = None
            b.calls += 1
            if len(self._seen) > SEEN_CALLS:
                self._seen.popitem(last=False)

    def delivery(self, ok: bool, latency: float | None, t: float) -> None:
        """A delivery attempt's outcome; ``latency`` from the event to the receiver's 2xx."""
        b = self._bucket(t)
        if not ok:
            b.failed += 1
            return
        b.delivered += 1
        if latency is not None:
            b.latency_seen += 1
            if len(b.latencies) < LATENCY_SAMPLES:
                b.latencies.append(latency)
            else:  # a busy minute: later samples overwrite earlier ones in turn
                b.latencies[b.latency_seen % LATENCY_SAMPLES] = latency

    def ami(self, up: bool, t: float) -> None:
        """AMI logged in (``up``) or lost; a login after the first is a reconnect. The time
        it is not logged in counts as down, from the first call on."""
        if self._ami_first is None:
            self._ami_first = t
        elif up == self.ami_up:
            return
        if up:
            if not self.ami_up and self._ami_since is not None:
                self._add_down(self._ami_since, t)
            if self._logged_in:
                self._bucket(t).reconnects += 1
            self._logged_in = True
        self.ami_up = up
        self._ami_since = t

    def _add_down(self, start: float, end: float) -> None:
        lo = max(start, end - self.minutes * 60)
        while lo < end:
            edge = min(end, (int(lo // 60) + 1) * 60)
            self._bucket(lo).ami_down += edge - lo
            lo = edge

    def series(self, now: float, minutes: int | None = None) -> dict[str, Any]:
        """The last ``minutes`` minutes up to ``now``, oldest first, one value per minute:
        ``t`` (the minute's start, unix seconds), ``calls``, ``events`` (per type),
        ``delivered``, ``failed``, ``latency_p50``/``latency_p95`` (seconds, None without
        deliveries), ``reconnects`` and ``ami_up`` (the share of the minute AMI was up)."""
        n = min(self.minutes, minutes or self.minutes)
        last = int(now // 60)
        span = range(last - n + 1, last + 1)
        down_since = None if self.ami_up else self._ami_since
        types = sorted({k for b in self._buckets.values() for k in b.events})
        out: dict[str, Any] = {"t": [], "calls": [], "events": {k: [] for k in types}, "delivered": [],
                               "failed": [], "latency_p50": [], "latency_p95": [], "reconnects": [],
                               "ami_up": []}  # fmt: skip
        for m in span:
            b = self._buckets.get(m) or _Minute()
            out["t"].append(m * 60)
            out["calls"].append(b.calls)
            for k in types:
                out["events"][k].append(b.events.get(k, 0))
            out["delivered"].append(b.delivered)
            out["failed"].append(b.failed)
            out["latency_p50"].append(percentile(b.latencies, 0.5))
            out["latency_p95"].append(percentile(b.latencies, 0.95))
            out["reconnects"].append(b.reconnects)
            start, end = m * 60, min(now, m * 60 + 60)
            down = b.ami_down
            if down_since is not None and down_since < end:
                down += end - max(start, down_since)  # the outage going on now
            length = max(end - start, 1e-9)
            known = self._ami_first is not None and end > self._ami_first and end > start
            if known and self._ami_first is not None and self._ami_first > start:
                length = end - self._ami_first  # the minute the bridge started in: from then on
            out["ami_up"].append(round(max(0.0, 1 - down / length), 3) if known else None)
        return out
