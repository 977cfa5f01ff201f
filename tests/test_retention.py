"""store.retention: each kind is pruned after its own time and nothing else is (pending
deliveries never), the call history answers inside its window only, pruning runs beside
the pipeline's commits without losing any, and a version-3 store file upgrades."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.api import make_app
from bridge.api.common import CLOCK_KEY
from bridge.config import ConfigError, Retention, parse_config
from bridge.replay import replay_bytes
from bridge.retention import Pruner
from bridge.store import SCHEMA_VERSION, Store
from bridge.translate import Translator
from tests.conftest import FIXTURES, Backend

DAY = 86400.0
#: the tests' "now" at the start (unix seconds)
T0 = 1_800_000_000.0
AMI = "ami: {username: bridge, secret: s}\n"


def ev(kind: str, call: str | None, at: float, ext: int = 101) -> tuple[int, dict[str, Any]]:
    """An event of extension ``ext`` at unix time ``at`` (a call's when ``call`` is given)."""
    event: dict[str, Any] = {"EventType": kind, "EventTime": int(at * 1_000_000), "CallerIDNum": "100"}
    if call is not None:
        event |= {"CallID": call, "SubCallID": f"{call}-1"}
    return ext, event


def call(call_id: str, at: float, ext: int = 101) -> list[tuple[int, dict[str, Any]]]:
    return [ev(k, call_id, at + i, ext) for i, k in enumerate(("dial-in", "answer", "hangup"))]


def rows(store: Store, table: str) -> int:
    return int(store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def event_ids(store: Store) -> set[int]:
    return {r[0] for r in store.db.execute("SELECT id FROM events")}


def deliver(store: Store, deliveries: list[Any], state: str = "delivered") -> None:
    store.mark_many([(state, 1, 0.0, 200 if state == "delivered" else 500, None, d.id) for d in deliveries])


@pytest.fixture
def store(store_backend: Backend) -> Any:
    s = store_backend.open("b.db")
    for kind in ("dial-in", "answer", "hangup", "message-in"):
        s.add_subscription(101, kind, "http://127.0.0.1:9/hook", "POST")
    yield s
    s.close()


def pruner(store: Store, **retention: Any) -> Pruner:
    return store.pruner(Retention(**retention), pause=0)


# ---- configuration -------------------------------------------------------------------------


def test_the_defaults_keep_a_week_a_month_and_a_quarter() -> None:
    r = parse_config(AMI).store.retention
    assert (r.delivered, r.failed, r.history, r.interval) == (7 * DAY, 30 * DAY, 90 * DAY, 60.0)
    assert r.calls == 90 * DAY


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("7d", 7 * DAY), ("12h", 43200.0), ("30m", 1800.0), ("45s", 45.0), ("2w", 14 * DAY), ("1.5h", 5400.0),
     (3600, 3600.0), ("3600", 3600.0), (0, None), ("0d", None), ("null", None)],
)  # fmt: skip
def test_durations_are_seconds_or_a_number_with_a_unit(raw: object, seconds: float | None) -> None:
    r = parse_config(AMI + f"store: {{retention: {{delivered: {raw}}}}}").store.retention
    assert r.delivered == seconds


def test_a_forever_retention_keeps_calls_forever() -> None:
    r = parse_config(AMI + "store: {retention: {history: 0}}").store.retention
    assert r.history is None and r.calls is None
    longer = parse_config(AMI + "store: {retention: {history: 1d, delivered: 3d}}").store.retention
    assert longer.calls == 3 * DAY  # a call's events are delivered events too


