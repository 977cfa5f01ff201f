"""Webhook delivery against real HTTP receivers on loopback: order, retries, give-up, 410, restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import DeliveryConfig
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.http import WebhookClient
from bridge.store import SCHEMA_VERSION, Store
from tests.conftest import Backend

LOOPBACK = ["127.0.0.0/8"]
FAST = DeliveryConfig(
    backoff_initial=0.01, backoff_max=0.05, max_attempts=4, read_timeout=5, allow_networks=LOOPBACK
)


@dataclass
class Receiver:
    """A loopback HTTP receiver answering from a script of statuses (then 200)."""

    script: list[int] = field(default_factory=list)
    delay: float = 0.0
    got: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        fields = dict(parse_qsl(body.decode())) if body else dict(parse_qsl(request.query_string))
        self.got.append({"method": request.method, "path": request.path, "fields": fields,
                         "key": request.headers.get("Idempotency-Key"), "at": time.monotonic(),
                         "query": request.query_string})  # fmt: skip
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.script.pop(0) if self.script else 200)


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[dict[str, Receiver], str]]:
    recs = {name: Receiver() for name in ("a", "b")}
    app = web.Application()
    for name, rec in recs.items():
        app.router.add_route("*", f"/{name}", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield recs, f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest.fixture
def store(store_backend: Backend) -> Store:
    return store_backend.open()  # type: ignore[no-any-return]


def event(n: int, kind: str = "hangup") -> dict[str, Any]:
    return {"EventType": kind, "CallID": f"call-{n}", "EventTime": 1000 + n, "Duration": 0}


async def run(store: Store, config: DeliveryConfig = FAST) -> Dispatcher:
    async with WebhookClient() as session:
        d = Dispatcher(store, config, session)
        d.wake()
        await asyncio.wait_for(d.idle(), 20)
        return d


async def test_get_and_post_deliver_the_fields(receivers: Any, store: Store) -> None:
    """GET carries the fields in the query after the URL's own; POST in a form body; one key each."""
    recs, base = receivers
    store.add_subscription(175, "hangup", f"{base}/a?myid=175", "GET")
    store.add_subscription(175, "hangup", f"{base}/b", "POST")
    store.enqueue(175, event(1))
    await run(store)
    a, b = recs["a"].got, recs["b"].got
    assert a[0]["method"] == "GET" and a[0]["query"].startswith("myid=175&")
    assert a[0]["fields"]["CallID"] == "call-1" and a[0]["fields"]["EventTime"] == "1001"
    assert b[0]["method"] == "POST" and b[0]["fields"]["EventType"] == "hangup"
    assert a[0]["key"] and b[0]["key"] and a[0]["key"] != b[0]["key"]
    assert store.deliveries("delivered") and not store.deliveries("pending")


async def test_only_matching_subscriptions_get_the_event(receivers: Any, store: Store) -> None:
    """An event goes to its extension's subscriptions of its type, nowhere else."""
    recs, base = receivers
    store.add_subscription(175, "dial-in", f"{base}/a", "GET")
    store.add_subscription(176, "hangup", f"{base}/a", "GET")
    assert store.enqueue(175, event(1, "hangup")) == []
    await run(store)
    assert recs["a"].got == []


async def test_events_arrive_in_order_per_subscription(receivers: Any, store: Store) -> None:
    """Ten events for one subscription arrive in the order they were committed."""
    recs, base = receivers
    store.add_subscription(175, "hangup", f"{base}/a", "POST")
    for n in range(10):
        store.enqueue(175, event(n))
    recs["a"].script = [500, 200, 503]  # retries must not reorder
    await run(store)
    calls = [g["fields"]["CallID"] for g in recs["a"].got]
    assert calls[:4] == ["call-0", "call-0", "call-1", "call-1"]  # each retried before the next
    assert list(dict.fromkeys(calls)) == [f"call-{n}" for n in range(10)]
    assert calls == sorted(calls, key=lambda c: int(c.split("-")[1]))


