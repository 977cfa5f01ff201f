"""Per-subscription delivery options on real deliveries (strict or parallel ordering,
rate limit) and through the API (create, update, show, validation, secrets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.api import make_app
from bridge.config import DeliveryConfig, parse_config
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.http import WebhookClient
from bridge.store import SCHEMA_VERSION, Store
from tests.conftest import Backend

LOOPBACK = ["127.0.0.0/8"]


@dataclass
class Receiver:
    """Counts the requests in flight at once; fails the CallIDs in ``fail`` a few times."""

    delay: float = 0.0
    fail: dict[str, int] = field(default_factory=dict)
    now: int = 0
    most: int = 0
    got: list[tuple[float, str, int]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        call = dict(parse_qsl((await request.read()).decode()))["CallID"]
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            status = 500 if self.fail.get(call, 0) > 0 else 200
            if status == 500:
                self.fail[call] -= 1
            self.got.append((time.monotonic(), call, status))
            return web.Response(status=status)
        finally:
            self.now -= 1


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield rec, f"http://127.0.0.1:{server.port}/hook"
    await server.close()


def event(n: int) -> dict[str, Any]:
    return {"EventType": "hangup", "CallID": f"call-{n}", "EventTime": 1000 + n}


async def deliver(store: Store, **kw: Any) -> float:
    """Seconds the dispatcher took to send everything pending."""
    cfg = DeliveryConfig(**{"backoff_initial": 0.01, "backoff_max": 0.02, "max_attempts": 5,
                            "allow_networks": LOOPBACK, **kw})  # fmt: skip
    async with WebhookClient() as session:
        d = Dispatcher(store, cfg, session)
        started = time.monotonic()
        d.wake()
        await asyncio.wait_for(d.idle(), 30)
        return time.monotonic() - started


async def test_parallel_sends_up_to_max_in_flight_and_strict_one(
    receiver: Any, store_backend: Backend
) -> None:
    """Against a receiver taking 0.2 s per request, 8 deliveries: strict order has one
    request in flight at a time, in order; parallel with max_in_flight 4 has 4 at once
    (as the receiver counts them) and takes well under half strict's time."""
    rec, url = receiver
    rec.delay = 0.2
    strict = store_backend.open("strict.db")
    strict.add_subscription(175, "hangup", url, "POST")
    for n in range(8):
        strict.enqueue(175, event(n))
    strict_took = await deliver(strict)
    assert rec.most == 1 and [c for _, c, _ in rec.got] == [f"call-{n}" for n in range(8)]
    assert strict_took >= 8 * 0.2

    rec.most, rec.got = 0, []
    parallel = store_backend.open("parallel.db")
    parallel.add_subscription(175, "hangup", url, "POST", ordering="parallel", max_in_flight=4)
    for n in range(8):
        parallel.enqueue(175, event(n))
    parallel_took = await deliver(parallel)
    assert rec.most == 4 and sorted(c for _, c, _ in rec.got) == sorted(f"call-{n}" for n in range(8))
    assert parallel_took < strict_took / 2, (parallel_took, strict_took)
    assert len(parallel.deliveries("delivered")) == 8


async def test_parallel_retries_do_not_hold_up_the_others(receiver: Any, store_backend: Backend) -> None:
    """In parallel, a delivery retried (500 twice, 0.3 s backoff) waits on its own: the
    ones after it are delivered before it; in strict order they wait for it."""
    rec, url = receiver
    for ordering, extra in (("parallel", {"max_in_flight": 2}), ("strict", {})):
        rec.got, rec.fail = [], {"call-0": 2}
        store = store_backend.open(f"{ordering}.db")
        store.add_subscription(175, "hangup", url, "POST", ordering=ordering, **extra)
        for n in range(5):
            store.enqueue(175, event(n))
        await deliver(store, backoff_initial=0.3, backoff_max=0.3)
        delivered = [c for _, c, status in rec.got if status == 200]
        if ordering == "parallel":
            assert delivered[-1] == "call-0" and sorted(delivered[:-1]) == [f"call-{n}" for n in range(1, 5)]
        else:
            assert delivered == [f"call-{n}" for n in range(5)]
        assert len(store.deliveries("delivered")) == 5