@pytest.mark.parametrize(
    ("text", "says"),
    [("delivered: 7 days", "store.retention.delivered: '7 days' is not a duration"),
     ("history: -1", "store.retention.history: -1 is not a duration"),
     ("failed: 5y", "store.retention.failed: '5y' is not a duration"),
     ("failed: true", "store.retention.failed: True is not a duration"),
     ("interval: 0", "store.retention.interval: 0: the pruning needs an interval"),
     ("keep: 1d", "store.retention.keep: unknown key")],
)  # fmt: skip
def test_a_bad_retention_names_its_key_and_the_fix(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(AMI + f"store: {{retention: {{{text}}}}}", "bridge.yaml")
    assert says in str(err.value)
    if "duration" in says:
        assert "30m, 12h, 7d" in str(err.value) and "0 or null keeps forever" in str(err.value)


def test_config_example_documents_the_retention() -> None:
    text = (FIXTURES.parent / "config.example.yaml").read_text()
    assert "retention:" in text
    example = parse_config(text).store.retention
    assert example == Retention()


# ---- what each kind prunes -----------------------------------------------------------------


def test_events_outside_calls_go_after_delivered_unless_held(store: Store) -> None:
    """A delivered (or unsubscribed) SIP message goes after ``delivered``; a pending one
    stays however old; a failed one stays until ``failed``."""
    done = store.enqueue_many([ev("message-in", None, T0)])
    deliver(store, done)
    store.enqueue_many([ev("message-in", None, T0, ext=999)])  # nobody subscribed
    pending = store.enqueue_many([ev("message-in", None, T0)])
    failed = store.enqueue_many([ev("message-in", None, T0)])
    deliver(store, failed, "failed")
    young = store.enqueue_many([ev("message-in", None, T0 + 5 * DAY)])
    deliver(store, young)
    p = pruner(store, delivered="7d", failed="30d")
    assert sum(p.run(T0 + 6 * DAY).values()) == 0
    p.run(T0 + 8 * DAY)
    assert event_ids(store) == {pending[0].event_id, failed[0].event_id, young[0].event_id}
    assert p.pruned["events"] == 2 and p.pruned["deliveries"] == 1
    p.run(T0 + 31 * DAY)
    assert event_ids(store) == {pending[0].event_id}
    assert store.deliveries("failed") == [] and store.count_deliveries("pending") == 1
    p.run(T0 + 1000 * DAY)
    assert event_ids(store) == {pending[0].event_id}  # pending: never
    deliver(store, pending)
    p.run(T0 + 1000 * DAY)
    assert event_ids(store) == set() and rows(store, "deliveries") == 0


def test_a_restarted_pruner_still_finds_the_events_it_passed_while_held(store: Store) -> None:
    pending = store.enqueue_many([ev("message-in", None, T0)])
    store.enqueue_many([ev("message-in", None, T0 + i, ext=999) for i in range(1, 50)])
    pruner(store, delivered="1d").run(T0 + 2 * DAY)
    assert event_ids(store) == {pending[0].event_id}
    deliver(store, pending)
    again = pruner(store, delivered="1d")  # a new process: its held set is empty
    again.run(T0 + 2 * DAY)
    assert event_ids(store) == set()


def test_calls_stay_for_their_history_even_when_delivered(store: Store) -> None:
    """A call's events, extensions and deliveries stay while the call is inside
    ``history`` (the history is built from them), and all go together after it."""
    old = store.enqueue_many(call("old", T0))
    deliver(store, old)
    new = store.enqueue_many(call("new", T0 + 50 * DAY))
    deliver(store, new)
    p = pruner(store, delivered="7d", history="90d")
    p.run(T0 + 89 * DAY)
    assert rows(store, "events") == 6 and store.call_reached("old") == {101}
    p.run(T0 + 91 * DAY)
    assert store.call_reached("old") is None and store.call_events("old") == []
    assert len(store.call_events("new")) == 3 and store.call_reached("new") == {101}
    assert rows(store, "deliveries") == 3 and rows(store, "call_extensions") == 1
    assert (p.pruned["calls"], p.pruned["events"], p.pruned["deliveries"]) == (1, 3, 3)


def test_a_call_with_a_pending_delivery_is_never_pruned(store: Store) -> None:
    events = call("c", T0)
    done = store.enqueue_many(events[:2])
    deliver(store, done)
    pending = store.enqueue_many(events[2:])
    p = pruner(store, delivered="1d", history="1d", failed="1d")
    p.run(T0 + 1000 * DAY)
    assert len(store.call_events("c")) == 3 and store.call_reached("c") == {101}
    deliver(store, pending)
    p.run(T0 + 1000 * DAY)
    assert store.call_reached("c") is None and rows(store, "events") == 0


def test_a_failed_delivery_is_kept_for_its_own_retention(store: Store) -> None:
    """``failed`` longer than ``history``: the call stays while its failed delivery does;
    ``failed`` shorter: the failed delivery goes, the call stays for its history."""
    failed = store.enqueue_many(call("c", T0))
    deliver(store, failed, "failed")
    p = pruner(store, delivered="7d", history="10d", failed="30d")
    p.run(T0 + 20 * DAY)
    assert len(store.deliveries("failed")) == 3 and store.call_reached("c") == {101}
    p.run(T0 + 31 * DAY)
    assert store.deliveries("failed") == [] and store.call_reached("c") is None and rows(store, "events") == 0

    again = store.enqueue_many(call("d", T0 + 40 * DAY))
    deliver(store, again, "failed")
    p = pruner(store, delivered="7d", history="90d", failed="30d")
    p.run(T0 + 71 * DAY)
    assert store.deliveries("failed") == [] and len(store.call_events("d")) == 3
    p.run(T0 + 131 * DAY)
    assert store.call_reached("d") is None and rows(store, "events") == 0


def test_forever_prunes_nothing_but_expired_tokens(store: Store) -> None:
    deliver(store, store.enqueue_many([*call("c", T0), ev("message-in", None, T0)]))
    deliver(store, store.enqueue_many(call("f", T0)), "failed")
    store.add_token(b"a" * 32, "crm", T0 + 3600, T0)
    store.add_token(b"b" * 32, "crm", T0 + 30 * DAY, T0)
    p = pruner(store, delivered=0, failed=None, history=0)
    done = p.run(T0 + 10 * 365 * DAY)
    assert done["tokens"] == 2 and sum(done.values()) == 2
    assert rows(store, "events") == 7 and rows(store, "deliveries") == 7 and rows(store, "calls") == 2
    assert store.token(b"a" * 32) is None


def test_an_expired_token_is_pruned_and_a_valid_one_kept(store: Store) -> None:
    store.add_token(b"a" * 32, "crm", T0 + 3600, T0)
    store.add_token(b"b" * 32, "crm", T0 + 7200, T0)
    assert pruner(store).run(T0 + 3600)["tokens"] == 1
    assert store.token(b"a" * 32) is None and store.token(b"b" * 32) == ("crm", T0 + 7200)


# ---- the call history and recordings through the API ---------------------------------------


LAB = (FIXTURES / "lab.yaml").read_text()
ADMIN = "admin-token-0123456789"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Store, list[tuple[int, Any]]]]:
    config = parse_config(LAB + f"api: {{tokens: [{{token: {ADMIN}}}]}}\n")
    store = Store(tmp_path / "b.db")
    t = Translator(config)
    t.keep_recordings = True
    events = list(replay_bytes(t, [(FIXTURES / "inbound-did-recorded.ami").read_bytes()]))
    records, done = t.take_recordings()
    store.enqueue_many(events, None, records, done)
    app = make_app(config, store)
    app[CLOCK_KEY] = lambda: T0
    async with TestClient(TestServer(app)) as client:
        yield client, store, events
    store.close()


