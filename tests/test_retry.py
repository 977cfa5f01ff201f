"""Issue 18's delivery rules against real loopback receivers: the retry schedule, Retry-After,
the old backoff keys, disabling a failing subscription, every attempt stored and listed,
resend, recover, and the store's upgrade from version 4."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.api import make_app
from bridge.api.common import DISPATCHER_KEY
from bridge.config import DEFAULT_SCHEDULE, ConfigError, DeliveryConfig, parse_config
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.http import AiohttpClient, WebhookClient
from bridge.mqtt import MqttMirror
from bridge.retention import Pruner
from bridge.store import SCHEMA_VERSION, Store, Subscription
from tests.conftest import Backend

LOOPBACK = ["127.0.0.0/8"]
T0 = 1_800_000_000.0


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


@dataclass
class Receiver:
    """Answers from a script (then 200 "ok"); records each request's idempotency key."""

    script: list[Answer] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.keys.append(request.headers.get("Idempotency-Key"))
        a = self.script.pop(0) if self.script else Answer()
        return web.Response(status=a.status, headers=a.headers, body=a.body)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/hook", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield rec, f"http://127.0.0.1:{server.port}/hook"
    await server.close()


@pytest.fixture
def store(store_backend: Backend) -> Store:
    return store_backend.open()  # type: ignore[no-any-return]


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Top:
    """An rng whose uniform(a, b) is b: the longest jitter."""

    def uniform(self, a: float, b: float) -> float:
        return b


def event(n: int, at: float = T0) -> dict[str, Any]:
    return {"EventType": "hangup", "CallID": f"call-{n}", "EventTime": int(at * 1_000_000) + n}


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def one_attempt(store: Store, config: DeliveryConfig, rec: Receiver,
                      client: Any = None) -> float:  # fmt: skip
    """Send the store's pending delivery once; the wait it was given before its next attempt."""
    clock = Clock()
    async with client or WebhookClient() as session:
        d = Dispatcher(store, config, session, clock=clock, rng=Top())  # type: ignore[arg-type]
        d.wake()
        await until(lambda: len(rec.keys) == 1)
        await until(lambda: d.outcomes["retry"] + d.outcomes["failed"] == 1)
        await d.close()
    (pending,) = store.pending(1, 10)
    return pending.next_at - clock.now


# ---- the schedule -----------------------------------------------------------------------


def test_default_schedule_is_svix_s_with_small_jitter() -> None:
    """Attempt n+1 waits schedule[n] (up to 10% more); after len(schedule) attempts, none."""
    config = DeliveryConfig()
    assert config.schedule == DEFAULT_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    d = Dispatcher(Store(":memory:"), config, WebhookClient(), rng=Top())
    assert [d.retry_delay(n) for n in range(1, 8)] == pytest.approx([s * 1.1 for s in DEFAULT_SCHEDULE[1:]])
    assert d.retry_delay(8) is None

    class Low(Top):
        def uniform(self, a: float, b: float) -> float:
            return a

    d.rng = Low()  # type: ignore[assignment]
    assert d.retry_delay(2) == 300.0


def test_retry_schedule_is_configurable_with_units() -> None:
    config = parse_config("ami: {username: u, secret: s}\ndelivery: {retry_schedule: [0, 30, 5s, 5m, 2h]}\n")
    assert config.delivery.schedule == (0, 30, 5, 300, 7200)
    d = Dispatcher(Store(":memory:"), config.delivery, WebhookClient(), rng=Top())
    assert d.retry_delay(4) == pytest.approx(7920.0) and d.retry_delay(5) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[]", "delivery: retry_schedule: give at least one entry"),
        ("[5s, 5m]", "retry_schedule[0]: the first attempt is made at once; start with 0"),
        ("[0, soon]", "delivery.retry_schedule[1]: 'soon' is not a wait: give a wait in seconds"),
        ("[0, -5]", "delivery.retry_schedule[1]: -5 is not a wait"),
    ],
)
def test_a_bad_retry_schedule_is_refused_clearly(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"ami: {{username: u, secret: s}}\ndelivery: {{retry_schedule: {value}}}\n")
    assert message in str(err.value)


