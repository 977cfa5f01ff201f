"""The embedded store: subscriptions and the event outbox in SQLite.

One SQLite file in WAL mode; every write is committed before the call returns, so
what the API answered and every event handed to the outbox survive the process dying
(``synchronous = normal``, the default) or even a power loss (``full``). The schema is created on open
and versioned with ``PRAGMA user_version``.

The subscriptions are also kept in memory (every event is matched against them): the
copy is dropped by each method that writes a subscription, and when another process has
written the file (``PRAGMA data_version``, checked once per :meth:`Store.enqueue_many`,
under the write lock).
:meth:`Store.enqueue_many` commits a whole batch of events with their deliveries in one
transaction and returns the deliveries, so the dispatcher can send them without reading
them back; :meth:`Store.mark_many` records many delivery outcomes in one transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from bridge.config import Retention, StoreConfig
    from bridge.retention import Pruner, PruneThread
    from bridge.translate.model import Recording

log = logging.getLogger(__name__)

#: 2: the outbox's index covers only pending deliveries (and failed ones have their own),
#: so marking a delivery delivered takes its row out of the index instead of moving it;
#: 3: the API clients' tokens (``api_tokens``); the call history (``events.call_id`` and
#: ``event_time``, ``calls``, ``call_extensions``) and the recordings (``records``), with a
#: version-2 store's events indexed on opening;
#: 4 (retention): ``deliveries_by_event`` and ``records_by_call``, so that pruning a call
#: or an event finds its rows (and SQLite's foreign-key check on deleting an event) by
#: index; a version-3 store gets them on opening (the CREATE INDEX IF NOT EXISTS below);
#: 5 (issue 18): per-subscription signing secrets, rate limit and ordering (_SUBSCRIPTIONS_5),
#: ``delivery_attempts`` (every attempt) and ``subscriptions.failing_since``; a version-4
#: store gets them on opening (_SUBSCRIPTIONS_5, _UPGRADE_5_RETRY)
#: 6 (issue 19, cluster): ``events.server``, the ``ami.name`` of the Asterisk an event
#: came from (the PostgreSQL store also gets the cluster's tables: bridge/store_pg.py)
SCHEMA_VERSION = 6
#: the migrations after version 5, in order: (the version it brings a store to, its SQL),
#: run on opening a store below it (SCHEMA_VERSION is the last one's; bridge/store_pg.py's
#: MIGRATIONS gets the same version)
UPGRADES: tuple[tuple[int, str], ...] = ((6, "ALTER TABLE events ADD COLUMN server TEXT"),)
SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    extension_id INTEGER NOT NULL,
    event_type   TEXT    NOT NULL,
    url          TEXT    NOT NULL,
    method       TEXT    NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    failing_since REAL
);
CREATE INDEX IF NOT EXISTS subscriptions_ext ON subscriptions (extension_id, event_type);
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    extension_id INTEGER NOT NULL,
    event_type   TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    call_id      TEXT,
    event_time   INTEGER
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
DROP INDEX IF EXISTS deliveries_pending;  -- version 1's: (state, subscription_id, id), every row
CREATE INDEX IF NOT EXISTS deliveries_pending_by_subscription ON deliveries (subscription_id, id)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_failed ON deliveries (id) WHERE state = 'failed';
CREATE TABLE IF NOT EXISTS api_tokens (        -- issued by POST /oauth/token
    digest     BLOB PRIMARY KEY,               -- SHA-256 of the token (never the token)
    client_id  TEXT NOT NULL,
    expires_at REAL NOT NULL                   -- unix seconds
);
CREATE INDEX IF NOT EXISTS events_by_call ON events (call_id);
CREATE TABLE IF NOT EXISTS calls (             -- one row per call: the call history's index
    call_id   TEXT PRIMARY KEY,
    init_time INTEGER NOT NULL                 -- EventTime of its first event (microseconds)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (init_time);
CREATE TABLE IF NOT EXISTS call_extensions (   -- the extensions each call reached
    call_id      TEXT NOT NULL,
    extension_id INTEGER NOT NULL,
    PRIMARY KEY (call_id, extension_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (           -- a RecID and the file it names
    record_uuid  TEXT PRIMARY KEY,
    extension_id INTEGER NOT NULL,
    call_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,                -- call | voicemail
    name         TEXT NOT NULL,                -- the recording's own name
    path         TEXT,                         -- the file as Asterisk names it
    channel      TEXT,                         -- still recording on it (NULL: complete)
    event_time   INTEGER NOT NULL,
    event        TEXT NOT NULL                 -- the hangup / voicemail event naming it
);
CREATE INDEX IF NOT EXISTS records_by_extension ON records (extension_id, event_time);
CREATE INDEX IF NOT EXISTS records_recording ON records (channel) WHERE channel IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
-- version 4 (retention, bridge/retention.py): a pruned event's deliveries, a pruned call's recordings
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event_id);
CREATE INDEX IF NOT EXISTS records_by_call ON records (call_id);
-- version 5 (issue 18, retries): every delivery attempt, listed per delivery and per
-- subscription, pruned with its delivery (bridge/retention.py)
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id              INTEGER PRIMARY KEY,
    delivery_id     INTEGER NOT NULL,
    subscription_id INTEGER NOT NULL,
    at              REAL    NOT NULL,             -- unix seconds the request was sent
    status          INTEGER,                      -- NULL: no answer (see error)
    latency_ms      REAL    NOT NULL,
    error           TEXT,
    body            BLOB    NOT NULL DEFAULT x''  -- the answer's first KiB
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON delivery_attempts (delivery_id);
CREATE INDEX IF NOT EXISTS attempts_by_subscription ON delivery_attempts (subscription_id, at);
"""
#: version 5 (issue 18): the subscriptions' own signing secrets (``secret``; the one it
#: replaced, ``previous_secret``, still signs until ``previous_until``, unix seconds), rate
#: limit (requests/s, NULL: none) and ordering ("strict": one request at a time, in order;
#: "parallel": up to ``max_in_flight``). Added to a store of any earlier version on opening.
_SUBSCRIPTIONS_5 = (
    ("secret", "TEXT"),
    ("previous_secret", "TEXT"),
    ("previous_until", "REAL NOT NULL DEFAULT 0"),
    ("rate_limit", "REAL"),
    ("ordering", "TEXT NOT NULL DEFAULT 'strict'"),
    ("max_in_flight", "INTEGER NOT NULL DEFAULT 1"),
)
# ---- version 5 (issue 18, retries): a version-4 store's subscriptions get failing_since
#: (unix seconds of the first failed attempt since the last success; NULL: not failing)
_UPGRADE_5_RETRY = "ALTER TABLE subscriptions ADD COLUMN failing_since REAL"
# ---- end of version 5 (issue 18, retries)
#: a version-2 store's events, indexed for the call history (what enqueue_many writes)
_UPGRADE_3 = """
UPDATE events SET call_id = json_extract(payload, '$.CallID'),
                  event_time = json_extract(payload, '$.EventTime') WHERE call_id IS NULL;
INSERT OR IGNORE INTO calls (call_id, init_time)
    SELECT call_id, COALESCE(MIN(event_time), 0) FROM events
    WHERE call_id IS NOT NULL AND event_type NOT LIKE 'message-%' GROUP BY call_id;
INSERT OR IGNORE INTO call_extensions (call_id, extension_id)
    SELECT DISTINCT call_id, extension_id FROM events
    WHERE call_id IS NOT NULL AND event_type NOT LIKE 'message-%';
"""