async def test_retries_keep_the_idempotency_key(receivers: Any, store: Store) -> None:
    """500, timeout-like 503 and 429 are retried; every attempt carries the same key."""
    recs, base = receivers
    store.add_subscription(175, "hangup", f"{base}/a", "GET")
    store.enqueue(175, event(1))
    recs["a"].script = [500, 429, 503]
    d = await run(store)
    keys = {g["key"] for g in recs["a"].got}
    assert len(recs["a"].got) == 4 and len(keys) == 1
    assert d.outcomes["retry"] == 3 and d.outcomes["delivered"] == 1


async def test_gives_up_after_max_attempts_and_can_retry(receivers: Any, store: Store) -> None:
    """After max_attempts the delivery is failed and listed; retry_failed sends it again."""
    recs, base = receivers
    store.add_subscription(175, "hangup", f"{base}/a", "GET")
    store.enqueue(175, event(1))
    recs["a"].script = [503] * 4
    await run(store)
    failed = store.deliveries("failed")
    assert len(failed) == 1 and failed[0]["attempts"] == 4 and failed[0]["last_status"] == 503
    assert store.retry_failed() == 1
    await run(store)
    assert len(recs["a"].got) == 5 and store.deliveries("failed") == []


@pytest.mark.parametrize(
    ("status", "attempts", "disabled"), [(404, 1, False), (400, 1, False), (410, 1, True)]
)
async def test_client_errors_are_not_retried(receivers: Any, store: Store, status: int, attempts: int,
                                             disabled: bool) -> None:  # fmt: skip
    """4xx (other than 429) fails at once; 410 also disables the subscription."""
    recs, base = receivers
    sub = store.add_subscription(175, "hangup", f"{base}/a", "GET")
    store.enqueue(175, event(1))
    recs["a"].script = [status]
    await run(store)
    assert len(recs["a"].got) == attempts
    assert store.deliveries("failed")[0]["last_status"] == status
    assert (store.matching(175, "hangup") == []) is disabled
    del sub


async def test_dead_receiver_does_not_delay_others(receivers: Any, store: Store) -> None:
    """A receiver that refuses connections only delays its own deliveries."""
    recs, base = receivers
    store.add_subscription(175, "hangup", "http://127.0.0.1:9/dead", "GET")  # discard port: refused
    store.add_subscription(175, "hangup", f"{base}/b", "GET")
    store.enqueue(175, event(1))
    slow = DeliveryConfig(backoff_initial=0.3, backoff_max=0.3, max_attempts=3, allow_networks=LOOPBACK)
    started = time.monotonic()
    await run(store, slow)
    assert recs["b"].got[0]["at"] - started < 0.25
    assert store.deliveries("failed")[0]["last_error"].startswith("ClientConnectorError")


async def test_slow_receiver_does_not_delay_others(receivers: Any, store: Store) -> None:
    """While one receiver takes 1 s to answer, another gets its events at once."""
    recs, base = receivers
    recs["a"].delay = 1.0
    store.add_subscription(175, "hangup", f"{base}/a", "GET")
    store.add_subscription(175, "hangup", f"{base}/b", "GET")
    store.enqueue(175, event(1))
    store.enqueue(175, event(2))
    started = time.monotonic()
    await run(store)
    assert recs["b"].got[1]["at"] - started < 0.5
    assert len(recs["a"].got) == 2


async def test_pending_deliveries_survive_a_restart(receivers: Any, tmp_path: Path) -> None:
    """Events committed before a stop are delivered by the next process, none lost."""
    recs, base = receivers
    first = Store(tmp_path / "bridge.db")
    first.add_subscription(175, "hangup", f"{base}/a", "POST")
    for n in range(3):
        first.enqueue(175, event(n))
    first.close()  # the process stops before sending anything
    second = Store(tmp_path / "bridge.db")
    await run(second)
    assert [g["fields"]["CallID"] for g in recs["a"].got] == ["call-0", "call-1", "call-2"]