def test_old_backoff_keys_keep_the_exponential_backoff() -> None:
    """A configuration setting backoff_initial/backoff_max/max_attempts (and no schedule)
    keeps their behaviour; a retry_schedule wins over them."""
    config = parse_config("ami: {username: u, secret: s}\ndelivery: {backoff_initial: 2, max_attempts: 3}\n")
    assert config.delivery.schedule is None
    d = Dispatcher(Store(":memory:"), config.delivery, WebhookClient(), rng=Top())
    assert [d.retry_delay(n) for n in (1, 2)] == [2.0, 4.0]  # full jitter's top: initial * 2^(n-1)
    assert d.retry_delay(3) is None
    both = DeliveryConfig(max_attempts=3, retry_schedule=[0, 1])
    assert both.schedule == (0, 1)


# ---- Retry-After --------------------------------------------------------------------------

SCHEDULE = DeliveryConfig(retry_schedule=[0, 10, 600], allow_networks=LOOPBACK, disable_after=0)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_waited_at_least(receiver: Any, store: Store, status: int) -> None:
    rec, url = receiver
    store.add_subscription(175, "hangup", url, "POST")
    store.enqueue(175, event(1))
    rec.script = [Answer(status, {"Retry-After": "120"})]
    assert await one_attempt(store, SCHEDULE, rec) == pytest.approx(120.0)


async def test_retry_after_as_an_http_date(receiver: Any, store: Store) -> None:
    rec, url = receiver
    store.add_subscription(175, "hangup", url, "POST")
    store.enqueue(175, event(1))
    import time

    rec.script = [Answer(429, {"Retry-After": email.utils.formatdate(time.time() + 300, usegmt=True)})]
    assert 290 <= await one_attempt(store, SCHEDULE, rec) <= 301


async def test_retry_after_is_capped_by_the_longest_step(receiver: Any, store: Store) -> None:
    rec, url = receiver
    store.add_subscription(175, "hangup", url, "POST")
    store.enqueue(175, event(1))
    rec.script = [Answer(503, {"Retry-After": "86400"})]
    assert await one_attempt(store, SCHEDULE, rec) == 600.0


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (Answer(503), "absent"),
        (Answer(503, {"Retry-After": "soon-ish"}), "garbage"),
        (Answer(500, {"Retry-After": "120"}), "not 429/503"),
        (Answer(429, {"Retry-After": "1"}), "shorter than the schedule"),
    ],
)
async def test_otherwise_the_schedule_applies(receiver: Any, store: Store, answer: Answer, why: str) -> None:
    rec, url = receiver
    store.add_subscription(175, "hangup", url, "POST")
    store.enqueue(175, event(1))
    rec.script = [answer]
    assert await one_attempt(store, SCHEDULE, rec) == pytest.approx(11.0), why  # 10 s + 10% jitter


async def test_the_aiohttp_client_reads_retry_after_too(receiver: Any, store: Store) -> None:
    rec, url = receiver
    store.add_subscription(175, "hangup", url, "POST")
    store.enqueue(175, event(1))
    rec.script = [Answer(429, {"Retry-After": "120"})]
    assert await one_attempt(store, SCHEDULE, rec, AiohttpClient()) == pytest.approx(120.0)


# ---- disabling ----------------------------------------------------------------------------


async def send(d: Dispatcher, store: Store, n: int) -> None:
    d.push(store.enqueue(175, event(n)))
    await asyncio.wait_for(d.idle(), 10)


