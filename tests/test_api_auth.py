"""OAuth2 clients as Telphin's integrations use them: POST /oauth/token, bearer tokens that
expire and survive restarts, /api/ver1.0/user/, the same resources under /api/ver1.0/."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.api import make_app
from bridge.api.common import CLOCK_KEY
from bridge.config import parse_config
from tests.conftest import Backend

STATIC = "static-token-0123456789"
SECRET = "crm-secret-0123456789abcdef"
SDK_SECRET = "sdk-secret-0123456789abcdef"
CONFIG_TEXT = f"""
ami: {{username: bridge, secret: s}}
extensions:
  - {{id: 175, name: "000*099@pbx.example", type: phone, endpoint: "099"}}
  - {{id: 176, name: "000*100@pbx.example", type: phone, endpoint: "100"}}
api:
  tokens: [{{token: {STATIC}}}]
  clients:
    - {{client_id: crm, client_secret: {SECRET}, extensions: [176]}}
    - {{client_id: sdk, client_secret_sha256: {hashlib.sha256(SDK_SECRET.encode()).hexdigest()}}}
  token_ttl: 600
"""
CONFIG = parse_config(CONFIG_TEXT)
SUB = {"url": "https://crm.example.com/telphin?action=event", "event_type": "hangup", "method": "POST"}
FORM = {"grant_type": "client_credentials", "client_id": "crm", "client_secret": SECRET}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(store_backend: Backend, clock: Clock) -> AsyncIterator[TestClient[Any, Any]]:
    store = store_backend.open()
    app = make_app(CONFIG, store)
    app[CLOCK_KEY] = clock
    async with TestClient(TestServer(app)) as c:
        yield c
    store.close()


async def token_of(client: TestClient[Any, Any], form: dict[str, str] = FORM) -> str:
    resp = await client.post("/oauth/token", data=form)
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_client_credentials_give_a_bearer_token_like_telphins(client: TestClient[Any, Any]) -> None:
    """The form grant answers {access_token, token_type: Bearer, expires_in}, not cached."""
    resp = await client.post("/oauth/token", data=FORM)
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert len(body["access_token"]) >= 40 and resp.headers["Cache-Control"] == "no-store"


async def test_basic_credentials_and_a_hashed_secret_work_too(client: TestClient[Any, Any]) -> None:
    """RFC 6749's client_secret_basic, for a client whose config keeps only the secret's hash."""
    basic = base64.b64encode(f"sdk:{SDK_SECRET}".encode()).decode()
    resp = await client.post("/oauth/token", data={"grant_type": "client_credentials"},
                             headers={"Authorization": f"Basic {basic}"})  # fmt: skip
    assert resp.status == 200
    who = await client.get("/api/ver1.0/user/", headers=bearer((await resp.json())["access_token"]))
    assert (await who.json())["client_id"] == "sdk"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({**FORM, "client_secret": "wrong-secret-0123456789"}, 401, "invalid_client"),
        ({**FORM, "client_id": "nobody"}, 401, "invalid_client"),
        ({**FORM, "client_id": "sdk"}, 401, "invalid_client"),  # crm's secret is not sdk's
        ({**FORM, "grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "client_id": "crm"}, 400, "invalid_request"),
    ],
)
async def test_bad_credentials_are_refused_as_rfc_6749_says(
    client: TestClient[Any, Any], form: dict[str, str], status: int, error: str
) -> None:
    """Wrong secret, unknown or mismatched client: 401 invalid_client; other grants: 400."""
    resp = await client.post("/oauth/token", data=form)
    assert resp.status == status
    body = await resp.json()
    assert body["error"] == error and body["error_description"]


async def test_a_json_body_is_not_a_form(client: TestClient[Any, Any]) -> None:
    """The token endpoint reads a form (as OAuth2 says); JSON gets a 400 that says so."""
    resp = await client.post("/oauth/token", json=FORM)
    assert resp.status == 400
    assert "x-www-form-urlencoded" in (await resp.json())["error_description"]


async def test_the_token_reaches_its_extensions_at_both_paths(client: TestClient[Any, Any]) -> None:
    """A client's token subscribes under /api/ver1.0/ and at the bare path, for its own
    extensions only (403 access_denied for another's)."""
    auth = bearer(await token_of(client))
    made = await client.post("/api/ver1.0/extension/176/event/", json=SUB, headers=auth)
    assert made.status == 201
    listed = await (await client.get("/extension/176/event/", headers=auth)).json()
    assert listed == [await made.json()]
    other = await client.post("/api/ver1.0/extension/175/event/", json=SUB, headers=auth)
    assert other.status == 403 and (await other.json())["status"] == "access_denied"


async def test_a_token_expires(client: TestClient[Any, Any], clock: Clock) -> None:
    """Past expires_in the token gets 401 Unauthorized, saying it expired."""
    auth = bearer(await token_of(client))
    assert (await client.get("/api/ver1.0/user/", headers=auth)).status == 200
    clock.now += 601
    resp = await client.get("/api/ver1.0/user/", headers=auth)
    assert resp.status == 401
    body = await resp.json()
    assert body["message"] == "Unauthorized" and "expired" in body["detail"]


async def test_an_issued_token_survives_a_restart(store_backend: Backend, clock: Clock) -> None:
    """The store keeps the token's hash: a new process (app) on the same store accepts it,
    and one without that client in its config refuses it."""
    store = store_backend.open("b.db")
    first = make_app(CONFIG, store)
    first[CLOCK_KEY] = clock
    async with TestClient(TestServer(first)) as c:
        token = await token_of(c)
    store.close()
    store = store_backend.open("b.db")
    second = make_app(CONFIG, store)
    second[CLOCK_KEY] = clock
    async with TestClient(TestServer(second)) as c:
        assert (await c.get("/api/ver1.0/user/", headers=bearer(token))).status == 200
    without = parse_config(CONFIG_TEXT.replace("    - {client_id: crm,", "    # - {client_id: crm,"))
    third = make_app(without, store)
    third[CLOCK_KEY] = clock
    async with TestClient(TestServer(third)) as c:
        resp = await c.get("/api/ver1.0/user/", headers=bearer(token))
        assert resp.status == 401 and "no longer configured" in (await resp.json())["detail"]
    store.close()


async def test_user_says_who_the_token_is(client: TestClient[Any, Any]) -> None:
    """/api/ver1.0/user/ answers client_id (what /client/{client_id}/ paths take), the
    extensions covered and when the token expires; a static token is client "bridge"."""
    mine = await (await client.get("/api/ver1.0/user/", headers=bearer(await token_of(client)))).json()
    assert mine == {"client_id": "crm", "login": "crm", "token_type": "oauth", "extensions": [176],
                    "expires_in": 600}  # fmt: skip
    static = await (await client.get("/api/ver1.0/user/", headers=bearer(STATIC))).json()
    assert static == {"client_id": "bridge", "login": "bridge", "token_type": "static", "extensions": None,
                      "expires_in": None}  # fmt: skip


@pytest.mark.parametrize("header", ["", "Bearer ", "Bearer abt_not-a-token", "Basic Zm9vOmJhcg=="])
async def test_without_a_valid_token_nothing_under_api_answers(
    client: TestClient[Any, Any], header: str
) -> None:
    """No token, an unknown one, or another scheme: 401 with a JSON body."""
    resp = await client.get("/api/ver1.0/user/", headers={"Authorization": header} if header else {})
    assert resp.status == 401
    assert (await resp.json())["message"] == "Unauthorized"


def test_a_client_on_an_unknown_extension_is_a_config_error() -> None:
    """api.clients naming an extension id nobody has: refused on load, saying which."""
    from bridge.config import ConfigError

    with pytest.raises(ConfigError, match=r"api.clients\[0\].extensions: no extension has id 999"):
        parse_config(CONFIG_TEXT.replace("extensions: [176]}", "extensions: [999]}"))
