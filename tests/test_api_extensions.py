"""The extension list as Telphin's clients read it: looked up by name, filtered by type,
scoped to the token, under /api/ver1.0/client/{client_id|@me}/extension/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.api import make_app
from bridge.config import parse_config
from tests.conftest import Backend

ADMIN = "admin-token-0123456789"
SECRET = "crm-secret-0123456789abcdef"
CONFIG = parse_config(f"""
ami: {{username: bridge, secret: s}}
extensions:
  - {{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101", label: Anna}}
  - {{id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "SIP/150010002", mailbox: "102@default"}}
  - {{id: 1300, name: "000*300@pbx.example", type: queue, queue: support}}
  - {{id: 1400, name: "000*400@pbx.example", type: ivr, context: ivr-main}}
api:
  tokens: [{{token: {ADMIN}}}]
  clients: [{{client_id: crm, client_secret: {SECRET}, extensions: [1102, 1300]}}]
""")
ALL = {"Authorization": f"Bearer {ADMIN}"}
BASE = "/api/ver1.0/client/@me/extension/"


@pytest.fixture
async def client(store_backend: Backend) -> AsyncIterator[TestClient[Any, Any]]:
    store = store_backend.open()
    async with TestClient(TestServer(make_app(CONFIG, store))) as c:
        yield c
    store.close()


async def crm_auth(client: TestClient[Any, Any]) -> dict[str, str]:
    resp = await client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "crm",
                                                    "client_secret": SECRET})  # fmt: skip
    return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


async def test_the_list_shows_every_extension_as_telphin_does(client: TestClient[Any, Any]) -> None:
    """id, name as the extended number, type, label, domain and the client; plus what the
    config knows (endpoint, mailbox, queue, context)."""
    resp = await client.get(BASE, headers=ALL)
    assert resp.status == 200
    listed = await resp.json()
    assert [(e["id"], e["name"], e["type"]) for e in listed] == [
        (1101, "000*101", "phone"), (1102, "000*102", "phone"), (1300, "000*300", "queue"),
        (1400, "000*400", "ivr"),
    ]  # fmt: skip
    first = listed[0]
    assert first == {"id": 1101, "name": "000*101", "type": "phone", "status": "active", "label": "Anna",
                     "domain": "pbx.example", "client_id": "bridge", "extension_group_id": None,
                     "full_name": "000*101@pbx.example", "endpoint": "101"}  # fmt: skip
    assert listed[1]["mailbox"] == "102@default" and listed[1]["endpoint"] == "SIP/150010002"


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("?name=000*102", [1102]),
        ("?name=000*102@pbx.example", [1102]),
        ("?name=102", []),  # the short number is not the name
        ("?type=queue", [1300]),
        ("?type=phone&status=active&per_page=1&page=2", [1102]),
        ("?status=blocked", []),
    ],
)
async def test_consumers_find_extensions_by_name_and_type(
    client: TestClient[Any, Any], query: str, ids: list[int]
) -> None:
    """The filters Telphin's consumers send: name (what events carry), type, status, paging."""
    resp = await client.get(BASE + query, headers=ALL)
    assert resp.status == 200
    assert [e["id"] for e in await resp.json()] == ids


async def test_a_client_sees_only_its_extensions(client: TestClient[Any, Any]) -> None:
    """A client limited to 1102 and 1300 lists those, by @me or by its own id; another
    client's id is client_not_found, another extension 403."""
    auth = await crm_auth(client)
    mine = await (await client.get(BASE, headers=auth)).json()
    assert [e["id"] for e in mine] == [1102, 1300] and mine[0]["client_id"] == "crm"
    by_id = await client.get("/api/ver1.0/client/crm/extension/?name=000*300", headers=auth)
    assert [e["id"] for e in await by_id.json()] == [1300]
    other = await client.get("/api/ver1.0/client/bridge/extension/", headers=auth)
    assert other.status == 404 and (await other.json())["status"] == "client_not_found"
    hidden = await client.get("/api/ver1.0/client/@me/extension/1101", headers=auth)
    assert hidden.status == 403 and (await hidden.json())["status"] == "access_denied"


@pytest.mark.parametrize("path", ["/api/ver1.0/client/@me/extension/1300", "/api/ver1.0/client/@me/extension/1300/",
                                  "/api/ver1.0/extension/1300/", "/extension/1300/"])  # fmt: skip
async def test_one_extension_by_id(client: TestClient[Any, Any], path: str) -> None:
    """An extension by id, at the paths Telphin's SDKs call."""
    resp = await client.get(path, headers=ALL)
    assert resp.status == 200
    assert (await resp.json())["name"] == "000*300"


@pytest.mark.parametrize(
    ("query", "field"), [("?type=fax", "type"), ("?page=0", "page"), ("?per_page=x", "per_page")]
)
async def test_bad_filters_say_which(client: TestClient[Any, Any], query: str, field: str) -> None:
    """A filter with a wrong value: 400 naming it."""
    resp = await client.get(BASE + query, headers=ALL)
    assert resp.status == 400 and (await resp.json())["field"] == field


async def test_unknown_extension_is_404(client: TestClient[Any, Any]) -> None:
    """An id no extension has: 404 not_found."""
    resp = await client.get("/api/ver1.0/client/@me/extension/999", headers=ALL)
    assert resp.status == 404 and (await resp.json())["status"] == "not_found"