async def test_a_subscription_failing_for_disable_after_is_disabled(
    receiver: Any, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Every attempt failing for disable_after disables it (a WARNING, the metric's counter,
    the status hook); its pending deliveries are failed, kept; the clock survives a restart."""
    rec, url = receiver
    sub = store.add_subscription(175, "hangup", url, "POST")
    config = DeliveryConfig(retry_schedule=[0], disable_after=100, allow_networks=LOOPBACK)
    rec.script = [Answer(500)] * 10
    clock = Clock()
    statuses: list[tuple[int, bool, str | None]] = []
    async with WebhookClient() as session:
        d = Dispatcher(store, config, session, clock=clock)
        await send(d, store, 1)
        assert store.failing() == {sub.id: T0}
        await d.close()
        d = Dispatcher(store, config, session, clock=clock)  # a restart: the clock is kept
        d.on_status = lambda s, on, why: statuses.append((s.id, on, why))
        clock.now = T0 + 99
        await send(d, store, 2)
        assert store.subscription_by_id(sub.id).enabled  # type: ignore[union-attr]
        clock.now = T0 + 100
        with caplog.at_level(logging.WARNING):
            await send(d, store, 3)
    assert not store.subscription_by_id(sub.id).enabled  # type: ignore[union-attr]
    assert "every delivery failed for 1.7m" in store.disabled_reasons()[sub.id]
    assert d.disabled == {"failing": 1, "gone": 0}
    assert statuses == [(sub.id, False, store.disabled_reasons()[sub.id])]
    assert any(r.levelno == logging.WARNING and f"subscription {sub.id} " in r.getMessage()
               and "disabled" in r.getMessage() for r in caplog.records)  # fmt: skip
    assert [f["attempts"] for f in store.deliveries("failed")] == [1, 1, 1]
    store.enqueue(175, event(4))  # a disabled subscription gets no more deliveries
    assert store.count_deliveries("pending") == 0


async def test_pending_deliveries_of_a_disabled_subscription_are_failed(receiver: Any, store: Store) -> None:
    rec, url = receiver
    store.add_subscription(175, "hangup", url, "POST")
    for n in range(5):
        store.enqueue(175, event(n))
    rec.script = [Answer(410)]
    async with WebhookClient() as session:
        d = Dispatcher(store, DeliveryConfig(allow_networks=LOOPBACK), session)
        d.wake()
        await asyncio.wait_for(d.idle(), 10)
    assert len(rec.keys) == 1 and d.disabled["gone"] == 1
    failed = store.deliveries("failed")
    assert len(failed) == 5 and store.count_deliveries("pending") == 0
    assert failed[1]["last_error"] == "subscription disabled: receiver answered 410 Gone"


async def test_a_success_resets_the_failing_clock(receiver: Any, store: Store) -> None:
    rec, url = receiver
    sub = store.add_subscription(175, "hangup", url, "POST")
    config = DeliveryConfig(retry_schedule=[0], disable_after=100, allow_networks=LOOPBACK)
    rec.script = [Answer(500), Answer(200), Answer(500), Answer(500)]
    clock = Clock()
    async with WebhookClient() as session:
        d = Dispatcher(store, config, session, clock=clock)
        await send(d, store, 1)
        clock.now = T0 + 50
        await send(d, store, 2)  # the success
        assert store.failing() == {}
        clock.now = T0 + 120
        await send(d, store, 3)
        clock.now = T0 + 200  # 200 s since the first failure, 80 since the last success
        await send(d, store, 4)
    assert store.subscription_by_id(sub.id).enabled  # type: ignore[union-attr]
    assert store.failing() == {sub.id: T0 + 120}


async def test_disable_after_zero_never_disables(receiver: Any, store: Store) -> None:
    rec, url = receiver
    sub = store.add_subscription(175, "hangup", url, "POST")
    rec.script = [Answer(500)] * 3
    clock = Clock()
    async with WebhookClient() as session:
        d = Dispatcher(store, DeliveryConfig(retry_schedule=[0], disable_after=0, allow_networks=LOOPBACK),
                       session, clock=clock)  # fmt: skip
        for n in range(3):
            clock.now = T0 + n * 10 * 86400
            await send(d, store, n)
    assert store.subscription_by_id(sub.id).enabled  # type: ignore[union-attr]


async def test_the_mqtt_status_message_is_retained_on_its_topic() -> None:
    from bridge.config import MqttConfig

    mirror = MqttMirror(MqttConfig(url="mqtt://127.0.0.1:1", topic_prefix="pbx/events"))
    mirror.subscription_status(7, {"id": 7, "enabled": False, "reason": "gone"})
    assert mirror.statuses[0] == ("pbx/events/status/subscription/7",
                                  b'{"id": 7, "enabled": false, "reason": "gone"}')  # fmt: skip

    class Broker:
        def __init__(self) -> None:
            self.published: list[tuple[str, bytes, int, bool]] = []

        async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
            self.published.append((topic, payload, qos, retain))

    broker = Broker()
    mirror.stop()
    await mirror._drain(broker)  # type: ignore[arg-type]
    assert broker.published == [("pbx/events/status/subscription/7",
                                  b'{"id": 7, "enabled": false, "reason": "gone"}', 1, True)]  # fmt: skip


def test_the_metric_counts_disabled_subscriptions_by_reason() -> None:
    from types import SimpleNamespace

    from bridge.observability import Stats, _Collector

    d = Dispatcher(Store(":memory:"), DeliveryConfig(), WebhookClient())
    d.disabled["failing"] += 2
    parts = SimpleNamespace(stats=Stats(), source=SimpleNamespace(connected=True), dispatcher=d)
    families = {}
    with contextlib.suppress(AttributeError):  # the families after it need more parts
        for family in _Collector(parts).collect():  # type: ignore[arg-type]
            families[family.name] = family
    samples = {s.labels["reason"]: s.value for s in families["ami_bridge_subscriptions_disabled"].samples}
    assert samples == {"failing": 2, "gone": 0}


# ---- attempts, resend, recover, enable over the API ------------------------------------------

ADMIN = "admin-token-0123456789"
LIMITED = "limited-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
API_CONFIG = parse_config(f"""
ami: {{username: bridge, secret: s}}
extensions:
  - {{id: 175, name: "a@pbx", type: phone, endpoint: "099"}}
  - {{id: 176, name: "b@pbx", type: phone, endpoint: "100"}}
api:
  tokens:
    - {{token: {ADMIN}}}
    - {{token: {LIMITED}, extensions: [176]}}
delivery: {{retry_schedule: [0, 0, 0], allow_networks: ["127.0.0.0/8"]}}
""")


@dataclass
class Api:
    client: TestClient[Any, Any]
    store: Store
    dispatcher: Dispatcher

    async def call(self, method: str, path: str, status: int, token: str = ADMIN, **kw: Any) -> Any:
        resp = await self.client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
        assert resp.status == status, await resp.text()
        return await resp.json()

    async def settle(self) -> None:
        await asyncio.sleep(0.05)
        await asyncio.wait_for(self.dispatcher.idle(), 10)


@pytest.fixture
async def api(store: Store) -> AsyncIterator[Api]:
    async with WebhookClient() as session:
        dispatcher = Dispatcher(store, API_CONFIG.delivery, session)
        app = make_app(API_CONFIG, store)
        app[DISPATCHER_KEY] = dispatcher
        async with TestClient(TestServer(app)) as c:
            yield Api(c, store, dispatcher)
        await dispatcher.close()


async def test_every_attempt_is_stored_and_listed(api: Api, receiver: Any) -> None:
    """Status, latency, error and the answer's first KiB of each attempt, per delivery
    (oldest first) and per subscription (newest first, since, limit); scoped by token."""
    rec, url = receiver
    sub = api.store.add_subscription(175, "hangup", url, "POST")
    rec.script = [Answer(503, body=b"x" * 5000), Answer(500, body="ошибка".encode())]
    api.dispatcher.push(api.store.enqueue(175, event(1)))
    await api.settle()
    (delivery,) = api.store.deliveries("delivered")
    attempts = await api.call("GET", f"/deliveries/{delivery['id']}/attempts/", 200)
    assert [a["status"] for a in attempts] == [503, 500, 200]
    assert attempts[0]["response"] == "x" * 1024 and attempts[1]["response"] == "ошибка"
    assert attempts[2]["response"] == "ok" and attempts[2]["error"] is None
    assert all(0 < a["latency_ms"] < 5000 and a["subscription_id"] == sub.id for a in attempts)
    assert attempts[0]["time"].startswith("20") and attempts[0]["at"] <= attempts[2]["at"]
    listed = await api.call("GET", f"/extension/175/event/{sub.id}/attempts/?limit=2", 200)
    assert [a["id"] for a in listed] == [attempts[2]["id"], attempts[1]["id"]]
    assert await api.call("GET", f"/extension/175/event/{sub.id}/attempts/?since=2100-01-01", 200) == []
    await api.call("GET", f"/extension/175/event/{sub.id}/attempts/?limit=0", 400)
    await api.call("GET", f"/extension/175/event/{sub.id}/attempts/?since=yesterday", 400)
    await api.call("GET", f"/deliveries/{delivery['id']}/attempts/", 404, token=LIMITED)  # not its extension
    await api.call("GET", "/deliveries/999/attempts/", 404)


async def test_an_attempt_without_an_answer_keeps_its_error(api: Api) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens there now
    api.store.add_subscription(175, "hangup", f"http://127.0.0.1:{port}/x", "POST")
    api.dispatcher.push(api.store.enqueue(175, event(1)))
    await api.settle()
    (failed,) = api.store.deliveries("failed")
    attempts = await api.call("GET", f"/deliveries/{failed['id']}/attempts/", 200)
    assert len(attempts) == 3 and all(a["status"] is None and a["response"] == "" for a in attempts)
    assert "cannot connect to 127.0.0.1" in attempts[0]["error"]


async def test_resend_sends_the_same_event_with_the_same_key(api: Api, receiver: Any) -> None:
    rec, url = receiver
    api.store.add_subscription(175, "hangup", url, "POST")
    api.dispatcher.push(api.store.enqueue(175, event(1)))
    await api.settle()
    (first,) = api.store.deliveries("delivered")
    new = await api.call("POST", f"/deliveries/{first['id']}/resend", 201)
    assert new["resent"] == first["id"] and new["id"] != first["id"]
    await api.settle()
    assert len(rec.keys) == 2 and rec.keys[0] == rec.keys[1] == new["idempotency_key"]
    assert len(api.store.deliveries("delivered")) == 2
    await api.call("POST", f"/deliveries/{first['id']}/resend", 404, token=LIMITED)


async def test_recover_puts_back_the_failed_deliveries_since_a_time(api: Api, receiver: Any) -> None:
    rec, url = receiver
    sub = api.store.add_subscription(175, "hangup", url, "POST")
    rec.script = [Answer(404), Answer(404)]
    old = 1_767_225_600.0  # 2026-01-01 00:00:00 GMT
    api.dispatcher.push(api.store.enqueue(175, event(1, at=old)))
    api.dispatcher.push(api.store.enqueue(175, event(2, at=old + 3600)))
    await api.settle()
    assert len(api.store.deliveries("failed")) == 2
    got = await api.call("POST", f"/extension/175/event/{sub.id}/recover", 201,
                         json={"since": "2026-01-01 00:30:00"})  # fmt: skip
    assert got == {"recovered": 1}
    await api.settle()
    (failed,) = api.store.deliveries("failed")
    assert failed["event_id"] == 1 and len(api.store.deliveries("delivered")) == 1
    await api.call("POST", f"/extension/175/event/{sub.id}/recover", 400, json={})
    await api.call("POST", f"/extension/175/event/{sub.id}/recover", 400, json={"since": "soon"})
    await api.call(
        "POST", f"/extension/175/event/{sub.id}/recover", 403, token=LIMITED, json={"since": "2026-01-01"}
    )


async def test_enable_brings_a_disabled_subscription_back(api: Api, receiver: Any) -> None:
    """A 410-disabled subscription: resend and recover refuse until it is enabled; enabling
    tells the status hook, and recover then sends what failed."""
    rec, url = receiver
    sub = api.store.add_subscription(175, "hangup", url, "POST")
    statuses: list[tuple[int, bool]] = []
    api.dispatcher.on_status = lambda s, on, why: statuses.append((s.id, on))
    rec.script = [Answer(410)]
    api.dispatcher.push(api.store.enqueue(175, event(1)))
    api.dispatcher.push(api.store.enqueue(175, event(2)))
    await api.settle()
    assert api.store.matching(175, "hangup") == [] and len(api.store.deliveries("failed")) == 2
    body = {"since": "2000-01-01"}
    err = await api.call("POST", f"/extension/175/event/{sub.id}/recover", 409, json=body)
    assert f"POST /extension/175/event/{sub.id}/enable" in err["message"]
    await api.call("POST", f"/deliveries/{api.store.deliveries('failed')[0]['id']}/resend", 409)
    got = await api.call("POST", f"/extension/175/event/{sub.id}/enable", 200)
    assert got["enabled"] is True and got["id"] == sub.id
    assert api.store.matching(175, "hangup") == [Subscription(sub.id, 175, "hangup", url, "POST")]
    assert statuses == [(sub.id, False), (sub.id, True)]
    assert await api.call("POST", f"/extension/175/event/{sub.id}/recover", 201, json=body) == {
        "recovered": 2
    }
    await api.settle()
    assert len(api.store.deliveries("delivered")) == 2 and len(rec.keys) == 3
    await api.call("POST", "/extension/175/event/999/enable", 404)


# ---- the store ------------------------------------------------------------------------------


def test_a_version_4_store_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    s = Store(path)
    sub = s.add_subscription(175, "hangup", "http://127.0.0.1:9/h", "POST")
    s.enqueue(175, event(1))
    s.close()
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE delivery_attempts; ALTER TABLE subscriptions DROP COLUMN failing_since;"
                     "PRAGMA user_version=4;")  # fmt: skip
    db.close()
    s = Store(path)
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    assert s.failing() == {} and s.count_deliveries("pending") == 1 and s.subscription_by_id(sub.id)
    s.mark_many([("failed", 1, 0.0, 500, None, 1)])
    assert s.attempts(delivery_id=1) == []


def test_retention_prunes_attempts_with_their_deliveries(tmp_path: Path) -> None:
    from bridge.config import Retention
    from bridge.store import Outcomes

    s = Store(tmp_path / "r.db")
    s.add_subscription(175, "hangup", "http://127.0.0.1:9/h", "POST")
    s.add_subscription(175, "message-in", "http://127.0.0.1:9/h", "POST")
    old = T0 - 40 * 86400
    deliveries = s.enqueue_many([(175, event(1, at=old)), (175, {"EventType": "message-in",
                                                                  "EventTime": int(old * 1e6)})])  # fmt: skip
    out = Outcomes(
        [("delivered", 1, 0.0, 200, None, deliveries[0].id), ("failed", 2, 0.0, 500, None, deliveries[1].id)],
        [(d.id, d.subscription_id, old, 500, 1.0, None, b"") for d in deliveries for _ in range(2)],
    )
    s.mark_many(out)
    assert len(s.attempts(delivery_id=deliveries[1].id)) == 2
    pruner = Pruner(str(tmp_path / "r.db"), Retention(history=31 * 86400, delivered=31 * 86400, failed=31 * 86400),
                    pause=0)  # fmt: skip
    done = pruner.run(T0)
    pruner.close()
    assert done["attempts"] == 4 and done["deliveries"] == 2
    assert s.db.execute("SELECT COUNT(*) FROM delivery_attempts").fetchone()[0] == 0
