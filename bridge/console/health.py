"""Each subscription's delivery health: what operators ask first about a failing webhook.

Per subscription, the attempts of the last ``window`` seconds (at most ``keep`` of
them) give the success rate and the latency percentiles; the last error, when it
happened and since when the subscription has been failing without a success are kept
apart from them. Pure: every method is told the time (unix seconds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bridge.console.timeline import percentile


@dataclass(slots=True)
class _Attempt:
    at: float
    ok: bool
    #: seconds the request took (not from the event: the receiver's own speed)
    took: float
    status: int | None


@dataclass(slots=True)
class _Health:
    attempts: deque[_Attempt] = field(default_factory=deque)
    last_error: str | None = None
    last_error_at: float | None = None
    last_status: int | None = None
    last_ok_at: float | None = None
    #: the first failure after the last success (None while it succeeds)
    failing_since: float | None = None
    total_ok: int = 0
    total_failed: int = 0


class DeliveryHealth:
    """Recent attempts per subscription id."""

    def __init__(self, window: float = 3600.0, keep: int = 2000, max_subscriptions: int = 100_000) -> None:
        self.window, self.keep, self.max_subscriptions = window, keep, max_subscriptions
        self._subs: dict[int, _Health] = {}

    def attempt(self, sub_id: int, at: float, ok: bool, took: float, status: int | None,
                error: str | None) -> None:  # fmt: skip
        """One attempt: ``ok`` for a 2xx; otherwise ``status`` and/or ``error`` say why."""
        h = self._subs.get(sub_id)
        if h is None:
            if len(self._subs) >= self.max_subscriptions:
                self._subs.pop(next(iter(self._subs)))
            h = self._subs[sub_id] = _Health()
        h.attempts.append(_Attempt(at, ok, took, status))
        while len(h.attempts) > self.keep or h.attempts[0].at < at - self.window:
            h.attempts.popleft()
        if ok:
            h.last_ok_at, h.failing_since = at, None
            h.total_ok += 1
        else:
            h.last_error = error or (f"HTTP {status}" if status is not None else "failed")
            h.last_error_at, h.last_status = at, status
            if h.failing_since is None:
                h.failing_since = at
            h.total_failed += 1

    def forget(self, sub_id: int) -> None:
        self._subs.pop(sub_id, None)

    def view(self, sub_id: int, now: float) -> dict[str, Any]:
        """The subscription's health over the window up to ``now``: ``attempts``,
        ``success_rate`` (0..1, None without attempts), ``latency_p50``/``latency_p95``
        (seconds per request), ``last_error``, ``last_error_at``, ``last_status``,
        ``last_ok_at``, ``failing_since``."""
        h = self._subs.get(sub_id)
        if h is None:
            return {"attempts": 0, "success_rate": None, "latency_p50": None, "latency_p95": None,
                    "last_error": None, "last_error_at": None, "last_status": None, "last_ok_at": None,
                    "failing_since": None}  # fmt: skip
        recent = [a for a in h.attempts if a.at >= now - self.window]
        ok = [a.took for a in recent if a.ok]
        return {
            "attempts": len(recent),
            "success_rate": round(len(ok) / len(recent), 4) if recent else None,
            "latency_p50": percentile(ok, 0.5),
            "latency_p95": percentile(ok, 0.95),
            "last_error": h.last_error,
            "last_error_at": h.last_error_at,
            "last_status": h.last_status,
            "last_ok_at": h.last_ok_at,
            "failing_since": h.failing_since,
        }
