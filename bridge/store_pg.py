"""The store in PostgreSQL (``store.url``): the same tables, methods and behaviour as the
SQLite store of bridge/store.py, for bridges that share a database.

:class:`PgStore` is a :class:`bridge.store.Store` whose connection is a
:class:`PgConnection`: psycopg 3, synchronous like sqlite3 (the store's calls are short
transactions made from the event loop; README, PostgreSQL store, says what one costs),
speaking the SQLite store's SQL. What SQLite does its own way is done here instead: the
schema and its migrations (a ``schema_version`` table and the numbered :data:`MIGRATIONS`),
the ids of :meth:`PgStore.enqueue_many` (sequences), ``RETURNING`` for a new row's id,
the size on disk, and the check for other processes' writes (``store_versions``:
counters that triggers bump when a subscription changes, or a delivery is put back in
the queue, in place of ``PRAGMA data_version``).

Several bridges share it (issue 19, a cluster): :meth:`PgStore.enqueue_many` inserts
each event once, whichever bridge commits it first (its deterministic :func:`event_key`),
under its server's advisory lock; :meth:`PgStore.take_leases` gives each subscription's
deliveries to one bridge at a time; :meth:`PgStore.register_extensions` says which
server each extension lives on. README, "A cluster", says what it guarantees.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bridge.store import (
    _INSERT_CALL,
    _INSERT_REACHED,
    _INSERT_RECORD,
    _RECORDED,
    MESSAGE_EVENTS,
    Delivery,
    ExtensionConflict,
    Mark,
    Outcomes,
    Store,
    StoreError,
    Subscription,
    _record_row,
    _to_json,
)

if TYPE_CHECKING:
    from bridge.config import Retention
    from bridge.retention import Pruner
    from bridge.translate.model import Recording

#: the schema's version once every migration ran (the SQLite store's numbering: the same
#: tables at the same version)
SCHEMA_VERSION = 6
#: seconds to wait for the server when connecting
CONNECT_TIMEOUT = 10
#: the advisory lock (pg_advisory_xact_lock) that makes bridges starting together migrate
#: one after the other
_MIGRATION_LOCK = 0x616D6962  # "amib"

#: version 5: the SQLite store's version-5 tables (its history, versions 1 to 4, is
#: SQLite's own). Text keys that are sorted (CallID, RecID) compare bytewise, as in SQLite.
_SCHEMA_5 = """
CREATE TABLE subscriptions (
    id              BIGSERIAL PRIMARY KEY,
    extension_id    BIGINT  NOT NULL,
    event_type      TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    failing_since   DOUBLE PRECISION,
    secret          TEXT,
    previous_secret TEXT,
    previous_until  DOUBLE PRECISION NOT NULL DEFAULT 0,
    rate_limit      DOUBLE PRECISION,
    ordering        TEXT    NOT NULL DEFAULT 'strict',
    max_in_flight   INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX subscriptions_ext ON subscriptions (extension_id, event_type);
CREATE TABLE events (
    id           BIGSERIAL PRIMARY KEY,
    extension_id BIGINT NOT NULL,
    event_type   TEXT   NOT NULL,
    payload      TEXT   NOT NULL,
    call_id      TEXT COLLATE "C",
    event_time   BIGINT
);
CREATE INDEX events_by_call ON events (call_id);
CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    event_id        BIGINT  NOT NULL REFERENCES events (id),
    subscription_id BIGINT  NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT
);
CREATE INDEX deliveries_pending_by_subscription ON deliveries (subscription_id, id) WHERE state = 'pending';
CREATE INDEX deliveries_failed ON deliveries (id) WHERE state = 'failed';
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE TABLE api_tokens (
    digest     BYTEA PRIMARY KEY,
    client_id  TEXT  NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE calls (
    call_id   TEXT COLLATE "C" PRIMARY KEY,
    init_time BIGINT NOT NULL
);
CREATE INDEX calls_by_time ON calls (init_time);
CREATE TABLE call_extensions (
    call_id      TEXT COLLATE "C" NOT NULL,
    extension_id BIGINT NOT NULL,
    PRIMARY KEY (call_id, extension_id)
);
CREATE TABLE records (
    record_uuid  TEXT COLLATE "C" PRIMARY KEY,
    extension_id BIGINT NOT NULL,
    call_id      TEXT COLLATE "C" NOT NULL,
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    path         TEXT,
    channel      TEXT,
    event_time   BIGINT NOT NULL,
    event        TEXT NOT NULL
);
CREATE INDEX records_by_extension ON records (extension_id, event_time);
CREATE INDEX records_recording ON records (channel) WHERE channel IS NOT NULL;
CREATE INDEX records_by_call ON records (call_id);
CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE delivery_attempts (
    id              BIGSERIAL PRIMARY KEY,
    delivery_id     BIGINT NOT NULL,
    subscription_id BIGINT NOT NULL,
    at              DOUBLE PRECISION NOT NULL,
    status          INTEGER,
    latency_ms      DOUBLE PRECISION NOT NULL,
    error           TEXT,
    body            BYTEA NOT NULL DEFAULT ''::bytea
);
CREATE INDEX attempts_by_delivery ON delivery_attempts (delivery_id);
CREATE INDEX attempts_by_subscription ON delivery_attempts (subscription_id, at);
-- what PRAGMA data_version tells a SQLite store: another process changed a subscription
-- (the in-memory copy is stale) or put a delivery back in the queue (the dispatcher looks)
CREATE TABLE store_versions (name TEXT PRIMARY KEY, version BIGINT NOT NULL DEFAULT 0);
INSERT INTO store_versions (name) VALUES ('subscriptions'), ('deliveries');
CREATE FUNCTION bump_store_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_versions SET version = version + 1 WHERE name = TG_ARGV[0];
    RETURN NULL;
END $$;
CREATE TRIGGER subscriptions_version AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_version('subscriptions');
CREATE TRIGGER deliveries_requeued AFTER UPDATE OF state ON deliveries
    FOR EACH ROW WHEN (NEW.state = 'pending' AND OLD.state <> 'pending')
    EXECUTE FUNCTION bump_store_version('deliveries');
"""
#: version 6 (issue 19, the cluster): each event's server and deterministic key (unique:
#: the second bridge's copy of an event is not inserted), the extensions each server's
#: bridges serve, and the leases on subscriptions (one bridge sends a subscription's
#: deliveries at a time)
_SCHEMA_6 = """
ALTER TABLE events ADD COLUMN server TEXT;
ALTER TABLE events ADD COLUMN event_key BYTEA;
CREATE UNIQUE INDEX events_by_key ON events (event_key);
CREATE TABLE cluster_extensions (
    id         BIGINT PRIMARY KEY,
    server     TEXT NOT NULL,
    info       TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE subscription_leases (
    subscription_id BIGINT PRIMARY KEY,
    owner           TEXT NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL
);
"""
#: the migrations, in order: (the version it brings the schema to, its SQL). Version 7
#: is one more entry here (and one in the SQLite store's bridge/store.py).
MIGRATIONS: tuple[tuple[int, str], ...] = ((5, _SCHEMA_5), (6, _SCHEMA_6))
#: the channel bridges NOTIFY when they commit deliveries (the payload: the committing
#: bridge's lease owner id, so that it can ignore its own)
CHANNEL = "ami_bridge_deliveries"


#: the subscriptions' version (has another process written one?) and new ids: ? events, ? deliveries
_VERSION_AND_IDS = (
    "SELECT (SELECT version FROM store_versions WHERE name = 'subscriptions'), "
    "ARRAY(SELECT nextval('events_id_seq') FROM generate_series(1, ?)), "
    "ARRAY(SELECT nextval('deliveries_id_seq') FROM generate_series(1, ?))"
)
#: the same, and which of the keys ? the events table already has
_VERSION_IDS_AND_KNOWN = (
    "SELECT (SELECT version FROM store_versions WHERE name = 'subscriptions'), "
    "ARRAY(SELECT nextval('events_id_seq') FROM generate_series(1, ?)), "
    "ARRAY(SELECT nextval('deliveries_id_seq') FROM generate_series(1, ?)), "
    "ARRAY(SELECT event_key FROM events WHERE event_key = ANY(?))"
)
#: take (or renew) the lease of every subscription that is free, expired or ours already
_TAKE_LEASES = (
    "INSERT INTO subscription_leases (subscription_id, owner, expires_at) "
    "SELECT id, ?, now() + make_interval(secs => ?) FROM subscriptions ORDER BY id "
    "ON CONFLICT (subscription_id) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at "
    "WHERE subscription_leases.owner = EXCLUDED.owner OR subscription_leases.expires_at < now() "
    "RETURNING subscription_id"
)


def event_key(server: str | None, extension_id: int, event: dict[str, Any]) -> bytes | None:
    """An event's deterministic id: the same in every bridge that translated it from the
    same stream. A component (SubCallID) of one extension emits at most one event of each
    type (dial-in/dial-out, answer, hangup, voicemail); a message is its own CallID and
    SubCallID (its Uniqueid). So (server, extension, type, CallID, SubCallID) names one.
    None (never deduplicated) for an event without CallID or SubCallID: no translator's."""
    call_id, sub_id = event.get("CallID"), event.get("SubCallID")
    if call_id is None or sub_id is None:
        return None
    parts = (server or "", str(extension_id), str(event.get("EventType")), str(call_id), str(sub_id))
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).digest()


def server_lock(server: str | None) -> int:
    """The advisory lock (a signed 64-bit key) a server's bridges commit events under."""
    digest = hashlib.blake2b(b"ami-bridge events " + (server or "").encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def masked(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    return re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", url)


def connect(url: str, password: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection (transactions are explicit, as in the SQLite store).
    ``password`` (store.password) overrides the URL's; without either, libpq reads
    PGPASSWORD or ~/.pgpass."""
    params: dict[str, Any] = conninfo_to_dict(url)
    if password is not None:
        params["password"] = password
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params.setdefault("application_name", "ami-bridge")
    return psycopg.connect(make_conninfo(**params), autocommit=True)


_INSERT_OR = re.compile(r"^\s*INSERT OR (IGNORE|REPLACE) INTO (\w+) \(([^)]*)\)(.*)$", re.S)


def translate(sql: str) -> str:
    """The SQLite store's SQL as PostgreSQL takes it: ``?`` parameters as ``%s``, ``BEGIN
    IMMEDIATE`` as ``BEGIN``, ``INSERT OR IGNORE`` as ``ON CONFLICT DO NOTHING`` and
    ``INSERT OR REPLACE INTO t (key, c...)`` as an upsert on its first column (the key of
    every table it is used on: meta, records)."""
    if sql.strip() == "BEGIN IMMEDIATE":
        return "BEGIN"
    sql = sql.replace("%", "%%").replace("?", "%s")
    m = _INSERT_OR.match(sql)
    if m:
        how, table, cols, rest = m.groups()
        names = [c.strip() for c in cols.split(",")]
        if how == "IGNORE":
            conflict = "ON CONFLICT DO NOTHING"
        else:
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in names[1:])
            conflict = f"ON CONFLICT ({names[0]}) DO UPDATE SET {sets}"
        sql = f"INSERT INTO {table} ({cols}){rest} {conflict}"
    return sql


def _no_nul(params: Sequence[Any]) -> Sequence[Any]:
    """The parameters with each NUL of a string as U+FFFD: PostgreSQL's text takes no NUL
    (SQLite's does), and an AMI field or an API path may hold one. Written and looked up
    the same way, such a value is still found by itself."""
    if not any(type(p) is str and "\x00" in p for p in params):
        return params
    return [p.replace("\x00", "\ufffd") if type(p) is str else p for p in params]


class PgConnection:
    """A psycopg connection with the sqlite3 calls the stores make (``execute``,
    ``executemany``, ``close``) in SQLite's SQL (:func:`translate`; a NUL in a string
    parameter: :func:`_no_nul`). A connection the
    server dropped is made again at the next call outside a transaction."""

    def __init__(self, url: str, password: str | None = None) -> None:
        self.url = url
        self.password = password
        self.conn = connect(url, password)
        self._sql: dict[str, str] = {}
        #: inside BEGIN ... COMMIT: a dropped connection is not made again until it ends
        self._in_tx = False

    def _ready(self, sql: str) -> tuple[psycopg.Connection[tuple[Any, ...]], str]:
        query = self._sql.get(sql)
        if query is None:
            query = self._sql[sql] = translate(sql)
        if query == "BEGIN":
            if self.conn.closed:  # dropped by the server (or a restart): connect again
                self.conn = connect(self.url, self.password)
            self._in_tx = True
        elif query in ("COMMIT", "ROLLBACK"):
            self._in_tx = False
        elif self.conn.closed and not self._in_tx:  # a statement on its own: connect again
            self.conn = connect(self.url, self.password)
        return self.conn, query

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[tuple[Any, ...]]:
        conn, query = self._ready(sql)
        return conn.execute(query, _no_nul(params) if params else None)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[tuple[Any, ...]]:
        conn, query = self._ready(sql)
        cur = conn.cursor()
        rows = [_no_nul(row) for row in rows]
        if rows:
            cur.executemany(query, rows)
        return cur

    def close(self) -> None:
        self.conn.close()


class PgStore(Store):
    """The store in a PostgreSQL database; see the module's docstring."""

    cluster = True
    #: the lease owner id of this bridge (the dispatcher's), sent with NOTIFY
    owner = ""

    def __init__(self, url: str, password: str | None = None) -> None:
        self.url = url
        self.password = password
        #: where, for messages: the URL without its password
        self.path = masked(url)
        self._commits = 0
        try:
            self._pg = PgConnection(url, password)
            self.db = self._pg  # type: ignore[assignment]  # the sqlite3 calls the Store makes
            self._create()
            self._version = self._subscriptions_version()
        except psycopg.Error as err:
            raise StoreError(f"cannot open the store {self.path}: {err}") from err
        self._by_id: dict[int, Subscription] | None = None
        self._by_key: dict[tuple[int, str], list[Subscription]] = {}
        self._last_ids: dict[str, int] = {}
        self._checkpointer = None
        self._stop_checkpoints = threading.Event()
        self.pruning = None

    def _create(self) -> None:
        """Run the migrations the database has not had, in one transaction, one bridge at a time."""
        with self._write():
            self.db.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            exists = self.db.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
            if not (exists and exists[0]):
                self.db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                self.db.execute("INSERT INTO schema_version (version) VALUES (0)")
            row = self.db.execute("SELECT version FROM schema_version").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"the store {self.path} is at schema version {version}, newer than "
                                 f"this ami-bridge's {SCHEMA_VERSION}: upgrade ami-bridge (or use another "
                                 "database)")  # fmt: skip
            for step, sql in MIGRATIONS:
                if step > version:
                    self._pg.conn.execute(sql)  # one script (no parameters)
                    self.db.execute("UPDATE schema_version SET version = ?", (step,))

    def schema_version(self) -> int:
        row = self.db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def checkpoint_in_background(self, interval: float = 1.0) -> None:
        """Nothing to do: the server checkpoints its own WAL."""

    def pruner(self, retention: Retention, **options: Any) -> Pruner:
        from bridge.retention import Pruner

        return Pruner(self.path, retention, db=PgConnection(self.url, self.password), **options)

    def file_bytes(self) -> int:
        """The database's size on the server (every table and index of it)."""
        return int(self.db.execute("SELECT pg_database_size(current_database())").fetchone()[0])

    def data_version(self) -> int:
        """Changes whenever a subscription is written or a delivery put back in the queue
        (by any process: the ``store_versions`` triggers)."""
        return int(self.db.execute("SELECT SUM(version) FROM store_versions").fetchone()[0])

    def _subscriptions_version(self) -> int:
        row = self.db.execute("SELECT version FROM store_versions WHERE name = 'subscriptions'").fetchone()
        return int(row[0]) if row else 0

    def _check_others(self) -> None:
        """Forget the in-memory subscriptions if a subscription was written since they were read."""
        version = self._subscriptions_version()
        if version != self._version:
            self._version = version
            self._forget()

    def writable(self) -> str | None:
        """None if the server takes a write now (connected, not read-only), else why not."""
        try:
            with self._write():
                self.db.execute("UPDATE store_versions SET version = version WHERE false")
        except psycopg.Error as err:
            return str(err).strip() or type(err).__name__
        return None

    def add_subscription(self, extension_id: int, event_type: str, url: str, method: str,
                         **options: Any) -> Subscription:  # fmt: skip
        sub = Subscription(0, extension_id, event_type, url, method, **options)
        try:
            row = self.db.execute(
                "INSERT INTO subscriptions (extension_id, event_type, url, method, secret, previous_secret,"
                " previous_until, rate_limit, ordering, max_in_flight) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (extension_id, event_type, url, method, *self._options(sub)),
            ).fetchone()
        except psycopg.Error as err:
            raise StoreError(f"cannot save the subscription in {self.path}: {err}") from err
        self._forget()
        assert row is not None
        return dataclasses.replace(sub, id=int(row[0]))

    def _insert_delivery(self, event_id: int, subscription_id: int) -> int:
        new = self.db.execute(
            "INSERT INTO deliveries (event_id, subscription_id) VALUES (?, ?) RETURNING id",
            (event_id, subscription_id),
        ).fetchone()
        self.db.execute("UPDATE store_versions SET version = version + 1 WHERE name = 'deliveries'")
        assert new is not None
        return int(new[0])

    def _wanted(self, batch: list[tuple[int, dict[str, Any]]]) -> int:
        """How many deliveries the events of ``batch`` make (the subscriptions in memory)."""
        by_key = self._by_key
        return sum(len(by_key.get((ext, event["EventType"]), ())) for ext, event in batch)

    def enqueue_many(
        self,
        events: Iterable[tuple[int, dict[str, Any]]],
        marks: list[Mark] | Outcomes | None = None,
        records: Iterable[Recording] = (),
        done: Iterable[str] = (),
    ) -> list[Delivery]:
        """As the SQLite store's: the events, their deliveries, the outcomes, recordings and
        complete channels in one transaction; the ids from the tables' sequences (one round
        trip for all of them).

        For a cluster (issue 19): the transaction holds the server's advisory lock
        (:func:`server_lock`), so the bridges reading one Asterisk commit one after the
        other and ids follow commit order; an event whose key (:func:`event_key`) is
        already stored, the same event committed by another bridge, is left out with its
        deliveries (the second copy is a no-op); new deliveries NOTIFY :data:`CHANNEL`."""
        batch = list(events)
        server = self.server
        try:
            self._subscriptions()
            keys = [event_key(server, ext, event) for ext, event in batch]
            # one pipeline: what the transaction sends waits for no answer but the ids'
            with self._write(), self._pg.conn.pipeline():
                if batch:
                    self.db.execute("SELECT pg_advisory_xact_lock(?)", (server_lock(server),))
                wanted = self._wanted(batch)
                row = self.db.execute(
                    _VERSION_IDS_AND_KNOWN, (len(batch), wanted, [k for k in keys if k is not None])
                ).fetchone()
                assert row is not None
                version, new_events, new_deliveries, known = row
                if version != self._version:  # another process wrote a subscription: read again
                    self._version = version
                    self._forget()
                    self._subscriptions()
                    more = self._wanted(batch) - wanted
                    if more > 0:  # (sequence values not used are gaps, as after a rollback)
                        row = self.db.execute(_VERSION_AND_IDS, (0, more)).fetchone()
                        assert row is not None
                        new_deliveries += row[2]
                seen = {bytes(k) for k in known}
                by_key = self._by_key
                event_ids, delivery_ids = iter(sorted(new_events)), iter(sorted(new_deliveries))
                out: list[Delivery] = []
                event_rows = []
                delivery_rows = []
                calls: dict[str, int] = {}
                reached: set[tuple[str, int]] = set()
                for (extension_id, event), key in zip(batch, keys, strict=True):
                    kind = event["EventType"]
                    call_id, event_time = event.get("CallID"), event.get("EventTime")
                    if call_id is not None and kind not in MESSAGE_EVENTS:
                        calls.setdefault(call_id, event_time or 0)
                        reached.add((call_id, extension_id))
                    if key is not None:
                        if key in seen:  # stored already (by another bridge): a no-op
                            continue
                        seen.add(key)
                    event_id = next(event_ids)
                    event_rows.append((event_id, extension_id, kind, _to_json(event), call_id, event_time,
                                       server, key))  # fmt: skip
                    for sub in by_key.get((extension_id, kind), ()):
                        delivery_id = next(delivery_ids)
                        delivery_rows.append((delivery_id, event_id, sub.id))
                        out.append(Delivery(delivery_id, event_id, sub.id, 0, 0.0, event))
                self.db.executemany(
                    "INSERT INTO events (id, extension_id, event_type, payload, call_id, event_time, server, "
                    "event_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING",
                    event_rows,
                )
                self.db.executemany(_INSERT_CALL, sorted(calls.items()))
                self.db.executemany(_INSERT_REACHED, sorted(reached))
                self.db.executemany(_INSERT_RECORD, [_record_row(r) for r in records])
                self.db.executemany(_RECORDED, [(c,) for c in done])
                self.db.executemany(
                    "INSERT INTO deliveries (id, event_id, subscription_id) VALUES (?, ?, ?)", delivery_rows
                )
                if marks:
                    self._write_outcomes(marks)
                if delivery_rows:  # the other bridges' dispatchers look (sent at COMMIT)
                    self.db.execute("SELECT pg_notify(?, ?)", (CHANNEL, self.owner))
        except psycopg.Error as err:
            raise StoreError(f"cannot commit the event to {self.path}: {err}") from err
        return out

    # ---- issue 19: the cluster --------------------------------------------------------------

    def register_extensions(self, server: str, extensions: dict[int, dict[str, Any]]) -> None:
        """Note that ``extensions`` live on ``server`` (the API of every bridge lists them and
        takes subscriptions for them); the ones this server registered before and no longer
        has are forgotten. An id another server registered is refused (ExtensionConflict,
        nothing written): an extension lives on one server."""
        try:
            with self._write():
                self.db.execute("SELECT pg_advisory_xact_lock(?)", (server_lock("registry"),))
                ids = sorted(extensions)
                taken = self.db.execute(
                    "SELECT id, server FROM cluster_extensions WHERE id = ANY(?) AND server <> ? ORDER BY id",
                    (ids, server),
                ).fetchall()
                if taken:
                    listed = ", ".join(f"{i} (on {s!r})" for i, s in taken[:10])
                    raise ExtensionConflict(
                        f"extensions: {listed} already belong to another server of the cluster sharing "
                        f"{self.path}; this one is ami.name {server!r}. An extension id is unique across the "
                        "cluster: list each extension only in the config of the bridges of the Asterisk it "
                        "lives on (one config per server, each with its own ami.name), or give it another id"
                    )
                self.db.execute("DELETE FROM cluster_extensions WHERE server = ? AND NOT (id = ANY(?))",
                                (server, ids))  # fmt: skip
                self.db.executemany(
                    "INSERT INTO cluster_extensions (id, server, info) VALUES (?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET info = EXCLUDED.info, updated_at = now()",
                    [(i, server, json.dumps(extensions[i])) for i in ids],
                )
        except psycopg.Error as err:
            raise StoreError(f"cannot register the extensions in {self.path}: {err}") from err

    def registered_extensions(self) -> dict[int, tuple[str, dict[str, Any]]]:
        rows = self.db.execute("SELECT id, server, info FROM cluster_extensions ORDER BY id")
        return {int(r[0]): (str(r[1]), json.loads(r[2])) for r in rows}

    def take_leases(self, owner: str, seconds: float) -> set[int]:
        """Take every subscription's lease that is free or expired and renew this owner's,
        for ``seconds`` (the server's clock); the subscriptions whose lease it holds now."""
        try:
            rows = self.db.execute(_TAKE_LEASES, (owner, float(seconds))).fetchall()
        except psycopg.Error as err:
            raise StoreError(f"cannot renew the subscription leases in {self.path}: {err}") from err
        return {int(r[0]) for r in rows}

    async def notifications(self) -> AsyncIterator[str]:
        """The payloads of :data:`CHANNEL`'s NOTIFYs (LISTEN on a connection of its own)."""
        params: dict[str, Any] = conninfo_to_dict(self.url)
        if self.password is not None:
            params["password"] = self.password
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)
        params.setdefault("application_name", "ami-bridge listen")
        conn = await psycopg.AsyncConnection.connect(make_conninfo(**params), autocommit=True)
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            async for notice in conn.notifies():
                yield notice.payload

    def release_dead_leases(self, host: str) -> list[str]:
        """Free the leases of bridges of this host (owner ``name@host:pid:...``) whose
        process is gone (a ``kill -9``, a crash: systemd's restart takes over at once
        instead of after the lease); the owners freed."""
        gone = []
        try:
            owners = self.db.execute("SELECT DISTINCT owner FROM subscription_leases").fetchall()
        except psycopg.Error as err:
            raise StoreError(f"cannot read the subscription leases in {self.path}: {err}") from err
        for (owner,) in owners:
            where, _, rest = str(owner).partition("@")[2].rpartition(":")[0].rpartition(":")
            if where != host or not rest.isdigit():
                continue
            try:
                os.kill(int(rest), 0)
            except ProcessLookupError:
                gone.append(str(owner))
            except OSError:  # alive, another user's
                continue
        for owner in gone:
            self.release_leases(owner)
        return gone

    def release_leases(self, owner: str) -> None:
        """Give up this owner's leases (a clean stop: another bridge takes them at once)."""
        try:
            self.db.execute("DELETE FROM subscription_leases WHERE owner = ?", (owner,))
        except psycopg.Error as err:
            raise StoreError(f"cannot release the subscription leases in {self.path}: {err}") from err