async def test_ssrf_guard_blocks_delivery_without_retry(receivers: Any, store: Store) -> None:
    """A subscription to a loopback receiver is not called unless allowed; it fails at once."""
    recs, base = receivers
    store.add_subscription(175, "hangup", f"{base}/a", "GET")
    store.enqueue(175, event(1))
    await run(store, DeliveryConfig(backoff_initial=0.01, max_attempts=5))
    assert recs["a"].got == []
    failed = store.deliveries("failed")
    assert failed[0]["attempts"] == 1 and "SSRF guard" in failed[0]["last_error"]


async def test_guarded_resolver_drops_internal_addresses() -> None:
    """Names resolving to refused addresses never reach a connection (DNS rebinding too)."""
    from bridge.delivery.guard import GuardedResolver, SsrfBlocked, parse_networks

    guard = GuardedResolver(parse_networks([]))
    with pytest.raises(SsrfBlocked):
        await guard.resolve("localhost", 80)
    allowed = GuardedResolver(parse_networks(["127.0.0.0/8", "::1/128"]))
    assert {r["host"] for r in await allowed.resolve("localhost", 80)} <= {"127.0.0.1", "::1"}
    await guard.close()
    await allowed.close()


async def test_pushed_deliveries_are_sent_without_reading_the_store(receivers: Any, store: Store) -> None:
    """What enqueue_many returns goes straight to push(); outcomes reach the store by idle()."""
    recs, base = receivers
    store.add_subscription(175, "hangup", f"{base}/a", "POST")
    store.add_subscription(176, "hangup", f"{base}/b", "POST")
    async with WebhookClient() as session:
        d = Dispatcher(store, FAST, session)
        pushed = store.enqueue_many([(175, event(1)), (176, event(2)), (175, event(3))])
        assert [p.subscription_id for p in pushed] == [1, 2, 1] and pushed[0].event["CallID"] == "call-1"
        d.push(pushed)
        await asyncio.wait_for(d.idle(), 20)
    assert [g["fields"]["CallID"] for g in recs["a"].got] == ["call-1", "call-3"]
    assert len(store.deliveries("delivered")) == 3 and store.deliveries("pending") == []


