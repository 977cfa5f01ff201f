"""Webhook signatures on real deliveries: Standard Webhooks on POST (verified with the
``standardwebhooks`` package), our X-Bridge-Signature on GET, secrets per subscription and
global, and their rotation (both signatures during the overlap, the old one refused after)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bridge.api.subscriptions import validate_options
from bridge.config import DeliveryConfig
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.http import WebhookClient
from bridge.delivery.request import new_whsec
from bridge.store import Store, Subscription
from tests.conftest import Backend

LOOPBACK = ["127.0.0.0/8"]
OLD, NEW = new_whsec(), new_whsec()


@dataclass
class Got:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    script: list[int] = field(default_factory=list)
    got: list[Got] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append(Got(request.method, str(request.url), dict(request.headers), await request.read()))
        return web.Response(status=self.script.pop(0) if self.script else 200)


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


def config(**kw: Any) -> DeliveryConfig:
    return DeliveryConfig(
        backoff_initial=0.01, backoff_max=0.02, max_attempts=3, allow_networks=LOOPBACK, **kw
    )


async def deliver(store: Store, cfg: DeliveryConfig, clock: Callable[[], float] = time.time) -> None:
    async with WebhookClient() as session:
        d = Dispatcher(store, cfg, session, clock=clock)
        d.wake()
        await asyncio.wait_for(d.idle(), 20)


def event(n: int) -> dict[str, Any]:
    return {"EventType": "hangup", "CallID": f"call-{n}", "EventTime": 1000 + n, "CallerIDName": "Иван & Co"}


def verifies(secret: str, got: Got) -> bool:
    try:
        Webhook(secret).verify(got.body, got.headers, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


def bridge_signature_ok(secret: str, method: str, url: str, body: bytes, header: str) -> bool:
    """The receiver's recipe for X-Bridge-Signature, as the README gives it."""
    items = [part.split("=", 1) for part in header.split(",")]
    t = next(v for k, v in items if k == "t")
    signed = f"{t}.{method}.{url}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(t)) < 300
    return fresh and any(k == "v1" and hmac.compare_digest(v, expected) for k, v in items)


async def test_post_verifies_with_standardwebhooks_on_every_retry(receiver: Any, store: Store) -> None:
    """A POST signed with a global whsec_ secret verifies with the standardwebhooks package;
    webhook-id is the idempotency key, the same on each retry; a changed body fails."""
    rec, url = receiver
    store.add_subscription(175, "hangup", url, "POST")
    store.enqueue(175, event(1))
    rec.script = [500, 503]
    await deliver(store, config(secret=NEW))
    assert len(rec.got) == 3
    for got in rec.got:
        assert verifies(NEW, got), got.headers
        assert got.headers["webhook-id"] == got.headers["Idempotency-Key"] == rec.got[0].headers["webhook-id"]
        assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
        assert "X-Bridge-Signature" not in got.headers  # a whsec_ secret signs the standard way
    assert not verifies(OLD, rec.got[0])
    tampered = Got("POST", rec.got[0].url, rec.got[0].headers, rec.got[0].body + b"&x=1")
    assert not verifies(NEW, tampered)
    other_id = {**rec.got[0].headers, "webhook-id": "2-1"}
    assert not verifies(NEW, Got("POST", rec.got[0].url, other_id, rec.got[0].body))


async def test_a_plain_secret_keeps_our_signature(receiver: Any, store: Store) -> None:
    """A plain (not whsec_) secret signs a POST with X-Bridge-Signature as before; the
    Standard Webhooks id and timestamp are sent, without a webhook-signature."""
    rec, url = receiver
    store.add_subscription(175, "hangup", url, "POST")
    store.enqueue(175, event(1))
    await deliver(store, config(secret="plain-old-secret"))
    got = rec.got[0]
    assert (
        "webhook-signature" not in got.headers and got.headers["webhook-id"] == got.headers["Idempotency-Key"]
    )
    sig = got.headers["X-Bridge-Signature"]
    assert bridge_signature_ok("plain-old-secret", "POST", got.url, got.body, sig)
    assert not bridge_signature_ok("other", "POST", got.url, got.body, sig)