async def test_the_history_answers_inside_its_window_and_404_outside(
    api: tuple[TestClient[Any, Any], Store, list[tuple[int, Any]]],
) -> None:
    client, store, events = api
    auth = {"Authorization": f"Bearer {ADMIN}"}
    call_id = events[0][1]["CallID"]
    began = min(e["EventTime"] for _, e in events) / 1_000_000
    rec = next(e["RecID"] for _, e in events if "RecID" in e)
    p = pruner(store, delivered="7d", history="30d")
    p.run(began + 29 * DAY)
    resp = await client.get(f"/api/ver1.0/client/@me/call_history/{call_id}", headers=auth)
    assert resp.status == 200 and (await resp.json())["call_uuid"] == call_id
    assert store.record(rec) is not None
    p.run(began + 31 * DAY)
    resp = await client.get(f"/api/ver1.0/client/@me/call_history/{call_id}", headers=auth)
    assert resp.status == 404
    listed = await (await client.get("/api/ver1.0/client/@me/call_history/", headers=auth)).json()
    assert listed["call_history"] == []
    assert store.record(rec) is None and p.pruned["records"] == 1  # its row; the file is the PBX's


# ---- beside the pipeline ----------------------------------------------------------------


def test_pruning_beside_enqueue_many_loses_nothing(store: Store) -> None:
    """A thread prunes in a loop while the main thread commits batches of calls (each
    delivered at once) as the pipeline does: every commit succeeds, every event committed
    is either still there or was old enough, and the old ones all go."""
    p = store.pruner(Retention(delivered="1d", history="1d"), batch=200)
    clock = [T0]
    stop = threading.Event()
    errors: list[BaseException] = []

    def prune() -> None:
        try:
            while not stop.is_set():
                p.run(clock[0])
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    thread = threading.Thread(target=prune)
    thread.start()
    committed: dict[int, float] = {}
    try:
        for batch in range(400):
            at = T0 + batch * 0.01 * DAY  # four days in all
            clock[0] = at
            events = [e for c in range(5) for e in call(f"c{batch}-{c}", at)] + [ev("message-in", None, at)]
            out = store.enqueue_many(events)
            deliver(store, out)
            committed.update({d.event_id: at for d in out})
    finally:
        stop.set()
        thread.join()
    assert not errors
    p.run(clock[0])
    now = clock[0]
    left = event_ids(store)
    assert {i for i, at in committed.items() if at >= now - DAY + 10} <= left  # the young: all there
    assert all(committed[i] >= now - DAY - 10 for i in left)  # the old: all gone
    assert rows(store, "deliveries") == len(left) and store.count_deliveries("pending") == 0
    assert p.pruned["events"] == len(committed) - len(left)