def _json_encoder() -> Callable[[Any], str]:
    """json.dumps(..., ensure_ascii=False) for the outbox's plain dicts of str and int:
    the C encoder made once (JSONEncoder.encode makes one per call), when there is one."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(ensure_ascii=False).encode
    # (markers None: no cycle check, an event is a flat dict)
    encoder = make(None, None, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
    return lambda obj: "".join(encoder(obj, 0))


_to_json = _json_encoder()


class StoreError(Exception):
    """The store cannot be opened or written (path, permissions, full disk...)."""


class ExtensionConflict(StoreError):
    """An extension id another server of the cluster registered (issue 19)."""


#: what the database drivers raise (SQLite's, PostgreSQL's: bridge/store_pg.py)
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)


def open_store(config: StoreConfig) -> Store:
    """The store ``store:`` configures: SQLite at ``path``, or PostgreSQL at ``url``."""
    if config.url is None:
        return Store(config.path, config.synchronous)
    from bridge.store_pg import PgStore

    return PgStore(config.url, config.password)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    extension_id: int
    event_type: str
    url: str
    method: str
    enabled: bool = True
    #: the subscription's own signing secret (None: the global ``delivery.secret``)
    secret: str | None = dataclasses.field(default=None, repr=False)
    #: the secret it replaced, still signing (with it) until ``previous_until``
    previous_secret: str | None = dataclasses.field(default=None, repr=False)
    previous_until: float = 0.0
    #: requests per second at most (None: no limit)
    rate_limit: float | None = None
    #: "strict": one request at a time, in order; "parallel": up to ``max_in_flight``
    ordering: str = "strict"
    max_in_flight: int = 1

    def public(self) -> dict[str, object]:
        """The Telphin representation ``{url, method, event_type, id}``, with the bridge's
        delivery options when set (so a Telphin client sees Telphin's shape); never a secret."""
        public: dict[str, object] = {"url": self.url, "method": self.method, "event_type": self.event_type,
                                     "id": self.id}  # fmt: skip
        if self.rate_limit is not None:
            public["rate_limit"] = self.rate_limit
        if self.ordering != "strict":
            public["ordering"], public["max_in_flight"] = self.ordering, self.max_in_flight
        return public

    def secrets(self, now: float) -> list[str]:
        """Its own secrets valid at ``now`` (two while a rotation overlaps), newest first."""
        keys = [self.secret] if self.secret else []
        if self.previous_secret and now < self.previous_until:
            keys.append(self.previous_secret)
        return keys


class Store:
    """Synchronous SQLite access; callers run it where blocking briefly is acceptable."""

    #: the ``ami.name`` written with each event (the daemon sets it)
    server: str | None = None
    #: several bridges share this store (PostgreSQL): event ids are deduplicated, deliveries
    #: are sent under leases, extensions are registered (issue 19; SQLite: one process)
    cluster = False

    def __init__(self, path: str | Path, synchronous: str = "normal") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        #: write transactions committed (the checkpoint thread skips a turn without any)
        self._commits = 0
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives the process dying (kill -9); FULL also
            # survives power loss, at the price of an fsync per commit.
            self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._create()
            self._version = self.data_version()
        except DB_ERRORS as err:
            raise StoreError(f"cannot open the store {self.path}: {err}") from err
        #: every subscription by id, and the enabled ones by (extension, event type), in id
        #: order; None: to be read again
        self._by_id: dict[int, Subscription] | None = None
        self._by_key: dict[tuple[int, str], list[Subscription]] = {}
        #: the last id each outbox table gave out, while no other process writes the file
        self._last_ids: dict[str, int] = {}
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        #: the retention's thread, once :meth:`prune_in_background` started it
        self.pruning: PruneThread | None = None

    def _create(self) -> None:
        """The schema, created or brought up to date in one transaction."""
        with self._write():
            before = self.db.execute("PRAGMA user_version").fetchone()[0]
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(events)")}
            if columns and "call_id" not in columns:  # a store from before version 3
                self.db.execute("ALTER TABLE events ADD COLUMN call_id TEXT")
                self.db.execute("ALTER TABLE events ADD COLUMN event_time INTEGER")
            sub_columns = {r[1] for r in self.db.execute("PRAGMA table_info(subscriptions)")}
            if sub_columns and "failing_since" not in sub_columns:  # version 5 (issue 18, retries)
                self.db.execute(_UPGRADE_5_RETRY)
            for statement in _statements(SCHEMA):
                self.db.execute(statement)
            if columns and before < 3:
                for statement in _statements(_UPGRADE_3):
                    self.db.execute(statement)
            # version 5 (issue 18): the subscriptions' secrets, rate limit and ordering
            have = {r[1] for r in self.db.execute("PRAGMA table_info(subscriptions)")}
            for name, declaration in _SUBSCRIPTIONS_5:
                if name not in have:
                    self.db.execute(f"ALTER TABLE subscriptions ADD COLUMN {name} {declaration}")
            for version, script in UPGRADES:  # after version 5: one numbered step each
                if before < version:
                    for statement in _statements(script):
                        if not self._has_column(statement):  # (a store made by a newer one, relabelled)
                            self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _has_column(self, statement: str) -> bool:
        """Whether ``statement`` is an ``ALTER TABLE t ADD COLUMN c`` whose column is there already."""
        m = re.match(r"\s*ALTER TABLE (\w+) ADD COLUMN (\w+)", statement)
        if m is None:
            return False
        return m.group(2) in {r[1] for r in self.db.execute(f"PRAGMA table_info({m.group(1)})")}

    def close(self) -> None:
        if self.pruning is not None:
            self.pruning.stop()
            self.pruning = None
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            self._checkpointer.join()
            self._checkpointer = None
        self.db.close()

    def checkpoint_in_background(self, interval: float = 1.0) -> None:
        """Copy the WAL into the database file from a thread of its own, every ``interval``
        seconds when something was committed, instead of in whichever commit makes the WAL
        pass SQLite's 1,000 pages (at 450 calls/s a second of commits is ~1,200 pages).

        That commit would copy ~4 MB and fsync the file while the event loop waits (up to
        19 ms on this project's test VM, ~20% of the outbox's time); the thread's SQLite
        call runs without the GIL. A PASSIVE checkpoint never blocks a writer. Until
        :meth:`close`; what is left is checkpointed when the last connection closes.
        """
        if self._checkpointer is not None or self.path == ":memory:":
            return
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except DB_ERRORS as err:
            log.warning("store: no checkpoint thread (%s): commits checkpoint the WAL as before", err)
            return
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoints, args=(db, interval), name="store-checkpoints", daemon=True
        )
        self._checkpointer.start()

    def prune_in_background(self, retention: Retention, clock: Callable[[], float] | None = None) -> None:
        """Prune what ``retention`` no longer keeps (bridge/retention.py), every
        ``retention.interval`` seconds, from a thread with a connection of its own, in
        short transactions that let the pipeline's commits in between. Until :meth:`close`."""
        from bridge.retention import PruneThread

        if self.pruning is not None or self.path == ":memory:":
            return
        try:
            pruner = self.pruner(retention)
        except DB_ERRORS as err:
            log.warning("store: no retention thread (%s): nothing is pruned", err)
            return
        self.pruning = PruneThread(pruner) if clock is None else PruneThread(pruner, clock)
        self.pruning.start()

    def pruner(self, retention: Retention, **options: Any) -> Pruner:
        """A :class:`bridge.retention.Pruner` of this store, on a connection of its own
        (``options``: its batch and pause)."""
        from bridge.retention import Pruner

        return Pruner(self.path, retention, **options)

    def file_bytes(self) -> int:
        """The store's size on disk: the database file and its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += Path(self.path + suffix).stat().st_size
        return total

    def _checkpoints(self, db: sqlite3.Connection, interval: float) -> None:
        failing = False
        done = -1
        try:
            while not self._stop_checkpoints.wait(interval):
                commits = self._commits
                if commits == done and not failing:
                    continue
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    done = commits
                    failing = False
                except DB_ERRORS as err:  # a full disk, say: the WAL grows until it passes
                    if not failing:
                        log.warning("store checkpoint failed (%s); trying again every %g s", err, interval)
                    failing = True
        finally:
            db.close()

    @staticmethod
    def _sub(row: tuple[Any, ...]) -> Subscription:
        return Subscription(row[0], row[1], row[2], row[3], row[4], bool(row[5]), *row[6:])

    _COLS = ("id, extension_id, event_type, url, method, enabled, "
             "secret, previous_secret, previous_until, rate_limit, ordering, max_in_flight")  # fmt: skip

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits to the file."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def _forget(self) -> None:
        """Drop the in-memory subscriptions (a subscription was written)."""
        self._by_id = None

    def _subscriptions(self) -> dict[int, Subscription]:
        if self._by_id is None:
            rows = self.db.execute(f"SELECT {self._COLS} FROM subscriptions ORDER BY id")
            self._by_id = {r[0]: self._sub(r) for r in rows}
            self._by_key = {}
            for sub in self._by_id.values():
                if sub.enabled:
                    self._by_key.setdefault((sub.extension_id, sub.event_type), []).append(sub)
        return self._by_id

    def _check_others(self) -> None:
        """Forget the in-memory subscriptions if another process wrote the file."""
        version = self.data_version()
        if version != self._version:
            self._version = version
            self._last_ids.clear()
            self._forget()

    def add_subscription(self, extension_id: int, event_type: str, url: str, method: str,
                         **options: Any) -> Subscription:  # fmt: skip
        """A new subscription; ``options``: its other fields (secret, rate_limit, ordering,
        max_in_flight), defaults when absent."""
        sub = Subscription(0, extension_id, event_type, url, method, **options)
        try:
            cur = self.db.execute(
                "INSERT INTO subscriptions (extension_id, event_type, url, method, secret, previous_secret,"
                " previous_until, rate_limit, ordering, max_in_flight) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (extension_id, event_type, url, method, *self._options(sub)),
            )
        except DB_ERRORS as err:
            raise StoreError(f"cannot save the subscription in {self.path}: {err}") from err
        self._forget()
        assert cur.lastrowid is not None
        return dataclasses.replace(sub, id=cur.lastrowid)

    @staticmethod
    def _options(sub: Subscription) -> tuple[Any, ...]:
        return (sub.secret, sub.previous_secret, sub.previous_until, sub.rate_limit, sub.ordering,
                sub.max_in_flight)  # fmt: skip

    def global_previous(self, secret: str | None, now: float, overlap: float) -> tuple[str | None, float]:
        """The global signing secret that ``secret`` replaced and until when (unix seconds)
        it still signs: ``overlap`` seconds after the change was first seen here (at a start
        or a reload); (None, 0) when there is none. The secrets are kept in ``meta``."""
        try:
            with self._write():
                row = self.db.execute("SELECT value FROM meta WHERE key = 'global_secrets'").fetchone()
                state: dict[str, Any] = (json.loads(bytes(row[0])) if row
                                         else {"secret": None, "previous": None, "until": 0})  # fmt: skip
                if state["secret"] != (secret or None):
                    if state["secret"]:
                        state["previous"], state["until"] = state["secret"], now + overlap
                    state["secret"] = secret or None
                    self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('global_secrets', ?)",
                                    (json.dumps(state).encode(),))  # fmt: skip
        except DB_ERRORS as err:
            raise StoreError(f"cannot save the signing secrets in {self.path}: {err}") from err
        if not state["previous"] or state["previous"] == secret:
            return None, 0.0
        return str(state["previous"]), float(state["until"])

    def add_token(self, digest: bytes, client_id: str, expires_at: float, now: float) -> None:
        """Keep an issued token (its digest) until ``expires_at``; forget expired ones."""
        try:
            with self._write():
                self.db.execute("DELETE FROM api_tokens WHERE expires_at <= ?", (now,))
                self.db.execute("INSERT INTO api_tokens (digest, client_id, expires_at) VALUES (?, ?, ?)",
                                (digest, client_id, expires_at))  # fmt: skip
        except DB_ERRORS as err:
            raise StoreError(f"cannot save the token in {self.path}: {err}") from err

    def token(self, digest: bytes) -> tuple[str, float] | None:
        """(client id, expiry) of an issued token, by its digest."""
        row = self.db.execute(
            "SELECT client_id, expires_at FROM api_tokens WHERE digest = ?", (digest,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    # ---- the call history and the recordings (read by the API) --------------------------

    def call_events(self, call_id: str) -> list[tuple[int, dict[str, Any]]]:
        """Every event of a call, in commit order."""
        rows = self.db.execute(
            "SELECT extension_id, payload FROM events WHERE call_id = ? ORDER BY id", (call_id,)
        )
        return [(r[0], json.loads(r[1])) for r in rows]

    def call_reached(self, call_id: str) -> set[int] | None:
        """The extensions a call reached; None when the store knows no such call."""
        if self.db.execute("SELECT 1 FROM calls WHERE call_id = ?", (call_id,)).fetchone() is None:
            return None
        rows = self.db.execute("SELECT extension_id FROM call_extensions WHERE call_id = ?", (call_id,))
        return {r[0] for r in rows}

    def call_ids(self, extensions: Collection[int] | None, start: int, end: int, newest_first: bool,
                 limit: int, offset: int) -> list[str]:  # fmt: skip
        """The calls that began in ``[start, end)`` (microseconds) and reached one of
        ``extensions`` (None: any), oldest (or newest) first, one page of them."""
        order = "DESC" if newest_first else "ASC"
        scope, args = _scope("c.call_id", extensions)
        rows = self.db.execute(
            f"SELECT c.call_id FROM calls c WHERE c.init_time >= ? AND c.init_time < ? {scope} "
            f"ORDER BY c.init_time {order}, c.call_id {order} LIMIT ? OFFSET ?",
            (start, end, *args, limit, offset),
        )
        return [r[0] for r in rows]

    def record(self, record_uuid: str) -> StoredRecord | None:
        row = self.db.execute(
            f"SELECT {_RECORD_COLS} FROM {_RECORDS} WHERE r.record_uuid = ?", (record_uuid,)
        ).fetchone()
        return StoredRecord.of(row) if row else None

    def records(self, extensions: Collection[int] | None, start: int, end: int, newest_first: bool,
                limit: int, offset: int) -> list[StoredRecord]:  # fmt: skip
        """The complete recordings made in ``[start, end)`` (microseconds) for ``extensions``
        (None: all), one page of them."""
        order = "DESC" if newest_first else "ASC"
        where = "AND r.channel IS NULL"  # a recording still being made is not offered yet
        args: tuple[Any, ...] = ()
        if extensions is not None:
            where += f" AND r.extension_id IN ({','.join('?' * len(extensions))})"
            args = tuple(extensions)
        rows = self.db.execute(
            f"SELECT {_RECORD_COLS} FROM {_RECORDS} WHERE r.event_time >= ? AND r.event_time < ? {where} "
            f"ORDER BY r.event_time {order}, r.record_uuid {order} LIMIT ? OFFSET ?",
            (start, end, *args, limit, offset),
        )
        return [StoredRecord.of(r) for r in rows]

    def delete_record(self, record_uuid: str) -> None:
        self.db.execute("DELETE FROM records WHERE record_uuid = ?", (record_uuid,))

    def records_of_file(self, path: str) -> int:
        """How many recordings name this file."""
        return int(self.db.execute("SELECT COUNT(*) FROM records WHERE path = ?", (path,)).fetchone()[0])

    def secret(self, name: str) -> bytes:
        """A random key made once and kept (so that every process and restart shares it)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
        if row is None:
            self.db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (name, secrets.token_bytes(32))
            )
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
        return bytes(row[0])

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
            "enabled = 1, disabled_reason = NULL, secret = ?, previous_secret = ?, previous_until = ?, "
            "rate_limit = ?, ordering = ?, max_in_flight = ? "
            "WHERE id = ? AND extension_id = ?",
            (sub.event_type, sub.url, sub.method, *self._options(sub), sub.id, sub.extension_id),
        )
        self._forget()

    def delete_subscription(self, extension_id: int, sub_id: int) -> bool:
        cur = self.db.execute(
            "DELETE FROM subscriptions WHERE extension_id = ? AND id = ?", (extension_id, sub_id)
        )
        self._forget()
        return cur.rowcount > 0

    def delete_subscriptions(self, extension_id: int) -> int:
        n = self.db.execute("DELETE FROM subscriptions WHERE extension_id = ?", (extension_id,)).rowcount
        self._forget()
        return n

    def count(self, extension_id: int | None = None) -> int:
        if extension_id is None:
            row = self.db.execute("SELECT COUNT(*) FROM subscriptions").fetchone()
        else:
            row = self.db.execute(
                "SELECT COUNT(*) FROM subscriptions WHERE extension_id = ?", (extension_id,)
            ).fetchone()
        return int(row[0])

    def matching(self, extension_id: int, event_type: str) -> list[Subscription]:
        """Enabled subscriptions that an event of this extension and type goes to (in id order)."""
        self._subscriptions()
        return list(self._by_key.get((extension_id, event_type), ()))

    def subscription_by_id(self, sub_id: int) -> Subscription | None:
        """Any subscription (enabled or not) by id, from memory."""
        return self._subscriptions().get(sub_id)

    # ---- outbox ----------------------------------------------------------------------

    def enqueue(self, extension_id: int, event: dict[str, Any]) -> list[Delivery]:
        """Commit an event and one pending delivery per matching subscription, atomically.

        Returns the deliveries. This is the durability point: nothing is sent before it.
        """
        return self.enqueue_many([(extension_id, event)])

    def enqueue_many(
        self,
        events: Iterable[tuple[int, dict[str, Any]]],
        marks: list[Mark] | Outcomes | None = None,
        records: Iterable[Recording] = (),
        done: Iterable[str] = (),
    ) -> list[Delivery]:
        """Commit events, each with one pending delivery per matching subscription, in one
        transaction (all or none), with delivery outcomes ``marks`` as :meth:`mark_many`
        writes them (one transaction for both), the recordings the events name and the
        channels whose recordings are now complete. Returns the deliveries, in commit order."""
        try:
            with self._write():
                # under the write lock: what another process committed before is seen here,
                # and nothing it commits can come between this check and our ids
                self._check_others()
                self._subscriptions()
                by_key = self._by_key
                out: list[Delivery] = []
                # Ids are handed out here, under the write lock, so that each table takes
                # one executemany: what AUTOINCREMENT would give (never reusing an id).
                event_id = self._last_id("events")
                delivery_id = self._last_id("deliveries")
                event_rows = []
                delivery_rows = []
                calls: dict[str, int] = {}
                reached: set[tuple[str, int]] = set()
                for extension_id, event in events:
                    kind = event["EventType"]
                    event_id += 1
                    call_id, event_time = event.get("CallID"), event.get("EventTime")
                    event_rows.append((event_id, extension_id, kind, _to_json(event), call_id, event_time,
                                       self.server))  # fmt: skip
                    if call_id is not None and kind not in MESSAGE_EVENTS:  # calls only
                        calls.setdefault(call_id, event_time or 0)
                        reached.add((call_id, extension_id))
                    for sub in by_key.get((extension_id, kind), ()):
                        delivery_id += 1
                        delivery_rows.append((delivery_id, event_id, sub.id))
                        out.append(Delivery(delivery_id, event_id, sub.id, 0, 0.0, event))
                self.db.executemany(
                    "INSERT INTO events (id, extension_id, event_type, payload, call_id, event_time, server) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    event_rows,
                )
                self.db.executemany(_INSERT_CALL, calls.items())
                self.db.executemany(_INSERT_REACHED, reached)
                self.db.executemany(_INSERT_RECORD, [_record_row(r) for r in records])
                self.db.executemany(_RECORDED, [(c,) for c in done])
                self.db.executemany(
                    "INSERT INTO deliveries (id, event_id, subscription_id) VALUES (?, ?, ?)", delivery_rows
                )
                if marks:
                    self._write_outcomes(marks)
                self._last_ids.clear()  # known again only once committed
            self._last_ids.update(events=event_id, deliveries=delivery_id)
        except DB_ERRORS as err:
            raise StoreError(f"cannot commit the event to {self.path}: {err}") from err
        return out

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE: the write lock at once), committed when
        the block ends, rolled back if it or the commit raises."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
            self._commits += 1
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _last_id(self, table: str) -> int:
        """The highest id ``table`` ever gave out (AUTOINCREMENT's own record, or the rows)."""
        last = self._last_ids.get(table)
        if last is None:
            row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
            top = self.db.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0]  # table: one of ours
            last = max(row[0] if row else 0, top or 0)
        return last

    # ---- issue 19: the cluster (PostgreSQL only: bridge/store_pg.py) ---------------------

    def refresh(self) -> None:
        """Read the subscriptions again if another process wrote one since (a cluster's
        dispatcher sends for subscriptions other bridges' APIs made)."""
        self._check_others()

    def register_extensions(self, server: str, extensions: dict[int, dict[str, Any]]) -> None:
        """Note which server ``extensions`` live on (id: what the API lists of it); one
        process per SQLite store: nothing to share."""

    def registered_extensions(self) -> dict[int, tuple[str, dict[str, Any]]]:
        """Every extension of the cluster: id -> (server, what the API lists); none here."""
        return {}

    def count_deliveries(self, state: str) -> int:
        return int(self.db.execute(f"SELECT COUNT(*) FROM deliveries WHERE {_state(state)}").fetchone()[0])

    def writable(self) -> str | None:
        """None if a write transaction can be taken now, else why not."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("ROLLBACK")
        except DB_ERRORS as err:
            return str(err)
        return None

    def pending_subscriptions(self) -> list[int]:
        """The subscriptions that have pending deliveries (one index scan per subscription)."""
        rows = self.db.execute(
            "WITH RECURSIVE s(id) AS ("
            " SELECT MIN(subscription_id) FROM deliveries WHERE state = 'pending'"
            " UNION ALL SELECT (SELECT MIN(subscription_id) FROM deliveries"
            "  WHERE state = 'pending' AND subscription_id > s.id) FROM s WHERE s.id IS NOT NULL"
            ") SELECT id FROM s WHERE id IS NOT NULL"
        )
        return [r[0] for r in rows]

    def pending(self, subscription_id: int, limit: int) -> list[Delivery]:
        """The oldest ``limit`` pending deliveries of a subscription, oldest first."""
        rows = self.db.execute(
            "SELECT d.id, d.event_id, d.subscription_id, d.attempts, d.next_at, e.payload "
            "FROM deliveries d JOIN events e ON e.id = d.event_id "
            "WHERE d.subscription_id = ? AND d.state = 'pending' ORDER BY d.id LIMIT ?",
            (subscription_id, limit),
        )
        return [Delivery(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def mark(self, delivery_id: int, state: str, attempts: int, next_at: float = 0.0,
             status: int | None = None, error: str | None = None) -> None:  # fmt: skip
        self.mark_many([(state, attempts, next_at, status, error, delivery_id)])

    def mark_many(self, marks: list[Mark] | Outcomes) -> None:
        """Record delivery outcomes ``(state, attempts, next_at, status, error, delivery id)``
        (or :class:`Outcomes`: with their attempts) in one transaction."""
        try:
            with self._write():
                self._write_outcomes(marks)
        except DB_ERRORS as err:
            raise StoreError(f"cannot record delivery outcomes in {self.path}: {err}") from err

    def _write_outcomes(self, marks: list[Mark] | Outcomes) -> None:
        if isinstance(marks, Outcomes):
            self.db.executemany(_MARK, marks.marks)
            self.db.executemany(_INSERT_ATTEMPT, marks.attempts)
            if marks.failing:
                self.db.executemany(_FAILING, marks.failing)
        else:
            self.db.executemany(_MARK, marks)

    def disable_subscription(self, sub_id: int, reason: str) -> None:
        self.db.execute(
            "UPDATE subscriptions SET enabled = 0, disabled_reason = ? WHERE id = ?", (reason, sub_id)
        )
        self._forget()

    # ---- issue 18: retries, disabling, attempts, resend, recover ---------------------------

    def failing(self) -> dict[int, float]:
        """Since when each failing subscription has failed (no success since; unix seconds)."""
        rows = self.db.execute("SELECT id, failing_since FROM subscriptions WHERE failing_since IS NOT NULL")
        return {int(r[0]): float(r[1]) for r in rows}

    def disable_failing(self, sub_id: int, reason: str) -> int:
        """Disable a subscription and fail its pending deliveries (kept: ``recover`` puts them
        back), in one transaction; returns how many deliveries were failed."""
        try:
            with self._write():
                self.db.execute("UPDATE subscriptions SET enabled = 0, disabled_reason = ? WHERE id = ?",
                                (reason, sub_id))  # fmt: skip
                n = self.db.execute(
                    "UPDATE deliveries SET state = 'failed', next_at = 0, last_error = ? "
                    "WHERE subscription_id = ? AND state = 'pending'",
                    (f"subscription disabled: {reason}", sub_id),
                ).rowcount
        except DB_ERRORS as err:
            raise StoreError(f"cannot disable subscription {sub_id} in {self.path}: {err}") from err
        finally:
            self._forget()
        return int(n)

    def enable_subscription(self, extension_id: int, sub_id: int) -> bool:
        """Enable a disabled subscription again (its failing clock starts afresh)."""
        n = self.db.execute(
            "UPDATE subscriptions SET enabled = 1, disabled_reason = NULL, failing_since = NULL "
            "WHERE id = ? AND extension_id = ?",
            (sub_id, extension_id),
        ).rowcount
        self._forget()
        return n > 0

    def delivery(self, delivery_id: int) -> dict[str, Any] | None:
        """One delivery: id, event, subscription, its extension, state, attempts, last status/error."""
        row = self.db.execute(
            "SELECT d.id, d.event_id, d.subscription_id, s.extension_id, d.state, d.attempts, d.last_status,"
            " d.last_error FROM deliveries d LEFT JOIN subscriptions s ON s.id = d.subscription_id"
            " WHERE d.id = ?",
            (delivery_id,),
        ).fetchone()
        keys = ("id", "event_id", "subscription_id", "extension_id", "state", "attempts", "last_status",
                "last_error")  # fmt: skip
        return None if row is None else dict(zip(keys, row, strict=True))

    def attempts(self, *, delivery_id: int | None = None, subscription_id: int | None = None,
                 since: float = 0.0, limit: int = 100) -> list[dict[str, Any]]:  # fmt: skip
        """Attempts of one delivery (oldest first) or of one subscription since ``since``
        (unix seconds; newest first, at most ``limit``)."""
        cols = "id, delivery_id, subscription_id, at, status, latency_ms, error, body FROM delivery_attempts"
        if delivery_id is not None:
            rows = self.db.execute(f"SELECT {cols} WHERE delivery_id = ? ORDER BY id", (delivery_id,))
        else:
            rows = self.db.execute(
                f"SELECT {cols} WHERE subscription_id = ? AND at >= ? ORDER BY at DESC, id DESC LIMIT ?",
                (subscription_id, since, limit),
            )
        keys = ("id", "delivery_id", "subscription_id", "at", "status", "latency_ms", "error", "body")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def resend(self, delivery_id: int) -> Delivery | None:
        """A delivered or failed delivery sent again: a new pending delivery of the same
        event to the same subscription (so the same idempotency key); None when there is no
        such delivery or it is still pending."""
        try:
            with self._write():
                row = self.db.execute(
                    "SELECT d.event_id, d.subscription_id, e.payload FROM deliveries d "
                    "JOIN events e ON e.id = d.event_id WHERE d.id = ? AND d.state != 'pending'",
                    (delivery_id,),
                ).fetchone()
                if row is None:
                    return None
                new_id = self._insert_delivery(row[0], row[1])
        except DB_ERRORS as err:
            raise StoreError(f"cannot resend delivery {delivery_id} in {self.path}: {err}") from err
        return Delivery(new_id, row[0], row[1], 0, 0.0, json.loads(row[2]))

    def _insert_delivery(self, event_id: int, subscription_id: int) -> int:
        """A new pending delivery, inside the caller's transaction; its id."""
        cur = self.db.execute(
            "INSERT INTO deliveries (event_id, subscription_id) VALUES (?, ?)", (event_id, subscription_id)
        )
        self._last_ids.clear()
        assert cur.lastrowid is not None
        return cur.lastrowid

    def recover(self, subscription_id: int, since_us: int) -> int:
        """Put back in the queue every failed delivery of a subscription whose event is not
        older than ``since_us`` (its EventTime, microseconds); returns how many."""
        return int(self.db.execute(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_at = 0 "
            "WHERE state = 'failed' AND subscription_id = ? AND event_id IN "
            "(SELECT id FROM events WHERE COALESCE(event_time, 0) >= ?)",
            (subscription_id, since_us),
        ).rowcount)  # fmt: skip

    def deliveries(self, state: str) -> list[dict[str, Any]]:
        """Deliveries in a state, for inspection (failed ones, mostly)."""
        rows = self.db.execute(
            "SELECT id, event_id, subscription_id, attempts, last_status, last_error FROM deliveries "
            f"WHERE {_state(state)} ORDER BY id"
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

    # ---- the console's view of deliveries ---------------------------------------------

    def all_subscriptions(self) -> list[Subscription]:
        """Every subscription, by id."""
        return sorted(self._subscriptions().values(), key=lambda s: s.id)

    def disabled_reasons(self) -> dict[int, str]:
        """Why each disabled subscription was disabled (a receiver's 410, mostly)."""
        rows = self.db.execute(
            "SELECT id, COALESCE(disabled_reason, '') FROM subscriptions WHERE enabled = 0"
        )
        return {int(r[0]): str(r[1]) for r in rows}

    def delivery_counts(self) -> dict[int, tuple[int, int]]:
        """(pending, failed) deliveries per subscription that has any (partial indexes only)."""
        counts: dict[int, tuple[int, int]] = {}
        for i, state in enumerate(("pending", "failed")):
            rows = self.db.execute(
                f"SELECT subscription_id, COUNT(*) FROM deliveries WHERE state = '{state}' GROUP BY 1"
            )
            for sub_id, n in rows:
                pending, failed = counts.get(sub_id, (0, 0))
                counts[sub_id] = (n, failed) if i == 0 else (pending, n)
        return counts

    def failed_deliveries(self, extensions: Collection[int] | None, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` failed deliveries (of subscriptions of ``extensions``; None:
        all): id, subscription, extension, URL, the event's type and CallID, attempts, the
        last status and error."""
        where: str = ""
        args: tuple[int, ...] = ()
        if extensions is not None:
            where = f" AND s.extension_id IN ({','.join('?' * len(extensions))})"
            args = tuple(extensions)
        rows = self.db.execute(
            "SELECT d.id, d.subscription_id, s.extension_id, s.url, s.method, e.event_type, e.call_id,"
            " d.attempts, d.last_status, d.last_error FROM deliveries d"
            " JOIN subscriptions s ON s.id = d.subscription_id JOIN events e ON e.id = d.event_id"
            f" WHERE d.state = 'failed'{where} ORDER BY d.id DESC LIMIT ?",
            (*args, limit),
        )
        keys = ("id", "subscription_id", "extension_id", "url", "method", "event_type", "call_id",
                "attempts", "last_status", "last_error")  # fmt: skip
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def delivery_extension(self, delivery_id: int) -> int | None:
        """The extension whose subscription a delivery is for (None: no such delivery)."""
        row = self.db.execute(
            "SELECT s.extension_id FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id"
            " WHERE d.id = ?",
            (delivery_id,),
        ).fetchone()
        return None if row is None else int(row[0])


#: the states a delivery can be in
DELIVERY_STATES = ("pending", "delivered", "failed")
#: events that are no call's (they stay out of the call history)
MESSAGE_EVENTS = frozenset({"message-in", "message-out"})
_RECORD_COLS = (
    "r.record_uuid, r.extension_id, r.call_id, r.kind, r.name, r.path, r.channel, r.event_time, r.event, "
    "c.init_time"
)
_RECORDS = "records r LEFT JOIN calls c ON c.call_id = r.call_id"


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A recording the store keeps: its id, whose it is, the file, and the event naming it."""

    record_uuid: str
    extension_id: int
    call_id: str
    kind: str
    name: str
    path: str | None
    #: the channel still recording it; None once complete
    channel: str | None
    event_time: int
    event: dict[str, Any]
    #: when its call began (microseconds), if the store knows
    call_init_time: int | None

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> StoredRecord:
        uuid, ext, call_id, kind, name, path, channel, event_time, event, init = row
        return cls(uuid, ext, call_id, kind, name, path, channel, event_time, json.loads(event), init)


def _scope(call_col: str, extensions: Collection[int] | None) -> tuple[str, tuple[int, ...]]:
    """The SQL (and its arguments) that keeps calls reaching one of ``extensions``."""
    if extensions is None:
        return "", ()
    marks = ",".join("?" * len(extensions))
    return (f"AND EXISTS (SELECT 1 FROM call_extensions ce WHERE ce.call_id = {call_col} "
            f"AND ce.extension_id IN ({marks}))", tuple(extensions))  # fmt: skip


def _statements(script: str) -> list[str]:
    """The SQL statements of one of our scripts (no ``;`` in their comments or strings)."""
    return [chunk for chunk in script.split(";") if any(_code(line) for line in chunk.splitlines())]


def _code(line: str) -> bool:
    return bool(line.strip()) and not line.strip().startswith("--")


_INSERT_CALL = "INSERT OR IGNORE INTO calls (call_id, init_time) VALUES (?, ?)"
_INSERT_REACHED = "INSERT OR IGNORE INTO call_extensions (call_id, extension_id) VALUES (?, ?)"
_INSERT_RECORD = (
    "INSERT OR REPLACE INTO records (record_uuid, extension_id, call_id, kind, name, path, channel, "
    "event_time, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: a channel whose recordings are complete
_RECORDED = "UPDATE records SET channel = NULL WHERE channel = ?"


def _record_row(r: Recording) -> tuple[Any, ...]:
    event = r.event
    return (r.record_uuid, r.extension_id, event.get("CallID", ""), r.kind, r.name, r.path, r.channel,
            event.get("EventTime", 0), _to_json(event))  # fmt: skip


def _state(state: str) -> str:
    """``state = '<state>'`` written out: a partial index serves only a query whose WHERE
    names its value, never a bound parameter."""
    if state not in DELIVERY_STATES:
        raise ValueError(f"unknown delivery state {state!r}")
    return f"state = '{state}'"


_MARK = (
    "UPDATE deliveries SET state = ?, attempts = ?, next_at = ?, last_status = ?, last_error = ? WHERE id = ?"
)
#: one delivery outcome for :meth:`Store.mark_many`:
#: ``(state, attempts, next_at, last_status, last_error, delivery id)``
Mark = tuple[str, int, float, int | None, str | None, int]
#: one attempt: ``(delivery id, subscription id, at, status, latency ms, error, body head)``
AttemptRow = tuple[int, int, float, int | None, float, str | None, bytes]
_INSERT_ATTEMPT = (
    "INSERT INTO delivery_attempts (delivery_id, subscription_id, at, status, latency_ms, error, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_FAILING = "UPDATE subscriptions SET failing_since = ? WHERE id = ?"


@dataclass(slots=True)
class Outcomes:
    """What the dispatcher learnt since its last write: delivery outcomes, the attempts
    behind them, and subscriptions that started or stopped failing ``(since, id)``."""

    marks: list[Mark] = field(default_factory=list)
    attempts: list[AttemptRow] = field(default_factory=list)
    failing: list[tuple[float | None, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.marks) + len(self.attempts) + len(self.failing)

    def before(self, newer: Outcomes) -> None:
        """Put these (older) outcomes before ``newer``'s, in ``newer``."""
        newer.marks[:0] = self.marks
        newer.attempts[:0] = self.attempts
        newer.failing[:0] = self.failing


@dataclass(slots=True)
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