async def test_a_subscription_rotation_sends_both_signatures_until_the_overlap_ends(
    receiver: Any, store: Store
) -> None:
    """A subscription's secret replaced (as the API does) keeps signing next to the new one
    for the overlap: both verify; after it, only the new one does. Its own secret wins
    over the global one."""
    rec, url = receiver
    sub = store.add_subscription(175, "hangup", url, "POST", secret=OLD)
    now = time.time()
    rotated = validate_options({"secret": NEW}, sub, now, overlap=60)
    assert (rotated.secret, rotated.previous_secret, rotated.previous_until) == (NEW, OLD, now + 60)
    store.update_subscription(rotated)
    store.enqueue(175, event(1))
    global_secret = new_whsec()
    await deliver(store, config(secret=global_secret))
    during = rec.got[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verifies(NEW, during) and verifies(OLD, during) and not verifies(global_secret, during)

    store.enqueue(175, event(2))
    # two minutes on (past the 60 s overlap, within the 5 min standardwebhooks accepts)
    await deliver(store, config(secret=global_secret), clock=lambda: time.time() + 120)
    after = rec.got[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verifies(NEW, after) and not verifies(OLD, after)


async def test_a_global_rotation_overlaps_across_restarts(receiver: Any, store: Store) -> None:
    """Changing delivery.secret (a restart or reload with the new one): the previous one
    keeps signing for secret_rotation_overlap, remembered by the store, then stops."""
    rec, url = receiver
    store.add_subscription(175, "hangup", url, "POST")
    store.enqueue(175, event(1))
    await deliver(store, config(secret=OLD, secret_rotation_overlap=60))
    assert verifies(OLD, rec.got[-1]) and not verifies(NEW, rec.got[-1])
    store.enqueue(175, event(2))
    await deliver(store, config(secret=NEW, secret_rotation_overlap=60))
    assert verifies(OLD, rec.got[-1]) and verifies(NEW, rec.got[-1])
    store.enqueue(175, event(3))
    await deliver(store, config(secret=NEW, secret_rotation_overlap=60))  # a second start: still overlapping
    assert verifies(OLD, rec.got[-1]) and verifies(NEW, rec.got[-1])
    store.enqueue(175, event(4))
    await deliver(store, config(secret=NEW, secret_rotation_overlap=60), clock=lambda: time.time() + 120)
    assert verifies(NEW, rec.got[-1]) and not verifies(OLD, rec.got[-1])


async def test_get_signature_covers_the_whole_url(receiver: Any, store: Store) -> None:
    """A GET (fields in the query) carries X-Bridge-Signature over method, full URL and
    time, also with a whsec_ secret and during a rotation (one v1 per secret); the
    README's recipe verifies it, and fails when any query parameter changes."""
    rec, url = receiver
    sub = store.add_subscription(175, "hangup", url + "?myid=175", "GET", secret=OLD)
    store.update_subscription(validate_options({"secret": NEW}, sub, time.time(), overlap=60))
    store.enqueue(175, event(1))
    await deliver(store, config())
    got = rec.got[0]
    assert "webhook-signature" not in got.headers
    sig = got.headers["X-Bridge-Signature"]
    assert sig.count("v1=") == 2
    assert "myid=175&" in got.url and "CallID=call-1" in got.url
    for secret in (NEW, OLD):
        assert bridge_signature_ok(secret, "GET", got.url, b"", sig)
    assert not bridge_signature_ok(new_whsec(), "GET", got.url, b"", sig)
    for before, after in (("myid=175", "myid=176"), ("CallID=call-1", "CallID=call-2"),
                          ("EventTime=1001", "EventTime=1002")):  # fmt: skip
        assert before in got.url
        assert not bridge_signature_ok(NEW, "GET", got.url.replace(before, after), b"", sig)
    assert not bridge_signature_ok(NEW, "POST", got.url, b"", sig)


def test_new_secrets_are_standard() -> None:
    """Generated secrets are whsec_ + base64 of 32 random bytes, each different."""
    a, b = new_whsec(), new_whsec()
    assert a != b and a.startswith("whsec_") and len(base64.b64decode(a[6:])) == 32


def test_a_bad_whsec_config_secret_is_refused() -> None:
    """delivery.secret starting with whsec_ must hold base64 of 24-64 bytes: a clear error."""
    with pytest.raises(ValueError, match="secret: the part after 'whsec_' is not base64"):
        config(secret="whsec_not*base64")
    with pytest.raises(ValueError, match="is 3 bytes; it must be 24 to 64"):
        config(secret="whsec_" + base64.b64encode(b"abc").decode())


def test_subscription_secrets_are_not_in_its_public_view() -> None:
    sub = Subscription(1, 175, "hangup", "http://h/", "POST", secret=NEW, previous_secret=OLD,
                       previous_until=time.time() + 60)  # fmt: skip
    assert NEW not in repr(sub) and "secret" not in sub.public()
    assert sub.secrets(time.time()) == [NEW, OLD] and sub.secrets(time.time() + 61) == [NEW]