# ---- the schema ---------------------------------------------------------------------------


def test_a_version_3_store_upgrades_on_opening(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    s = Store(path)
    s.add_subscription(101, "hangup", "http://127.0.0.1:9/h", "POST")
    s.enqueue_many(call("c", T0))
    s.close()
    db = sqlite3.connect(path)
    db.execute("DROP INDEX deliveries_by_event")
    db.execute("DROP INDEX records_by_call")
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    s = Store(path)
    try:
        assert s.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        names = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"deliveries_by_event", "records_by_call"} <= names
        assert len(s.call_events("c")) == 3 and s.count_deliveries("pending") == 1
        plan = s.db.execute("EXPLAIN QUERY PLAN DELETE FROM deliveries WHERE event_id IN (1, 2)").fetchall()
        assert "deliveries_by_event" in str(plan)
    finally:
        s.close()


def test_the_daemon_s_thread_prunes_and_stops_with_the_store(store: Store) -> None:
    deliver(store, store.enqueue_many([ev("message-in", None, T0)]))
    store.prune_in_background(Retention(delivered="1d", interval=1), clock=lambda: T0 + 2 * DAY)
    pruning = store.pruning
    assert pruning is not None
    for _ in range(200):
        if pruning.pruner.passes:
            break
        threading.Event().wait(0.01)
    assert pruning.pruner.pruned["events"] == 1 and pruning.pruner.last_at == T0 + 2 * DAY
    assert rows(store, "events") == 0
    store.close()
    assert store.pruning is None
