"""The embedded store: subscriptions (and, next, the event outbox) in SQLite.

One SQLite file in WAL mode; every write is committed before the call returns, so
what the API answered and every event handed to the outbox survive the process dying
(``synchronous = normal``, the default) or even a power loss (``full``). The schema is created on open
and versioned with ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    extension_id INTEGER NOT NULL,
    event_type   TEXT    NOT NULL,
    url          TEXT    NOT NULL,
    method       TEXT    NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT
);
CREATE INDEX IF NOT EXISTS subscriptions_ext ON subscriptions (extension_id, event_type);
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    extension_id INTEGER NOT NULL,
    event_type   TEXT    NOT NULL,
    payload      TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        INTEGER NOT NULL REFERENCES events (id),
    subscription_id INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',   -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         REAL    NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (state, subscription_id, id);
"""


class StoreError(Exception):
    """The store cannot be opened or written (path, permissions, full disk...)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    extension_id: int
    event_type: str
    url: str
    method: str
    enabled: bool = True

    def public(self) -> dict[str, object]:
        """The Telphin representation: ``{url, method, event_type, id}``."""
        return {"url": self.url, "method": self.method, "event_type": self.event_type, "id": self.id}


class Store:
    """Synchronous SQLite access; callers run it where blocking briefly is acceptable."""

    def __init__(self, path: str | Path, synchronous: str = "normal") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives the process dying (kill -9); FULL also
            # survives power loss, at the price of an fsync per commit.
            self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as err:
            raise StoreError(f"cannot open the store {self.path}: {err}") from err

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def _sub(row: tuple[int, int, str, str, str, int]) -> Subscription:
        return Subscription(row[0], row[1], row[2], row[3], row[4], bool(row[5]))

    _COLS = "id, extension_id, event_type, url, method, enabled"

    def add_subscription(self, extension_id: int, event_type: str, url: str, method: str) -> Subscription:
        try:
            cur = self.db.execute(
                "INSERT INTO subscriptions (extension_id, event_type, url, method) VALUES (?, ?, ?, ?)",
                (extension_id, event_type, url, method),
            )
        except sqlite3.Error as err:
            raise StoreError(f"cannot save the subscription in {self.path}: {err}") from err
        assert cur.lastrowid is not None
        return Subscription(cur.lastrowid, extension_id, event_type, url, method)

    def subscriptions(self, extension_id: int) -> list[Subscription]:
        rows = self.db.execute(
            f"SELECT {self._COLS} FROM subscriptions WHERE extension_id = ? ORDER BY id", (extension_id,)
        )
        return [self._sub(r) for r in rows]

    def subscription(self, extension_id: int, sub_id: int) -> Subscription | None:
        row = self.db.execute(
            f"SELECT {self._COLS} FROM subscriptions WHERE extension_id = ? AND id = ?",
            (extension_id, sub_id),
        ).fetchone()
        return self._sub(row) if row else None

    def update_subscription(self, sub: Subscription) -> None:
        self.db.execute(
            "UPDATE subscriptions SET event_type = ?, url = ?, method = ?, "
            "enabled = 1, disabled_reason = NULL "
            "WHERE id = ? AND extension_id = ?",
            (sub.event_type, sub.url, sub.method, sub.id, sub.extension_id),
        )

    def delete_subscription(self, extension_id: int, sub_id: int) -> bool:
        cur = self.db.execute(
            "DELETE FROM subscriptions WHERE extension_id = ? AND id = ?", (extension_id, sub_id)
        )
        return cur.rowcount > 0

    def delete_subscriptions(self, extension_id: int) -> int:
        return self.db.execute("DELETE FROM subscriptions WHERE extension_id = ?", (extension_id,)).rowcount

    def count(self, extension_id: int | None = None) -> int:
        if extension_id is None:
            row = self.db.execute("SELECT COUNT(*) FROM subscriptions").fetchone()
        else:
            row = self.db.execute(
                "SELECT COUNT(*) FROM subscriptions WHERE extension_id = ?", (extension_id,)
            ).fetchone()
        return int(row[0])

    def matching(self, extension_id: int, event_type: str) -> list[Subscription]:
        """Enabled subscriptions that an event of this extension and type goes to."""
        rows = self.db.execute(
            f"SELECT {self._COLS} FROM subscriptions "
            "WHERE extension_id = ? AND event_type = ? AND enabled = 1 ORDER BY id",
            (extension_id, event_type),
        )
        return [self._sub(r) for r in rows]

    # ---- outbox ----------------------------------------------------------------------

    def enqueue(self, extension_id: int, event: dict[str, Any]) -> list[int]:
        """Commit an event and one pending delivery per matching subscription, atomically.

        Returns the delivery ids. This is the durability point: nothing is sent before it.
        """
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                cur = self.db.execute(
                    "INSERT INTO events (extension_id, event_type, payload) VALUES (?, ?, ?)",
                    (extension_id, event["EventType"], json.dumps(event, ensure_ascii=False)),
                )
                event_id = cur.lastrowid
                ids = []
                for sub in self.matching(extension_id, event["EventType"]):
                    c = self.db.execute(
                        "INSERT INTO deliveries (event_id, subscription_id) VALUES (?, ?)", (event_id, sub.id)
                    )
                    assert c.lastrowid is not None
                    ids.append(c.lastrowid)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            raise StoreError(f"cannot commit the event to {self.path}: {err}") from err
        return ids

    def count_deliveries(self, state: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM deliveries WHERE state = ?", (state,)).fetchone()[0])

    def writable(self) -> str | None:
        """None if a write transaction can be taken now, else why not."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("ROLLBACK")
        except sqlite3.Error as err:
            return str(err)
        return None

    def pending_subscriptions(self) -> list[int]:
        rows = self.db.execute("SELECT DISTINCT subscription_id FROM deliveries WHERE state = 'pending'")
        return [r[0] for r in rows]

    def next_pending(self, subscription_id: int) -> Delivery | None:
        """The oldest pending delivery of a subscription (deliveries go out in order)."""
        row = self.db.execute(
            "SELECT d.id, d.event_id, d.subscription_id, d.attempts, d.next_at, e.payload "
            "FROM deliveries d JOIN events e ON e.id = d.event_id "
            "WHERE d.subscription_id = ? AND d.state = 'pending' ORDER BY d.id LIMIT 1",
            (subscription_id,),
        ).fetchone()
        if row is None:
            return None
        return Delivery(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))

    def subscription_by_id(self, sub_id: int) -> Subscription | None:
        row = self.db.execute(f"SELECT {self._COLS} FROM subscriptions WHERE id = ?", (sub_id,)).fetchone()
        return self._sub(row) if row else None

    def mark(self, delivery_id: int, state: str, attempts: int, next_at: float = 0.0,
             status: int | None = None, error: str | None = None) -> None:  # fmt: skip
        self.db.execute(
            "UPDATE deliveries SET state = ?, attempts = ?, next_at = ?, last_status = ?, last_error = ? "
            "WHERE id = ?",
            (state, attempts, next_at, status, error, delivery_id),
        )

    def disable_subscription(self, sub_id: int, reason: str) -> None:
        self.db.execute(
            "UPDATE subscriptions SET enabled = 0, disabled_reason = ? WHERE id = ?", (reason, sub_id)
        )

    def deliveries(self, state: str) -> list[dict[str, Any]]:
        """Deliveries in a state, for inspection (failed ones, mostly)."""
        rows = self.db.execute(
            "SELECT id, event_id, subscription_id, attempts, last_status, last_error FROM deliveries "
            "WHERE state = ? ORDER BY id",
            (state,),
        )
        keys = ("id", "event_id", "subscription_id", "attempts", "last_status", "last_error")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def retry_failed(self, delivery_ids: list[int] | None = None) -> int:
        """Put failed deliveries back in the queue (all of them, or those listed)."""
        if delivery_ids is None:
            return self.db.execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, next_at = 0 WHERE state = 'failed'"
            ).rowcount
        marks = ",".join("?" * len(delivery_ids))
        return self.db.execute(
            f"UPDATE deliveries SET state = 'pending', attempts = 0, next_at = 0 "
            f"WHERE state = 'failed' AND id IN ({marks})",
            delivery_ids,
        ).rowcount


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    event_id: int
    subscription_id: int
    attempts: int
    next_at: float
    event: dict[str, Any]

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this delivery."""
        return f"{self.event_id}-{self.subscription_id}"
