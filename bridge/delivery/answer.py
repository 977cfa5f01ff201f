"""What a receiver answered to one webhook request: status, Retry-After, the body's start.

Both HTTP clients (the built-in one and aiohttp's) return an :class:`Answer`; the
dispatcher stores the first KiB of the body with the attempt and honours
``retry_after`` on 429 and 503.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

#: how much of an answer's body an attempt keeps
BODY_KEPT = 1024


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    #: seconds the receiver asked us to wait (``Retry-After``), None when absent or unreadable
    retry_after: float | None = None
    #: the first bytes of the body (at most the request's ``max_body``)
    body: bytes = b""


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (unix seconds): delta-seconds (``120``) or an
    HTTP-date (``Wed, 21 Oct 2015 07:28:00 GMT``); None when absent or unreadable; never
    negative."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