async def test_a_backlog_beyond_the_window_waits_in_the_store(receivers: Any, store: Store,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Past WINDOW queued deliveries, the rest is read back from the store, in order, once each."""
    monkeypatch.setattr(Dispatcher, "WINDOW", 3)
    recs, base = receivers
    store.add_subscription(175, "hangup", f"{base}/a", "POST")
    async with WebhookClient() as session:
        d = Dispatcher(store, FAST, session)
        for n in range(10):
            d.push(store.enqueue(175, event(n)))
        await asyncio.wait_for(d.idle(), 20)
    assert [g["fields"]["CallID"] for g in recs["a"].got] == [f"call-{n}" for n in range(10)]


async def test_retry_from_another_process_is_picked_up(receivers: Any, tmp_path: Path) -> None:
    """`ami-bridge deliveries --retry` writes the file from another process: the running
    dispatcher notices (data_version) and sends the delivery again."""
    recs, base = receivers
    store = Store(tmp_path / "bridge.db")
    store.add_subscription(175, "hangup", f"{base}/a", "GET")
    recs["a"].script = [404]
    async with WebhookClient() as session:
        d = Dispatcher(store, FAST, session)
        d.WATCH_INTERVAL = 0.05
        d.start()
        d.push(store.enqueue(175, event(1)))
        await asyncio.wait_for(d.idle(), 20)
        assert len(store.deliveries("failed")) == 1
        other = Store(tmp_path / "bridge.db")  # as the CLI would
        assert other.retry_failed() == 1
        other.close()
        for _ in range(100):
            if len(recs["a"].got) == 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.wait_for(d.idle(), 20)
        await d.close()
    assert len(recs["a"].got) == 2 and len(store.deliveries("delivered")) == 1


def test_subscription_cache_follows_every_write(tmp_path: Path) -> None:
    """matching() comes from memory, yet sees adds, updates, disables and deletes, and those
    of another process."""
    store = Store(tmp_path / "bridge.db")
    a = store.add_subscription(175, "hangup", "http://x/a", "GET")
    assert store.matching(175, "hangup") == [a]
    b = store.add_subscription(175, "hangup", "http://x/b", "GET")
    assert store.matching(175, "hangup") == [a, b]
    store.update_subscription(dataclass_replace(b, event_type="answer"))
    assert store.matching(175, "hangup") == [a] and store.matching(175, "answer")[0].url == "http://x/b"
    store.disable_subscription(a.id, "test")
    assert store.matching(175, "hangup") == [] and store.enqueue(175, event(1)) == []
    other = Store(tmp_path / "bridge.db")
    c = other.add_subscription(175, "hangup", "http://x/c", "GET")
    other.close()
    assert [d.subscription_id for d in store.enqueue(175, event(2))] == [c.id]
    assert store.delete_subscriptions(175) == 3 and store.matching(175, "answer") == []
    store.close()


def test_batched_ids_are_the_ones_in_the_file_and_never_reused(tmp_path: Path) -> None:
    """enqueue_many hands out ids itself (one executemany per table, the last ids kept in
    memory): they are what the rows carry, they continue after rows another process
    inserted, and an id once given is never given again, even after its rows are gone."""
    store = Store(tmp_path / "ids.db")
    sub = store.add_subscription(175, "hangup", "http://127.0.0.1:9/x", "POST")
    first = store.enqueue_many([(175, event(1)), (175, event(2)), (999, event(3))])
    assert [(d.id, d.event_id) for d in first] == [(1, 1), (2, 2)]
    other = sqlite3.connect(tmp_path / "ids.db", isolation_level=None)  # another process, as it were
    other.execute("INSERT INTO events (extension_id, event_type, payload) VALUES (1, 'x', '{}')")  # id 4
    other.execute("DELETE FROM deliveries")
    other.execute("DELETE FROM events WHERE id = 4")
    other.close()
    later = store.enqueue_many([(175, event(4))])
    assert [(d.id, d.event_id, d.subscription_id) for d in later] == [(3, 5, sub.id)]
    rows = store.db.execute(
        "SELECT d.id, e.id, e.payload FROM deliveries d JOIN events e ON e.id = d.event_id"
    )
    assert [(r[0], r[1], '"CallID": "call-4"' in r[2]) for r in rows] == [(3, 5, True)]
    store.close()


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=40), st.integers()), max_size=20))
def test_the_outbox_stores_events_as_json_dumps_would(event: dict[str, object]) -> None:
    """The store's own encoder (the C one, made once) writes what json.dumps writes, and
    what json.loads reads back."""
    from bridge.store import _to_json

    assert _to_json(event) == json.dumps(event, ensure_ascii=False)
    assert json.loads(_to_json(event)) == event


#: the outbox as version 1 of the schema made it (its index held every delivery)
SCHEMA_V1 = """
CREATE TABLE subscriptions (id INTEGER PRIMARY KEY AUTOINCREMENT, extension_id INTEGER NOT NULL,
    event_type TEXT NOT NULL, url TEXT NOT NULL, method TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT);
CREATE INDEX subscriptions_ext ON subscriptions (extension_id, event_type);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, extension_id INTEGER NOT NULL,
    event_type TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id INTEGER NOT NULL REFERENCES events (id),
    subscription_id INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0, last_status INTEGER, last_error TEXT);
