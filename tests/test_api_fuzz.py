"""The REST API fuzzed against its own OpenAPI description (schemathesis): no 500s,
and every response of the documented kind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from bridge.api import make_app
from bridge.api.openapi import openapi
from bridge.config import parse_config
from tests.conftest import Backend, free_port

TOKEN = "fuzz-token-0123456789abcdef"
CONFIG = parse_config(f"""
ami: {{username: bridge, secret: s}}
extensions:
  - {{id: 175, name: "000*099@pbx.example", type: phone, endpoint: "099"}}
  - {{id: 1300, name: "000*300@pbx.example", type: queue, queue: support}}
api: {{tokens: [{{token: {TOKEN}}}], rate_limit_per_minute: 100000}}
""")
schema = schemathesis.openapi.from_dict(openapi())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def base_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real API app served by aiohttp in a background thread (schemathesis calls it over
    HTTP), on each store."""
    port = free_port()
    server = request.getfixturevalue("pg_server").url if request.param == "postgresql" else None
    store = Backend(request.param, Path(tmp_path_factory.mktemp("fuzz")), server).open("f.db")
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(CONFIG, store))
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    store.close()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_500(case: schemathesis.Case, base_url: str) -> None:
    """Whatever the fuzzer sends (valid or not, with the token), the API answers a 4xx or
    2xx, with JSON (or, for a 204, nothing)."""
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
    response = case.call(base_url=base_url)
    assert response.status_code < 500 or response.status_code in (502, 503), (
        response.status_code,
        response.text,
    )
    if response.status_code == 204:  # a DELETE done: no body, as Telphin's API answers
        assert response.content == b"", response.text[:200]
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), response.text[:200]
