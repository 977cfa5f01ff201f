"""The console's logins: a random session id in an HttpOnly cookie, and its CSRF token.

The id is kept as its SHA-256 only (a dump of memory gives no usable cookie); a session
ends at its expiry (never later than the token it was opened with) or at logout. At
most ``limit`` sessions live at once: past that the oldest ends. Pure: the time is
passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from bridge.api.common import Principal


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    expires_at: float
    #: sent back by the page in ``X-CSRF-Token`` with every action
    csrf: str
    #: the SHA-256 of the static token it was opened with (a reload may remove that token)
    token_digest: bytes | None = None

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(self.csrf.encode(), given.encode())


def _key(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


class Sessions:
    """Open console sessions by the digest of their id."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._open: OrderedDict[bytes, Session] = OrderedDict()

    def open(self, principal: Principal, now: float, ttl: float,
             token_digest: bytes | None = None) -> tuple[str, Session]:  # fmt: skip
        """A new session for ``principal``: (its id, for the cookie; the session)."""
        expires = now + ttl if principal.expires_at is None else min(now + ttl, principal.expires_at)
        session_id = secrets.token_urlsafe(32)
        session = Session(principal, expires, secrets.token_urlsafe(24), token_digest)
        self._open[_key(session_id)] = session
        while len(self._open) > self.limit:
            self._open.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session of a cookie's id, or None (unknown, ended or expired)."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._open.get(key)
        if session is not None and session.expires_at <= now:
            del self._open[key]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._open.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._open)