async def test_rate_limit_bounds_requests_per_second(receiver: Any, store_backend: Backend) -> None:
    """rate_limit 20/s with 10 in flight allowed: 30 requests are spread over at least
    (30 - 1) / 20 s, and no 0.5 s window holds more than 20 * 0.5 + 1 of them."""
    rec, url = receiver
    store = store_backend.open()
    store.add_subscription(175, "hangup", url, "POST", rate_limit=20.0, ordering="parallel", max_in_flight=10)
    for n in range(30):
        store.enqueue(175, event(n))
    await deliver(store)
    times = sorted(t for t, _, _ in rec.got)
    assert len(times) == 30
    assert times[-1] - times[0] >= 29 / 20 * 0.95  # timer slack
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t < start + 0.5)
        assert in_window <= 20 * 0.5 + 1, (i, in_window)


async def test_without_rate_limit_nothing_waits(receiver: Any, store_backend: Backend) -> None:
    """The same 30 requests without a limit come much faster than 20/s (the limit above
    is what spreads them)."""
    rec, url = receiver
    store = store_backend.open()
    store.add_subscription(175, "hangup", url, "POST", ordering="parallel", max_in_flight=10)
    for n in range(30):
        store.enqueue(175, event(n))
    await deliver(store)
    times = sorted(t for t, _, _ in rec.got)
    assert len(times) == 30 and times[-1] - times[0] < 29 / 20 / 2


# ---- the API ----------------------------------------------------------------------------

ADMIN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
CONFIG = parse_config(f"""
ami: {{username: bridge, secret: s}}
extensions:
  - {{id: 175, name: "000*099@pbx.example", type: phone, endpoint: "099"}}
api:
  tokens:
    - {{token: {ADMIN}}}
delivery:
  secret_rotation_overlap: 3600
""")
SUB = {"url": "https://crm.example/hook", "event_type": "hangup", "method": "POST"}


@pytest.fixture
async def client(store_backend: Backend) -> AsyncIterator[tuple[TestClient[Any, Any], Store]]:
    store = store_backend.open()
    async with TestClient(TestServer(make_app(CONFIG, store))) as c:
        yield c, store
    store.close()


async def test_api_options_are_stored_and_shown(client: Any) -> None:
    """Options given on create are stored and shown by GET; a Telphin body gets today's
    defaults and Telphin's shape; a PUT without them keeps them; null removes the limit."""
    c, store = client
    body = {**SUB, "rate_limit": 5, "ordering": "parallel", "max_in_flight": 8}
    made = await (await c.post("/extension/175/event/", json=body, headers=AUTH)).json()
    assert made == {**body, "rate_limit": 5.0, "id": made["id"]}
    got = await (await c.get(f"/extension/175/event/{made['id']}", headers=AUTH)).json()
    assert got == made
    sub = store.subscription_by_id(made["id"])
    assert (sub.rate_limit, sub.ordering, sub.max_in_flight) == (5.0, "parallel", 8)

    put = await (await c.put(f"/extension/175/event/{made['id']}", json=SUB, headers=AUTH)).json()
    assert put == made
    put = await c.put(f"/extension/175/event/{made['id']}", json={**SUB, "rate_limit": None,
                      "ordering": "strict"}, headers=AUTH)  # fmt: skip
    assert await put.json() == {**SUB, "id": made["id"]}

    plain = await (await c.post("/extension/175/event/", json=SUB, headers=AUTH)).json()
    assert plain == {**SUB, "id": plain["id"]}
    sub = store.subscription_by_id(plain["id"])
    assert (sub.rate_limit, sub.ordering, sub.max_in_flight, sub.secret) == (None, "strict", 1, None)
    parallel = {**SUB, "ordering": "parallel"}
    made = await (await c.post("/extension/175/event/", json=parallel, headers=AUTH)).json()
    assert made["max_in_flight"] == 10


