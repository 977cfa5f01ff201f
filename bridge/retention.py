"""The store's retention: prune what ``store.retention`` no longer keeps, in small batches.

One :class:`Pruner` pass (:meth:`Pruner.run`) takes, in this order:

1. expired API tokens;
2. failed deliveries older than ``failed`` (by their event's time), walking the failed
   deliveries' own index from the oldest and stopping at the first younger one;
3. calls that began before the longer of ``history`` and ``delivered`` (the calls' time
   index, oldest first), each with its events, their deliveries, the extensions it
   reached and its recordings' rows, unless one of its events still has a pending or a
   failed delivery (then the whole call stays, and is looked at again next pass);
4. events that are no call's (SIP messages, events without CallID) older than
   ``delivered``, walking the events from a cursor kept in ``meta`` (each event is read
   once in its life, not once per pass); those held by a pending or failed delivery
   are remembered and looked at again each pass.

Every delivery pruned takes its attempts (``delivery_attempts``) with it.
Pending deliveries and their events are never pruned. Each batch is one short write
transaction (its reads inside it, so nothing changes between choosing and deleting) on
the pruner's own connection, followed by a pause that lets the pipeline's commits in.
Freed pages are reused by SQLite for new rows, so the file stops growing once the
retention window is full (``bench/soak_store.py`` measures it). A recording's file is
never deleted here, only its row.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bridge.config import Retention
from bridge.store import DB_ERRORS

log = logging.getLogger(__name__)

#: rows chosen per transaction (calls per transaction: a tenth of it, ~7 events each):
#: a transaction of a few milliseconds
BATCH = 1000
#: seconds the pruner sleeps between two transactions, at least (and at least as long as
#: the transaction took): the pipeline's turn. A commit that found the pruner's lock is
#: in SQLite's busy handler, which looks again after 1, 3, 8, 18, 33... ms
PAUSE = 0.01
#: the ``meta`` key of the non-call events' cursor
CURSOR_KEY = "retention.cursor"
#: what a pass counts (``ami_bridge_store_pruned_total{kind}``)
KINDS = ("events", "deliveries", "attempts", "calls", "reached", "records", "tokens")


def _marks(n: int) -> str:
    return ",".join("?" * n)


class Pruner:
    """Prunes one store file on a connection of its own (made here from ``path``)."""

    def __init__(self, path: str, retention: Retention, batch: int = BATCH, pause: float = PAUSE,
                 db: Any = None) -> None:  # fmt: skip
        """``db``: a connection made for it (a PostgreSQL store's, bridge/store_pg.py);
        None: one to the SQLite file at ``path``."""
        self.retention = retention
        self.batch = batch
        self.pause = pause
        if db is None:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA foreign_keys=ON")
        self.db = db
        #: rows deleted since start, by kind
        self.pruned: Counter[str] = Counter({k: 0 for k in KINDS})
        #: unix time the last pass ended, and how long it took (seconds)
        self.last_at: float | None = None
        self.last_seconds: float | None = None
        self.passes = 0
        #: seconds spent in passes since start
        self.busy = 0.0
        #: non-call events the cursor passed while a pending/failed delivery held them
        self._held: set[int] = set()
        self._cursor: int | None = None

    def close(self) -> None:
        self.db.close()

    def run(self, now: float) -> Counter[str]:
        """One pass at unix time ``now``: every batch there is to prune. Returns its counts."""
        started = time.monotonic()
        done: Counter[str] = Counter()
        r = self.retention
        self._tokens(now, done)
        if r.failed is not None:
            self._failed(_us(now - r.failed), done)
        if r.calls is not None:
            self._calls(_us(now - r.calls), done)
        if r.delivered is not None:
            self._loose_events(_us(now - r.delivered), done)
        self.pruned.update(done)
        self.passes += 1
        self.last_at = now
        self.last_seconds = time.monotonic() - started
        self.busy += self.last_seconds
        if sum(done.values()):
            what = ", ".join(f"{n} {k}" for k, n in sorted(done.items()) if n)
            log.info("store retention: pruned %s in %.2f s", what, self.last_seconds)
        return done

    # ---- the transactions ---------------------------------------------------------------

    def _tx(self, body: Callable[[], bool]) -> bool:
        """Run ``body`` in one write transaction, then pause; returns what ``body`` did
        (True: there may be more to do)."""
        began = time.monotonic()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            more = body()
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        if self.pause:
            time.sleep(max(self.pause, time.monotonic() - began))
        return more

    def _tokens(self, now: float, done: Counter[str]) -> None:
        def body() -> bool:
            done["tokens"] += self.db.execute("DELETE FROM api_tokens WHERE expires_at <= ?", (now,)).rowcount
            return False

        self._tx(body)

    def _failed(self, cutoff: int, done: Counter[str]) -> None:
        after = 0

        def body() -> bool:
            nonlocal after
            rows = self.db.execute(
                "SELECT d.id, COALESCE(e.event_time, 0) FROM deliveries d JOIN events e ON e.id = d.event_id "
                "WHERE d.state = 'failed' AND d.id > ? ORDER BY d.id LIMIT ?",
                (after, self.batch),
            ).fetchall()
            old = [r[0] for r in rows if r[1] < cutoff]
            if old:
                done["attempts"] += self._delete("DELETE FROM delivery_attempts WHERE delivery_id IN", old)
                gone = self._delete("DELETE FROM deliveries WHERE state = 'failed' AND id IN", old)
                done["deliveries"] += gone
                after = old[-1]
            return len(old) == len(rows) == self.batch  # stop at the first younger one

        while self._tx(body):
            pass

    def _calls(self, cutoff: int, done: Counter[str]) -> None:
        after: tuple[int, str] = (-(2**62), "")
        size = max(1, self.batch // 10)

        def body() -> bool:
            nonlocal after
            rows = self.db.execute(
                "SELECT init_time, call_id FROM calls WHERE init_time < ? AND (init_time, call_id) > (?, ?) "
                "ORDER BY init_time, call_id LIMIT ?",
                (cutoff, *after, size),
            ).fetchall()
            if not rows:
                return False
            after = (rows[-1][0], rows[-1][1])
            ids = [r[1] for r in rows]
            held = {r[0] for r in self.db.execute(_HELD_CALLS.format(_marks(len(ids))), ids)}
            free = [c for c in ids if c not in held]
            if free:
                for kind, statement in _CALL_ROWS:
                    done[kind] += self.db.execute(statement.format(_marks(len(free))), free).rowcount
            return len(rows) == size

        while self._tx(body):
            pass

    def _loose_events(self, cutoff: int, done: Counter[str]) -> None:
        """Events outside any call still kept, older than ``cutoff``: the held ones again,
        then on from the cursor to the first event that is not older."""

        def held() -> bool:
            ids = sorted(self._held)[: self.batch]
            rows = self.db.execute(f"SELECT {_LOOSE} WHERE e.id IN ({_marks(len(ids))})", ids).fetchall()
            self._held.difference_update(ids)
            self._prune_loose(rows, cutoff, done)
            return False

        if self._held:
            self._tx(held)

        def walk() -> bool:
            if self._cursor is None:
                row = self.db.execute("SELECT value FROM meta WHERE key = ?", (CURSOR_KEY,)).fetchone()
                self._cursor = int(row[0]) if row else 0
            rows = self.db.execute(
                f"SELECT {_LOOSE} WHERE e.id > ? ORDER BY e.id LIMIT ?", (self._cursor, self.batch)
            ).fetchall()
            young = next((i for i, r in enumerate(rows) if r[1] >= cutoff), None)
            taken = rows if young is None else rows[:young]
            if taken:
                self._prune_loose(taken, cutoff, done)
                self._cursor = taken[-1][0]
                # a restart forgets the held events: it walks again from the oldest of them
                keep = min(self._held, default=self._cursor + 1) - 1
                self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                (CURSOR_KEY, str(keep).encode()))  # fmt: skip
            return young is None and len(rows) == self.batch

        while self._tx(walk):
            pass

    def _prune_loose(self, rows: Iterable[Sequence[Any]], cutoff: int, done: Counter[str]) -> None:
        """Delete the rows (of ``_LOOSE``) that are old, no call's and not held; remember
        the held ones."""
        gone = []
        for event_id, event_time, in_call, holding in rows:
            if in_call or event_time >= cutoff:
                continue  # the call's pruning takes it (or it is not old yet)
            if holding:
                self._held.add(event_id)
            else:
                gone.append(event_id)
        if gone:
            done["attempts"] += self.db.execute(_ATTEMPTS_OF_EVENTS.format(_marks(len(gone))), gone).rowcount
            done["deliveries"] += self._delete("DELETE FROM deliveries WHERE event_id IN", gone)
            done["events"] += self._delete("DELETE FROM events WHERE id IN", gone)

    def _delete(self, statement: str, ids: list[int]) -> int:
        return int(self.db.execute(f"{statement} ({_marks(len(ids))})", ids).rowcount)


#: an event as the cursor sees it: (id, time, whether a call row has it, whether a
#: pending or failed delivery holds it)
_LOOSE = (
    "e.id, COALESCE(e.event_time, 0), "
    "e.call_id IS NOT NULL AND EXISTS (SELECT 1 FROM calls c WHERE c.call_id = e.call_id), "
    "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state IN ('pending', 'failed')) "
    "FROM events e"
)


#: the calls (of a batch) whose events a pending or failed delivery still holds
_HELD_CALLS = (
    "SELECT DISTINCT e.call_id FROM events e JOIN deliveries d ON d.event_id = e.id "
    "WHERE e.call_id IN ({}) AND d.state IN ('pending', 'failed')"
)
#: a pruned call's rows, children first (the counter each adds to)
_CALL_ROWS = (
    (
        "attempts",
        "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT d.id FROM deliveries d "
        "JOIN events e ON e.id = d.event_id WHERE e.call_id IN ({}))",
    ),
    ("deliveries", "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM events WHERE call_id IN ({}))"),
    ("events", "DELETE FROM events WHERE call_id IN ({})"),
    ("reached", "DELETE FROM call_extensions WHERE call_id IN ({})"),
    ("records", "DELETE FROM records WHERE call_id IN ({})"),
    ("calls", "DELETE FROM calls WHERE call_id IN ({})"),
)


#: the attempts of the deliveries of some events (``... IN (ids)``)
_ATTEMPTS_OF_EVENTS = (
    "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id IN ({}))"
)


def _us(seconds: float) -> int:
    """Unix seconds as the store's times (microseconds)."""
    return int(seconds * 1_000_000)


class PruneThread:
    """Runs a :class:`Pruner` every ``retention.interval`` seconds until :meth:`stop`."""

    def __init__(self, pruner: Pruner, clock: Callable[[], float] = time.time) -> None:
        self.pruner = pruner
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="store-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.pruner.close()

    def _loop(self) -> None:
        failing = False
        interval = self.pruner.retention.interval
        while True:
            try:
                self.pruner.run(self.clock())
                failing = False
            except DB_ERRORS as err:  # a full disk, a locked file: the next pass tries again
                if not failing:
                    log.warning("store retention: pruning failed (%s); retrying every %g s", err, interval)
                failing = True
            except Exception:  # a bug must not end the pruning for good, nor the daemon
                log.exception("store retention: pruning failed; trying again in %g s", interval)
            if self._stop.wait(interval):
                return
