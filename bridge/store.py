"""The embedded store: subscriptions (and, next, the event outbox) in SQLite.

One SQLite file in WAL mode; every write is its own committed transaction before the
call returns, so what the API answered survives a crash. The schema is created on open
and versioned with ``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

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

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
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
