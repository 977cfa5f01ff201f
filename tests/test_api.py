"""The subscriptions REST API: Telphin-compatible CRUD, auth, validation, limits, persistence."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.api import make_app
from bridge.config import parse_config
from bridge.store import Store
from tests.conftest import Backend

ADMIN = "admin-token-0123456789"
LIMITED = "limited-token-0123456789"
CONFIG_TEXT = f"""
ami: {{username: bridge, secret: s}}
extensions:
  - {{id: 175, name: "000*099@pbx.example", type: phone, endpoint: "099"}}
  - {{id: 176, name: "000*100@pbx.example", type: phone, endpoint: "100"}}
  - {{id: 1300, name: "000*300@pbx.example", type: queue, queue: support}}
api:
  tokens:
    - {{token: {ADMIN}}}
    - {{token: {LIMITED}, extensions: [176]}}
  max_subscriptions_per_extension: 3
  max_subscriptions_total: 5
  max_body_bytes: 8192
"""
CONFIG = parse_config(CONFIG_TEXT)
AUTH = {"Authorization": f"Bearer {ADMIN}"}
SUB = {"url": "https://somehost.com/fordel/show.php?myid=175", "event_type": "dial-out", "method": "GET"}


@pytest.fixture
async def client(store_backend: Backend) -> AsyncIterator[TestClient[Any, Any]]:
    store = store_backend.open()
    async with TestClient(TestServer(make_app(CONFIG, store))) as c:
        yield c
    store.close()


async def test_create_answers_like_telphin(client: TestClient[Any, Any]) -> None:
    """POST answers 201 {url, method, event_type, id} and the subscription is listed and readable."""
    resp = await client.post("/extension/175/event/", json=SUB, headers=AUTH)
    assert resp.status == 201
    body = await resp.json()
    assert body == {**SUB, "id": body["id"]} and isinstance(body["id"], int)
    listed = await (await client.get("/extension/175/event/", headers=AUTH)).json()
    assert listed == [body]
    one = await client.get(f"/extension/175/event/{body['id']}", headers=AUTH)
    assert await one.json() == body


async def test_put_replaces_and_delete_removes(client: TestClient[Any, Any]) -> None:
    """PUT changes a subscription (200); DELETE one removes it and DELETE the collection
    removes all, each answering 204 with no body, as Telphin's API does."""
    a = await (await client.post("/extension/175/event/", json=SUB, headers=AUTH)).json()
    changed = {"url": "http://crm.example/hook", "event_type": "hangup", "method": "POST"}
    resp = await client.put(f"/extension/175/event/{a['id']}", json=changed, headers=AUTH)
    assert resp.status == 200 and await resp.json() == {**changed, "id": a["id"]}
    resp = await client.delete(f"/extension/175/event/{a['id']}", headers=AUTH)
    assert resp.status == 204 and await resp.read() == b""
    assert (await client.get(f"/extension/175/event/{a['id']}", headers=AUTH)).status == 404
    for _ in range(2):
        await client.post("/extension/175/event/", json=SUB, headers=AUTH)
    other = await (await client.post("/extension/176/event/", json=SUB, headers=AUTH)).json()
    assert len(await (await client.get("/extension/175/event/", headers=AUTH)).json()) == 2
    resp = await client.delete("/extension/175/event/", headers=AUTH)
    assert resp.status == 204 and await resp.read() == b""
    assert await (await client.get("/extension/175/event/", headers=AUTH)).json() == []
    assert await (await client.get("/extension/176/event/", headers=AUTH)).json() == [other]


