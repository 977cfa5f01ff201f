"""The operator's console: its series, delivery health and sessions, the management and
public listeners' access rules, and the console in headless Chromium against a real daemon."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.api import make_app
from bridge.api.common import Principal
from bridge.config import parse_config
from bridge.console.health import DeliveryHealth
from bridge.console.sessions import Sessions
from bridge.console.timeline import Timeline, percentile
from bridge.console.web import COOKIE, Console, add_console, loopback_hosts
from bridge.demo import ReplayServer
from bridge.hub import EventHub
from bridge.store import Store
from tests.conftest import Backend, free_port
from tests.test_dashboard import Browser, browser  # noqa: F401  (the fixture)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
SHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS", "/tmp"))
ADMIN = "admin-token-0123456789"
SCOPED = "scoped-token-0123456789"  # extension 1101 only
CRM_SECRET = "crm-secret-0123456789"  # client crm: extension 1102 only


# -- the series ---------------------------------------------------------------------------


def test_timeline_counts_calls_events_deliveries_per_minute() -> None:
    t = Timeline(minutes=10)
    t.event("dial-out", "c1", 600.5)
    t.event("dial-in", "c1", 601)
    t.event("hangup", "c1", 670)  # the same call in the next minute: not counted again
    t.event("dial-out", "c2", 671)
    t.event("message-in", "m1", 672)  # a message is no call
    t.delivery(True, 0.1, 680)
    t.delivery(True, 0.3, 681)
    t.delivery(True, 0.2, 682)
    t.delivery(False, None, 683)
    s = t.series(719, minutes=3)
    assert s["t"] == [540, 600, 660]
    assert s["calls"] == [0, 1, 1]
    assert s["events"] == {"dial-in": [0, 1, 0], "dial-out": [0, 1, 1], "hangup": [0, 0, 1],
                           "message-in": [0, 0, 1]}  # fmt: skip
    assert s["delivered"] == [0, 0, 3] and s["failed"] == [0, 0, 1]
    assert s["latency_p50"] == [None, None, 0.2] and s["latency_p95"] == [None, None, 0.3]


def test_timeline_ami_share_up_and_reconnects() -> None:
    t = Timeline(minutes=10)
    t.ami(False, 1000)  # started, not logged in yet
    t.ami(True, 1010)  # the first login: no reconnect
    t.ami(False, 1100)
    t.ami(True, 1130)  # a reconnect
    s = t.series(1150, minutes=5)
    assert s["t"] == [900, 960, 1020, 1080, 1140]
    # unknown before the start; 10 s of 20 down; up; 30 s of 60 down; up
    assert s["ami_up"] == [None, 0.5, 1.0, 0.5, 1.0]
    assert s["reconnects"] == [0, 0, 0, 1, 0]
    t.ami(False, 1160)  # an outage going on now counts up to now
    assert t.series(1170, minutes=1)["ami_up"] == [round(1 - 10 / 30, 3)]


def test_timeline_is_bounded() -> None:
    t = Timeline(minutes=5)
    for minute in range(100):
        t.event("dial-in", f"c{minute}", minute * 60.0)
    assert len(t._buckets) <= 6
    assert t.series(99 * 60, minutes=1000)["calls"] == [1] * 5


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.95) == 95.0


# -- delivery health ----------------------------------------------------------------------


def test_health_failing_since_until_a_success() -> None:
    h = DeliveryHealth(window=3600)
    h.attempt(7, 100, True, 0.05, 200, None)
    h.attempt(7, 200, False, 0.5, 503, None)
    h.attempt(7, 300, False, 5.0, None, "TimeoutError: read")
    v = h.view(7, 400)
    assert v["attempts"] == 3 and v["success_rate"] == round(1 / 3, 4)
    assert v["failing_since"] == 200 and v["last_error_at"] == 300
    assert v["last_error"] == "TimeoutError: read" and v["last_status"] is None
    assert v["latency_p50"] == 0.05
    h.attempt(7, 500, True, 0.07, 204, None)
    v = h.view(7, 500)
    assert v["failing_since"] is None and v["last_ok_at"] == 500
    assert v["last_error"] == "TimeoutError: read"  # the last error stays on show
    assert h.view(7, 500 + 3600)["attempts"] == 1  # older attempts left the window
    assert h.view(8, 500)["success_rate"] is None


def test_health_status_only_error_reads_http_status() -> None:
    h = DeliveryHealth()
    h.attempt(1, 1, False, 0.01, 404, None)
    assert h.view(1, 2)["last_error"] == "HTTP 404"


# -- sessions -----------------------------------------------------------------------------


def test_sessions_expire_close_and_are_bounded() -> None:
    s = Sessions(limit=2)
    p = Principal("crm", frozenset({1}), "oauth")
    sid, session = s.open(p, now=1000, ttl=60)
    assert s.get(sid, 1059) is session and s.get(sid, 1060) is None  # expired, forgotten
    assert s.get("nonsense", 1000) is None and s.get(None, 1000) is None
    token = Principal("crm", None, "oauth", expires_at=1030)
    sid, session = s.open(token, now=1000, ttl=3600)
    assert session.expires_at == 1030  # never past the token it was opened with
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("x") and not session.csrf_ok(None)
    s.close(sid)
    assert s.get(sid, 1001) is None
    ids = [s.open(p, 1000, 60)[0] for _ in range(3)]
    assert len(s) == 2 and s.get(ids[0], 1001) is None and s.get(ids[2], 1001) is not None


def test_loopback_hosts() -> None:
    assert loopback_hosts("0.0.0.0") is None and loopback_hosts("10.1.2.3") is None
    assert loopback_hosts("127.0.0.1") == loopback_hosts("::1") == {"127.0.0.1", "localhost", "[::1]"}
    assert loopback_hosts("localhost") is not None


# -- the listeners ------------------------------------------------------------------------

CONFIG = parse_config(f"""
ami: {{username: bridge, secret: s}}
extensions:
  - {{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101"}}
  - {{id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "102"}}
api:
  tokens: [{{token: {ADMIN}}}, {{token: {SCOPED}, extensions: [1101]}}]
  clients: [{{client_id: crm, client_secret: {CRM_SECRET}, extensions: [1102]}}]
""")
SECRET_CALL = "secret-call-4242"


def call_event(ext: int, kind: str = "dial-in") -> dict[str, Any]:
    return {"EventType": kind, "CallID": f"{SECRET_CALL}-{ext}", "SubCallID": f"{SECRET_CALL}-{ext}-1",
            "CallerIDNum": "+74951234567", "CalledNumber": f"000*{ext - 1000}", "EventTime": 1_800_000_000_000_000}  # fmt: skip


def seeded(backend: Backend) -> tuple[Store, Console]:
    """A store with a subscription per extension, one failed delivery each, and a hub with a call each."""
    store = backend.open()
    hub = EventHub()
    for ext in (1101, 1102):
        sub = store.add_subscription(ext, "dial-in", f"http://127.0.0.1:9/hook/{ext}", "POST")
        [delivery] = store.enqueue(ext, call_event(ext))
        store.mark(delivery.id, "failed", 3, status=500, error="HTTP 500")
        hub.publish(ext, call_event(ext))
        assert sub.id
    return store, Console(hub, store)


@pytest.fixture
async def public(store_backend: Backend) -> AsyncIterator[tuple[TestClient[Any, Any], Console]]:
    """The API's listener as the daemon builds it: the API and the console behind a login."""
    store, console = seeded(store_backend)
    app = make_app(CONFIG, store)
    add_console(app, console, login=True, hosts=None)
    async with TestClient(TestServer(app)) as client:
        yield client, console
    store.close()


@pytest.fixture
async def management(
    store_backend: Backend,
) -> AsyncIterator[tuple[TestClient[Any, Any], Console, list[int]]]:
    """The management listener's console (no login) on a loopback address."""
    store, console = seeded(store_backend)
    woken: list[int] = []
    console.wake = lambda: woken.append(1)
    app = web.Application()
    server = TestServer(app, host="127.0.0.1")
    add_console(app, console, login=False, hosts=loopback_hosts("127.0.0.1"))
    async with TestClient(server) as client:
        yield client, console, woken
    store.close()


def route_paths(app: web.Application) -> list[tuple[str, str]]:
    """(method, path) of every route, placeholders filled with plausible values."""
    out = []
    for r in app.router.routes():
        info = r.resource.get_info() if r.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if not path or r.method == "HEAD":
            continue
        for name, value in (("{extension_id}", "1101"), ("{sub_id}", "1"), ("{delivery_id}", "1"),
                            ("{client_id}", "@me"), ("{call_id}", f"{SECRET_CALL}-1101"),
                            ("{call_api_id}", "x"), ("{record_uuid}", "1101-0"), ("{file}", "a.wav")):  # fmt: skip
            path = path.replace(name, value)
        out.append((r.method, path))
    return out


#: what the public listener serves without any credentials: no call data in any of it
OPEN = {"/oauth/token", "/openapi.json", "/dashboard", "/dashboard/app.js", "/dashboard/app.css",
        "/dashboard/login.js", "/dashboard/login", "/dashboard/vendor/uPlot.iife.min.js",
        "/dashboard/vendor/uPlot.min.css"}  # fmt: skip


async def test_nothing_with_call_data_answers_without_auth_on_the_public_listener(
    public: tuple[TestClient[Any, Any], Console],
) -> None:
    """Every route of the public listener, without a token or session: 401/403/404 (or the
    login page, code and docs); no answer holds a CallID, a number or a URL of a subscription;
    /metrics, /health and the state are not there at all."""
    client, _ = public
    routes = route_paths(client.server.app)
    assert len(routes) > 40
    for method, path in routes:
        resp = await client.request(method, path)
        body = await resp.text()
        assert SECRET_CALL not in body and "+74951234567" not in body and "/hook/" not in body, (method, path)
        if path in OPEN or path.startswith("/docs") or path.startswith("/api/ver1.0/docs"):
            continue
        assert resp.status in (400, 401, 403, 404, 405), (method, path, resp.status, body[:200])
    for path in ("/metrics", "/health"):
        assert (await client.get(path)).status == 404


async def test_login_with_a_token_scopes_the_console(public: tuple[TestClient[Any, Any], Console]) -> None:
    """A token's login: an HttpOnly, SameSite=Strict cookie for /dashboard; the state, the
    deliveries and the stream show that token's extension only."""
    client, _ = public
    assert (await client.get("/dashboard/deliveries")).status == 401
    resp = await client.post("/dashboard/login", data={"token": "wrong-0123456789"})
    assert resp.status == 401 and "unknown bearer token" in (await resp.json())["detail"]
    resp = await client.post("/dashboard/login", data={"token": SCOPED})
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/dashboard" in cookie and "Max-Age=28800" in cookie
    state = await (await client.get("/dashboard/state")).json()
    assert [c["extensions"] for c in state["active_calls"]] == [[1101]]
    assert [i["extension_id"] for i in state["recent"]] == [1101]
    deliveries = await (await client.get("/dashboard/deliveries")).json()
    assert [s["extension_id"] for s in deliveries["subscriptions"]] == [1101]
    assert [d["extension_id"] for d in deliveries["failed"]] == [1101]
    assert deliveries["subscriptions"][0]["failed"] == 1
    me = await (await client.get("/dashboard/me")).json()
    assert me["client_id"] == "bridge" and me["extensions"] == [1101] and me["login"] is True
    series = await (await client.get("/dashboard/series?minutes=5")).json()
    assert set(series) == {"t", "reconnects", "ami_up"}  # the bridge-wide counts are the operator's
    async with client.get("/dashboard/stream") as stream:
        first = await stream.content.readline()
        assert first == b"event: state\n"
        data = (await stream.content.readline()).decode()
        assert f"{SECRET_CALL}-1101" in data and f"{SECRET_CALL}-1102" not in data


async def test_login_with_client_credentials_and_logout(public: tuple[TestClient[Any, Any], Console]) -> None:
    client, console = public
    resp = await client.post(
        "/dashboard/login", data={"client_id": "crm", "client_secret": "nope-0123456789"}
    )
    assert resp.status == 401
    resp = await client.post("/dashboard/login", data={"client_id": "crm", "client_secret": CRM_SECRET})
    assert resp.status == 200
    me = await (await client.get("/dashboard/me")).json()
    assert me["client_id"] == "crm" and me["extensions"] == [1102]
    deliveries = await (await client.get("/dashboard/deliveries")).json()
    [failed] = deliveries["failed"]
    # an action without the session's CSRF token is refused; with it, it is done
    assert (await client.post(f"/dashboard/deliveries/{failed['id']}/resend")).status == 403
    headers = {"X-CSRF-Token": me["csrf"]}
    assert (await client.post("/dashboard/deliveries/1/resend", headers=headers)).status == 404  # 1101's
    resp = await client.post(f"/dashboard/deliveries/{failed['id']}/resend", headers=headers)
    assert resp.status == 200
    assert (await client.post(f"/dashboard/deliveries/{failed['id']}/resend", headers=headers)).status == 409
    evil = {**headers, "Origin": "http://evil.example"}
    assert (await client.post("/dashboard/logout", headers=evil)).status == 403
    assert (await client.post("/dashboard/logout", headers=headers)).status == 200
    assert (await client.get("/dashboard/me")).status == 401
    assert len(console.sessions) == 0


async def test_session_ends_with_its_expiry(public: tuple[TestClient[Any, Any], Console]) -> None:
    client, console = public
    now = [1000.0]
    console.clock = lambda: now[0]
    console.session_ttl = 60
    assert (await client.post("/dashboard/login", data={"token": ADMIN})).status == 200
    assert (await client.get("/dashboard/me")).status == 200
    now[0] += 61
    assert (await client.get("/dashboard/me")).status == 401
    page = await client.get("/dashboard")
    assert 'id="login-form"' in await page.text()


async def test_login_from_another_origin_is_refused(public: tuple[TestClient[Any, Any], Console]) -> None:
    client, _ = public
    resp = await client.post(
        "/dashboard/login", data={"token": ADMIN}, headers={"Origin": "https://evil.example"}
    )
    assert resp.status == 403 and "Set-Cookie" not in resp.headers


async def test_management_console_needs_no_login_but_csrf_and_a_loopback_host(
    management: tuple[TestClient[Any, Any], Console, list[int]],
) -> None:
    client, console, woken = management
    resp = await client.get("/dashboard/deliveries")
    assert resp.status == 200
    body = await resp.json()
    assert sorted(s["extension_id"] for s in body["subscriptions"]) == [1101, 1102]
    assert {s["state"] for s in body["subscriptions"]} == {"ok"}  # failed once, not failing now
    assert resp.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in resp.headers[
        "Content-Security-Policy"]  # fmt: skip
    # DNS rebinding: a page of another name resolving to 127.0.0.1 is not answered
    assert (await client.get("/dashboard/state", headers={"Host": "evil.example:8081"})).status == 421
    me = await (await client.get("/dashboard/me")).json()
    assert me["login"] is False and me["extensions"] is None
    failed = body["failed"][0]["id"]
    assert (await client.post(f"/dashboard/deliveries/{failed}/resend")).status == 403
    resp = await client.post(f"/dashboard/deliveries/{failed}/resend", headers={"X-CSRF-Token": me["csrf"]})
    assert resp.status == 200 and woken == [1]
    assert console.store.count_deliveries("pending") == 1
    console.health.attempt(body["subscriptions"][0]["id"], 5.0, False, 0.2, 503, None)
    states = {
        s["id"]: s["state"]
        for s in (await (await client.get("/dashboard/deliveries")).json())["subscriptions"]
    }
    assert sorted(states.values()) == ["failing", "sending"]


def test_management_listen_must_differ_from_the_api() -> None:
    from bridge.config import ConfigError

    with pytest.raises(ConfigError, match=r"management\.listen '127\.0\.0\.1:8080' is the API's address"):
        parse_config("ami: {username: a, secret: b}\nmanagement: {listen: '127.0.0.1:8080'}")
    assert parse_config("ami: {username: a, secret: b}").management.listen == "127.0.0.1:8081"


# -- a real daemon, in Chromium -------------------------------------------------------------


async def receivers() -> tuple[web.AppRunner, str, dict[str, int]]:
    hits = {"ok": 0, "broken": 0, "gone": 0}

    async def handle(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        hits[kind] += 1
        return web.Response(status={"ok": 200, "broken": 500, "gone": 410}[kind], text=kind)

    app = web.Application()
    app.router.add_post("/{kind}/{ext}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", hits


async def test_console_in_headless_chromium_against_a_real_daemon(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    """A daemon fed real recordings over AMI, with a healthy, a broken (500) and a gone (410)
    receiver. The management console shows each subscription's state, success rate, last
    error and since when; the failed deliveries with a Resend that sends again; the charts.
    On the API's listener the console asks for a login, and a scoped token sees its own."""
    runner, rurl, hits = await receivers()
    names = ["internal-answered-caller-hangup", "internal-busy", "inbound-did-recorded"]
    replay = ReplayServer([(n, (FIXTURES / f"{n}.ami").read_bytes()) for n in names], speed=20, max_gap=0.1,
                          passes=1)  # fmt: skip
    replay.go.clear()
    ami_port = await replay.start()
    api, mgmt = free_port(), free_port()
    (tmp_path / "bridge.yaml").write_text(f"""
ami: {{host: 127.0.0.1, port: {ami_port}, username: crm, secret: crm}}
extensions:
  - {{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101"}}
  - {{id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "102"}}
  - {{id: 1103, name: "000*103@pbx.example", type: phone, endpoint: "103"}}
trunks: [trunk]
api: {{listen: "127.0.0.1:{api}", tokens: [{{token: {ADMIN}}}, {{token: {SCOPED}, extensions: [1101]}}]}}
management: {{listen: "127.0.0.1:{mgmt}"}}
store: {{path: "{tmp_path / "bridge.db"}"}}
delivery: {{backoff_initial: 0.1, backoff_max: 0.2, max_attempts: 2, allow_networks: ["127.0.0.0/8"]}}
""")
    store = Store(tmp_path / "bridge.db")
    for kind in ("dial-in", "dial-out", "hangup"):
        store.add_subscription(1101, kind, f"{rurl}/ok/1101", "POST")
        store.add_subscription(1102, kind, f"{rurl}/broken/1102", "POST")
    store.add_subscription(1101, "answer", f"{rurl}/gone/1101", "POST")
    store.close()
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(tmp_path / "bridge.yaml")],
                                cwd=REPO, stderr=log)  # fmt: skip
    console = f"http://127.0.0.1:{mgmt}/dashboard"
    try:
        await asyncio.wait_for(replay.logged_in.wait(), 20)
        replay.go.set()
        await asyncio.wait_for(replay.finished.wait(), 60)
        await browser.call("Page.navigate", url=console)
        await browser.wait_for("document.body.dataset.refreshed", timeout=20)
        # healthy, failing (500 after 2 attempts), disabled by the 410
        await browser.wait_for("document.querySelector('tr.sub.failing') && document.querySelector('tr.sub.disabled')"
                               " && document.querySelectorAll('tr.failed-delivery').length >= 3", timeout=30)  # fmt: skip
        rows = await browser.eval(
            "[...document.querySelectorAll('#subs tr')].map(tr => [tr.dataset.state, tr.cells[1].textContent,"
            " tr.cells[4].textContent, tr.cells[8].textContent, tr.cells[9].textContent])"
        )
        by_ext: dict[str, set[str]] = {}
        for state, ext, rate, error, since in rows:
            by_ext.setdefault(ext, set()).add(state)
            if state == "failing":
                assert rate.startswith("0.0% of") and error.startswith("HTTP 500 at") and "ago" in since
        assert by_ext["1101"] == {"ok", "disabled"} and "failing" in by_ext["1102"]
        assert "410" in await browser.eval("document.querySelector('tr.sub.disabled td.state').textContent")
        # the charts are drawn by uPlot, from the bridge's own copy
        assert await browser.eval("typeof uPlot") == "function"
        await browser.wait_for("document.querySelectorAll('#charts-section canvas').length === 4")
        await screenshot(browser, SHOTS / "console-management.png")
        # Resend: the broken receiver is asked again
        before = hits["broken"]
        n_failed = await browser.eval("document.querySelectorAll('tr.failed-delivery').length")
        await browser.eval("document.querySelector('tr.failed-delivery button.resend').click()")
        await browser.wait_for(f"document.querySelectorAll('tr.failed-delivery').length === {n_failed}"
                               " && document.body.dataset.refreshed", timeout=20)  # fmt: skip
        for _ in range(100):
            if hits["broken"] > before:
                break
            await asyncio.sleep(0.1)
        assert hits["broken"] >= before + 1
        # the API's listener: the login page, then a scoped token's console
        await browser.call("Page.navigate", url=f"http://127.0.0.1:{api}/dashboard")
        await browser.wait_for("document.getElementById('login-form')")
        await browser.eval(f"document.getElementById('token').value = {SCOPED!r}")
        await browser.eval("document.getElementById('login').click()")
        await browser.wait_for("document.body.dataset.refreshed", timeout=20)
        exts = await browser.eval(
            "[...document.querySelectorAll('#subs tr')].map(tr => tr.cells[1].textContent)"
        )
        assert sorted(exts) == ["1101"] * 4
        assert "extensions 1101" in await browser.eval("document.getElementById('who').textContent")
        shown = "[...document.querySelectorAll('#charts-section figure')].filter(f => !f.hidden).length"
        assert await browser.wait_for(f"{shown} === 1")  # the AMI link's; the counts are the operator's
        events = await browser.eval(
            "[...document.querySelectorAll('#events .event .ext')].map(e => e.textContent)"
        )
        assert events and set(events) == {"1101"}
        cookie = await browser.eval("document.cookie")
        assert COOKIE not in cookie  # HttpOnly: scripts cannot read it
        await screenshot(browser, SHOTS / "console-scoped.png")
        await browser.eval("document.getElementById('logout').click()")
        await browser.wait_for("document.getElementById('login-form')")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
            await replay.close()
            await runner.cleanup()
            if os.environ.get("SHOW_DAEMON_LOG"):
                print((tmp_path / "daemon.log").read_text())


async def screenshot(page: Browser, path: Path) -> None:
    shot = await page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(shot["data"]))


async def test_a_reload_gives_the_management_console_the_new_tokens(tmp_path: Path) -> None:
    """management.login on: a token the reloaded file adds logs in; one it drops does not, and
    its session ends."""
    from bridge.api.app import reconfigure_management
    from bridge.api.auth import index_credentials
    from bridge.api.common import CONFIG_KEY, STORE_KEY

    store, console = seeded(Backend("sqlite", tmp_path, None))
    app = web.Application()
    app[CONFIG_KEY], app[STORE_KEY] = CONFIG, store
    index_credentials(app, CONFIG)
    add_console(app, console, login=True, hosts=None)
    new_token = "new-token-0123456789"
    reloaded = parse_config(
        f"ami: {{username: bridge, secret: s}}\napi: {{tokens: [{{token: {new_token}}}]}}"
    )
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/dashboard/login", data={"token": new_token})).status == 401
        assert (await client.post("/dashboard/login", data={"token": ADMIN})).status == 200
        assert (await client.get("/dashboard/me")).status == 200
        reconfigure_management(app, reloaded)
        assert (await client.get("/dashboard/me")).status == 401  # its token is gone: so is the session
        assert (await client.post("/dashboard/login", data={"token": ADMIN})).status == 401
        assert (await client.post("/dashboard/login", data={"token": new_token})).status == 200
    store.close()


async def test_resend_of_an_id_too_large_for_the_store_is_404(
    management: tuple[TestClient[Any, Any], Console, list[int]],
) -> None:
    client, _, _ = management
    me = await (await client.get("/dashboard/me")).json()
    resp = await client.post(
        "/dashboard/deliveries/99999999999999999999999/resend", headers={"X-CSRF-Token": me["csrf"]}
    )
    assert resp.status == 404