CREATE INDEX deliveries_pending ON deliveries (state, subscription_id, id);
INSERT INTO subscriptions (extension_id, event_type, url, method) VALUES (175, 'hangup', 'http://h/x', 'POST');
INSERT INTO events (extension_id, event_type, payload) VALUES (175, 'hangup', '{"CallID": "old"}');
INSERT INTO deliveries (event_id, subscription_id) VALUES (1, 1);
INSERT INTO deliveries (event_id, subscription_id, state, attempts) VALUES (1, 1, 'failed', 8);
INSERT INTO deliveries (event_id, subscription_id, state, attempts) VALUES (1, 1, 'delivered', 1);
PRAGMA user_version = 1;
"""


def test_a_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    """Opening a store written by version 1: its pending, failed and delivered rows stay as
    they were, found through the new partial indexes; new ids follow the old ones."""
    old = sqlite3.connect(tmp_path / "v1.db", isolation_level=None)
    old.executescript(SCHEMA_V1)
    old.close()
    store = Store(tmp_path / "v1.db")
    indexes = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"subscriptions_ext", "deliveries_pending_by_subscription", "deliveries_failed"} <= indexes
    assert "deliveries_pending" not in indexes
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    assert store.call_events("old") == [(175, {"CallID": "old"})]  # indexed for the call history
    assert store.call_reached("old") == {175}
    assert store.pending_subscriptions() == [1]
    assert [(d.id, d.event) for d in store.pending(1, 10)] == [(1, {"CallID": "old"})]
    assert [(r["id"], r["attempts"]) for r in store.deliveries("failed")] == [(2, 8)]
    assert [r["id"] for r in store.deliveries("delivered")] == [3]
    assert (store.count_deliveries("pending"), store.count_deliveries("failed")) == (1, 1)
    plan = store.db.execute("EXPLAIN QUERY PLAN SELECT COUNT(*) FROM deliveries WHERE state = 'failed'")
    assert "deliveries_failed" in str(plan.fetchall())
    assert [(d.id, d.event_id) for d in store.enqueue(175, event(2))] == [(4, 2)]
    assert store.retry_failed() == 1 and store.count_deliveries("pending") == 3
    store.close()
    Store(tmp_path / "v1.db").close()  # and opened again as version 4: nothing to do


def test_checkpoints_run_in_a_thread_of_their_own(tmp_path: Path) -> None:
    """With background checkpoints, commits never copy the WAL into the file themselves
    (autocheckpoint off); the thread does, soon after; close() stops it."""
    store = Store(tmp_path / "c.db")
    store.add_subscription(175, "hangup", "http://127.0.0.1:9/x", "POST")
    store.checkpoint_in_background(interval=0.01)
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    size = (tmp_path / "c.db").stat().st_size
    for n in range(20):
        store.enqueue_many([(175, event(100 * n + i)) for i in range(100)])
    deadline = time.monotonic() + 10
    while (tmp_path / "c.db").stat().st_size < size + 200_000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (tmp_path / "c.db").stat().st_size >= size + 200_000  # the 2,000 events' pages
    thread = store._checkpointer
    assert thread is not None and thread.is_alive()
    store.close()
    assert not thread.is_alive()
    check = Store(tmp_path / "c.db")
    assert check.count_deliveries("pending") == 2000
    check.close()


async def test_outcomes_ride_with_the_next_events_commit(tmp_path: Path) -> None:
    """take_marks hands the outcomes not written yet to a caller that commits them with
    its events (one transaction); return_marks puts them back when that fails, and the
    dispatcher then writes them itself."""
    store = Store(tmp_path / "m.db")
    sub = store.add_subscription(175, "hangup", "http://127.0.0.1:9/x", "POST")
    first = store.enqueue_many([(175, event(1)), (175, event(2))])
    dispatcher = Dispatcher(store, FAST, WebhookClient())
    dispatcher._mark(first[0].id, "delivered", 1, status=200)
    dispatcher._mark(first[1].id, "failed", 3, status=500, error="HTTP 500")
    marks = dispatcher.take_marks()
    assert len(marks) == 2 and len(dispatcher.take_marks()) == 0
    commits = store._commits
    later = store.enqueue_many([(175, event(3))], marks)
    assert store._commits == commits + 1
    assert [r["id"] for r in store.deliveries("delivered")] == [first[0].id]
    assert [(r["id"], r["last_error"]) for r in store.deliveries("failed")] == [(first[1].id, "HTTP 500")]
    assert [d.id for d in store.pending(sub.id, 10)] == [later[0].id]
    dispatcher._mark(later[0].id, "delivered", 1, status=200)
    dispatcher.return_marks(dispatcher.take_marks())  # as when the commit failed
    await asyncio.sleep(Dispatcher.MARK_DELAY * 3)
    assert store.pending(sub.id, 10) == [] and len(store.deliveries("delivered")) == 2
    await dispatcher.close()
    store.close()