@pytest.mark.parametrize(
    ("headers", "path", "status", "code", "error"),
    [
        ({}, "/extension/175/event/", 401, "unauthorized", "unauthorized"),
        ({"Authorization": "Bearer nope"}, "/extension/175/event/", 401, "unauthorized", "unauthorized"),
        ({"Authorization": f"Basic {ADMIN}"}, "/extension/175/event/", 401, "unauthorized", "unauthorized"),
        ({"Authorization": f"Bearer {LIMITED}"}, "/extension/175/event/", 403, "access_denied", "forbidden"),
        ({"Authorization": f"Bearer {LIMITED}"}, "/extension/176/event/", 200, None, None),
        (AUTH, "/extension/999/event/", 404, "not_found", "not_found"),
        (AUTH, "/extension/abc/event/", 404, "not_found", "not_found"),
        (AUTH, "/extension/175/event/12345", 404, "not_found", "not_found"),
        (AUTH, "/extension/175/event/x", 404, "not_found", "not_found"),
        (AUTH, "/extension/%C2%B2/event/", 404, "not_found", "not_found"),  # "²": isdigit(), yet no int
        (AUTH, "/extension/175/event/%C2%B2", 404, "not_found", "not_found"),
        ({}, "/limit/", 401, "unauthorized", "unauthorized"),
        (AUTH, "/nowhere", 404, "not_found", "not_found"),
    ],
)
async def test_auth_and_lookup_errors(client: TestClient[Any, Any], headers: dict[str, str], path: str,
                                      status: int, code: str | None, error: str | None) -> None:  # fmt: skip
    """Missing/wrong tokens are 401 "Unauthorized" (the reason in detail), a token used
    outside its extensions 403 access_denied, unknown ids 404 not_found: Telphin's
    machine-readable status beside the bridge's own error code."""
    resp = await client.get(path, headers=headers)
    assert resp.status == status
    if code:
        body = await resp.json()
        assert body["status"] == code and body["error"] == error and body["message"]
    if status == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["message"] == "Unauthorized" and "token" in body["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SUB, "event_type": "ringing"}, "event_type"),
        ({**SUB, "method": "PUT"}, "method"),
        ({**SUB, "url": "/relative/path"}, "url"),
        ({**SUB, "url": "ftp://host/x"}, "url"),
        ({**SUB, "url": "http://"}, "url"),
        ({**SUB, "url": "http://host:99999/"}, "url"),
        ({**SUB, "url": "https://x/" + "a" * 3000}, "url"),
        ({**SUB, "url": "https://x/a\x00b"}, "url"),  # (PostgreSQL's text takes no NUL)
        ({**SUB, "url": "https://x/a\nHost: y"}, "url"),
        ({"event_type": "hangup", "method": "GET"}, "url"),
        ({**SUB, "url": 5}, "url"),
        ({**SUB, "extra": 1}, "extra"),
    ],
)
async def test_invalid_subscriptions_name_the_field(client: TestClient[Any, Any], body: dict[str, Any],
                                                    field: str) -> None:  # fmt: skip
    """Each invalid body is a 400 whose JSON names the field and the problem."""
    resp = await client.post("/extension/175/event/", json=body, headers=AUTH)
    assert resp.status == 400
    err = await resp.json()
    assert err["field"] == field and err["message"]


async def test_lowercase_method_is_accepted_as_upper(client: TestClient[Any, Any]) -> None:
    """'post' is taken as POST."""
    resp = await client.post("/extension/175/event/", json={**SUB, "method": "post"}, headers=AUTH)
    assert (await resp.json())["method"] == "POST"