@pytest.mark.parametrize(("extra", "field", "says"), [
    ({"rate_limit": 0}, "rate_limit", "above 0"),
    ({"rate_limit": "fast"}, "rate_limit", "number of requests per second"),
    ({"rate_limit": True}, "rate_limit", "number"),
    ({"ordering": "fifo"}, "ordering", '"strict"'),
    ({"max_in_flight": 4}, "max_in_flight", "needs \"ordering\": \"parallel\""),
    ({"ordering": "parallel", "max_in_flight": 0}, "max_in_flight", "from 1 to 100"),
    ({"ordering": "parallel", "max_in_flight": 101}, "max_in_flight", "from 1 to 100"),
    ({"secret": "hunter2"}, "secret", "whsec_"),
    ({"secret": "whsec_!!"}, "secret", "not base64"),
    ({"secret": "whsec_YWJj"}, "secret", "3 bytes"),
    ({"secret": 5}, "secret", "generate"),
])  # fmt: skip
async def test_api_refuses_bad_options(client: Any, extra: dict[str, Any], field: str, says: str) -> None:
    c, store = client
    resp = await c.post("/extension/175/event/", json={**SUB, **extra}, headers=AUTH)
    assert resp.status == 400
    err = await resp.json()
    assert field in str(err) and says in str(err), err
    assert store.count() == 0


async def test_api_secrets_generated_shown_to_the_owner_and_rotated(client: Any) -> None:
    """ "generate" answers the new secret once; GET of the subscription never shows it,
    GET .../secret does; rotating keeps the old one valid for the configured overlap; a
    PUT without a secret keeps it; null falls back to delivery.secret."""
    c, store = client
    made = await (
        await c.post("/extension/175/event/", json={**SUB, "secret": "generate"}, headers=AUTH)
    ).json()
    first = made.pop("secret")
    assert first.startswith("whsec_") and made == {**SUB, "id": made["id"]}
    path = f"/extension/175/event/{made['id']}"
    assert "secret" not in await (await c.get(path, headers=AUTH)).json()
    assert await (await c.get(path + "/secret", headers=AUTH)).json() == {
        "secret": first,
        "previous_valid_until": None,
    }
    before = time.time()
    rotated = await c.post(path + "/secret/rotate", headers=AUTH)
    assert rotated.status == 201
    second = (await rotated.json())["secret"]
    assert second.startswith("whsec_") and second != first
    shown = await (await c.get(path + "/secret", headers=AUTH)).json()
    assert shown["secret"] == second and before + 3600 <= shown["previous_valid_until"] <= time.time() + 3600
    sub = store.subscription_by_id(made["id"])
    assert sub.secrets(time.time()) == [second, first] and sub.secrets(time.time() + 3601) == [second]

    put = await (await c.put(path, json=SUB, headers=AUTH)).json()
    assert "secret" not in put and store.subscription_by_id(made["id"]).secret == second
    mine = "whsec_" + "QUJD" * 8
    put = await (await c.put(path, json={**SUB, "secret": mine}, headers=AUTH)).json()
    assert put["secret"] == mine and store.subscription_by_id(made["id"]).previous_secret == second
    await c.put(path, json={**SUB, "secret": None}, headers=AUTH)
    assert store.subscription_by_id(made["id"]).secrets(time.time()) == []
    assert (await c.post(path + "/secret/rotate", json={"key": 1}, headers=AUTH)).status == 400
    assert (await c.get("/extension/175/event/999/secret", headers=AUTH)).status == 404


async def test_a_version_4_store_gets_the_new_columns(tmp_path: Path) -> None:
    """A store written before version 5 keeps its subscriptions, with today's behaviour."""
    import sqlite3

    path = tmp_path / "v4.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE subscriptions")
    db.execute("CREATE TABLE subscriptions (id INTEGER PRIMARY KEY AUTOINCREMENT, extension_id INTEGER NOT "
               "NULL, event_type TEXT NOT NULL, url TEXT NOT NULL, method TEXT NOT NULL, enabled INTEGER NOT "
               "NULL DEFAULT 1, disabled_reason TEXT)")  # fmt: skip
    db.execute("INSERT INTO subscriptions (extension_id, event_type, url, method) VALUES (175, 'hangup', "
               "'http://h/', 'GET')")  # fmt: skip
    db.execute("PRAGMA user_version=4")
    db.commit()
    db.close()
    store = Store(path)
    (sub,) = store.subscriptions(175)
    assert (sub.url, sub.secret, sub.rate_limit, sub.ordering, sub.max_in_flight) == (
        "http://h/",
        None,
        None,
        "strict",
        1,
    )
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