@pytest.mark.parametrize(
    ("data", "ctype", "status", "error"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_request"),
        (b"url=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"url": "' + b"a" * 9000 + b'"}', "application/json", 413, "too_large"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
    ],
)
async def test_malformed_bodies_are_clear_4xx(client: TestClient[Any, Any], data: bytes, ctype: str,
                                              status: int, error: str) -> None:  # fmt: skip
    """Malformed JSON, wrong content type and oversized bodies get a JSON 4xx, never a 500."""
    resp = await client.post("/extension/175/event/", data=data, headers={**AUTH, "Content-Type": ctype})
    assert resp.status == status
    assert (await resp.json())["error"] == error


async def test_limits_are_reported_and_enforced(client: TestClient[Any, Any]) -> None:
    """GET /limit/ shows maxima and usage; creating past a limit is a 409 saying which."""
    for _ in range(3):
        assert (await client.post("/extension/175/event/", json=SUB, headers=AUTH)).status == 201
    resp = await client.post("/extension/175/event/", json=SUB, headers=AUTH)
    assert resp.status == 409 and "extension 175" in (await resp.json())["message"]
    for _ in range(2):
        assert (await client.post("/extension/176/event/", json=SUB, headers=AUTH)).status == 201
    resp = await client.post("/extension/1300/event/", json=SUB, headers=AUTH)
    assert resp.status == 409 and "5 subscriptions" in (await resp.json())["message"]
    lim = await (await client.get("/limit/", headers=AUTH)).json()
    assert lim["event_subscriptions"] == {
        "max_per_extension": 3, "max_total": 5, "used_total": 5,
        "used_by_extension": {"175": 3, "176": 2, "1300": 0},
    }  # fmt: skip
    limited = await (await client.get("/limit/", headers={"Authorization": f"Bearer {LIMITED}"})).json()
    assert limited["event_subscriptions"]["used_by_extension"] == {"176": 2}


async def test_subscriptions_survive_a_restart(store_backend: Backend) -> None:
    """Subscriptions are in the store: a new store on the same file (database) lists them."""
    store = store_backend.open()
    async with TestClient(TestServer(make_app(CONFIG, store))) as c:
        created = await (await c.post("/extension/175/event/", json=SUB, headers=AUTH)).json()
    store.close()
    again = store_backend.open()
    async with TestClient(TestServer(make_app(CONFIG, again))) as c:
        assert await (await c.get("/extension/175/event/", headers=AUTH)).json() == [created]
    again.close()


def shape(path: str) -> str:
    """A path with its parameters unnamed (``/extension/{}/event/{}``)."""
    return re.sub(r"\{[^}]*\}", "{}", path)


async def test_openapi_and_offline_docs(client: TestClient[Any, Any]) -> None:
    """/openapi.json describes every resource (each path it names is served, bare or under
    /api/ver1.0/, and every resource the API serves is described in one of the two forms);
    /docs is Swagger UI served from our own assets."""
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    served = {shape(r.canonical) for r in client.app.router.resources()}  # type: ignore[union-attr]
    documented = {shape(p) for p in spec["paths"]}
    assert documented <= served
    bare = {p.removeprefix("/api/ver1.0") for p in documented}
    api = {p.removeprefix("/api/ver1.0") for p in served if p.startswith(("/api/", "/extension/", "/client/",
                                                                          "/limit", "/calls/", "/deliveries",
                                                                          "/user/", "/oauth/", "/records/"))}  # fmt: skip
    # aliases a client may call: a trailing slash more or less, the SDKs' .../download/
    aliases = {
        p for p in api if p.endswith(("}/", "/download/")) and p.rstrip("/").removesuffix("/download") in bare
    }
    assert api - aliases - bare == set()
    page = await client.get("/docs/")
    html = await page.text()
    assert page.status == 200 and "swagger-ui-bundle.js" in html
    assert "http://" not in html and "https://" not in html  # no CDN
    js = await client.get("/docs/static/swagger-ui-bundle.js")
    assert js.status == 200 and len(await js.read()) > 100_000


async def test_deliveries_need_an_unrestricted_token(client: TestClient[Any, Any]) -> None:
    """Listing and retrying deliveries is refused to tokens limited to some extensions."""
    limited = {"Authorization": f"Bearer {LIMITED}"}
    assert (await client.get("/deliveries/", headers=limited)).status == 403
    assert await (await client.get("/deliveries/", headers=AUTH)).json() == []
    assert (await client.get("/deliveries/?state=weird", headers=AUTH)).status == 400
    resp = await client.post("/deliveries/retry", json={"ids": "x"}, headers=AUTH)
    assert resp.status == 400 and (await resp.json())["field"] == "ids"
    assert await (await client.post("/deliveries/retry", headers=AUTH)).json() == {"retried": 0}


async def test_hashed_tokens_authenticate(tmp_path: Path) -> None:
    """A token configured only by its sha256 works like the token itself."""
    import hashlib

    secret = "hashed-token-0123456789"
    text = CONFIG_TEXT.replace(
        f"    - {{token: {LIMITED}, extensions: [176]}}",
        f"    - {{sha256: {hashlib.sha256(secret.encode()).hexdigest()}, extensions: [176]}}",
    )
    store = Store(tmp_path / "h.db")
    async with TestClient(TestServer(make_app(parse_config(text), store))) as c:
        ok = await c.get("/extension/176/event/", headers={"Authorization": f"Bearer {secret}"})
        assert ok.status == 200
        other = await c.get("/extension/175/event/", headers={"Authorization": f"Bearer {secret}"})
        assert other.status == 403
    store.close()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/hook", "http://[::1]/x", "http://10.1.2.3/x", "http://169.254.169.254/latest/meta-data",
     "http://192.168.0.10:8080/x", "http://localhost/x", "http://0.0.0.0/x", "http://[::ffff:127.0.0.1]/x"],
)  # fmt: skip
async def test_ssrf_guard_refuses_internal_addresses(client: TestClient[Any, Any], url: str) -> None:
    """Loopback, private, link-local (metadata), unspecified addresses are refused by default."""
    resp = await client.post("/extension/175/event/", json={**SUB, "url": url}, headers=AUTH)
    assert resp.status == 400
    body = await resp.json()
    assert body["field"] == "url" and "allow_networks" in body["message"]


async def test_ssrf_allow_list_lets_an_intranet_receiver_in(tmp_path: Path) -> None:
    """delivery.allow_networks admits the listed networks (and only those)."""
    text = CONFIG_TEXT + 'delivery: {allow_networks: ["10.0.0.0/8", "127.0.0.0/8"]}\n'
    store = Store(tmp_path / "a.db")
    async with TestClient(TestServer(make_app(parse_config(text), store))) as c:
        ok = await c.post("/extension/175/event/", json={**SUB, "url": "http://10.1.2.3/x"}, headers=AUTH)
        assert ok.status == 201
        assert (await c.post("/extension/175/event/", json={**SUB, "url": "http://192.168.1.1/x"},
                             headers=AUTH)).status == 400  # fmt: skip
    store.close()


async def test_rate_limit_answers_429_with_headers(tmp_path: Path) -> None:
    """Past rate_limit_per_minute a token gets 429 rate_limit_exceeded with X-RateLimit-*
    and Retry-After; others do not."""
    text = CONFIG_TEXT.replace("  max_body_bytes: 8192", "  max_body_bytes: 8192\n  rate_limit_per_minute: 3")
    store = Store(tmp_path / "r.db")
    async with TestClient(TestServer(make_app(parse_config(text), store))) as c:
        seen = []
        for _ in range(4):
            r = await c.get("/extension/175/event/", headers=AUTH)
            seen.append((r.status, r.headers["X-RateLimit-Limit"], r.headers["X-RateLimit-Remaining"]))
        assert seen == [(200, "3", "2"), (200, "3", "1"), (200, "3", "0"), (429, "3", "0")]
        body = await r.json()
        assert (body["status"], body["error"]) == ("rate_limit_exceeded", "rate_limited")
        assert 1 <= int(r.headers["Retry-After"]) <= 20 and 40 <= int(r.headers["X-RateLimit-Reset"]) <= 60
        other = await c.get("/extension/176/event/", headers={"Authorization": f"Bearer {LIMITED}"})
        assert other.status == 200
    store.close()


def test_rate_limiter_refills_over_time() -> None:
    """The bucket refills at per_minute/60 per second."""
    from bridge.api import RateLimiter

    now = [0.0]
    lim = RateLimiter(60, clock=lambda: now[0])
    assert all(lim.take("k")[0] for _ in range(60))
    assert lim.take("k")[0] is False
    now[0] += 1.0
    assert lim.take("k")[0] is True and lim.take("k")[0] is False


def test_rate_limit_reset_is_seconds_until_the_window_is_whole_again() -> None:
    """X-RateLimit-Reset counts the seconds until every request of the window is available
    again (Telphin's meaning); Retry-After the seconds until the next one is."""
    from bridge.api import RateLimiter

    now = [0.0]
    lim = RateLimiter(60, clock=lambda: now[0])  # one request per second comes back
    assert lim.take("k") == (True, 59, 1, 0)
    for _ in range(59):
        lim.take("k")
    assert lim.take("k") == (False, 0, 60, 1)
    now[0] += 30.0
    assert lim.take("k") == (True, 29, 31, 0)
