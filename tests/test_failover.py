"""A cluster under load (issue 19): two bridges read one Asterisk stream into one
PostgreSQL; one of them is killed (``kill -9``) at random moments and started again,
three times. The receiver gets every event once by Idempotency-Key (a duplicate is only
a request in flight at a kill, sent again with the same key and fields), each
subscription's events in order, and nothing is left pending. And: two Asterisk streams
into two bridges of different ``ami.name`` on one database: subscriptions made through
either API get their events."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import psycopg
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.demo import ReplayServer
from bridge.store_pg import PgStore
from tests.conftest import FIXTURES, REPO, Backend, free_port

KILLS = 3
#: calls per second the replayed Asterisk places, and for how long (seconds, about)
RATE = 50
LOAD = 20.0
#: the bridges' lease (seconds): a killed bridge's subscriptions pass after it
LEASE = 3.0
KINDS = ("dial-in", "dial-out", "answer", "hangup")
TOKEN = "token-cluster-0123456789"


@pytest.fixture
def pg(pg_server: Any, tmp_path: Path) -> Backend:
    return Backend("postgresql", tmp_path, pg_server.url)


class Receiver:
    """Records every webhook: (path, Idempotency-Key, form)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, dict[str, str]]] = []
        app = web.Application()
        app.router.add_post("/{sub}", self.hook)
        self.server = TestServer(app, host="127.0.0.1")

    async def hook(self, request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode()))
        self.got.append((request.path, request.headers["Idempotency-Key"], form))
        await asyncio.sleep(0.002)
        return web.Response()


def config_text(tmp: Path, name: str, ami_port: int, url: str, extensions: list[int]) -> Path:
    """A bridge of the cluster: the lab's extensions listed in ``extensions``."""
    lab = yaml.safe_load((FIXTURES / "lab.yaml").read_text())
    doc = {
        "ami": {"host": "127.0.0.1", "port": ami_port, "username": "x", "secret": "x", "name": name,
                "reconnect_min": 0.1, "reconnect_max": 0.2},
        "extensions": [e for e in lab["extensions"] if e["id"] in extensions],
        "trunks": lab.get("trunks", []),
        "api": {"listen": f"127.0.0.1:{free_port()}", "tokens": [{"token": TOKEN}]},
        "management": {"listen": f"127.0.0.1:{free_port()}"},
        "store": {"url": url, "lease": LEASE, "poll_interval": 0.5},
        "delivery": {"allow_networks": ["127.0.0.0/8"], "backoff_initial": 0.1, "backoff_max": 0.2},
    }  # fmt: skip
    path = tmp / f"{name}-{ami_port}-{len(list(tmp.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def pending(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM deliveries WHERE state <> 'delivered'").fetchone()[0])


async def test_two_bridges_on_one_stream_lose_nothing_when_one_is_killed(pg: Backend, tmp_path: Path) -> None:
    url = pg.url()
    receiver = Receiver()
    await receiver.server.start_server()
    fixture = FIXTURES / "internal-answered-caller-hangup.ami"
    replay = ReplayServer([(fixture.stem, fixture.read_bytes())], passes=None, rate=RATE, shared=True)
    replay.go.clear()  # the stream starts once both bridges are in
    ami_port = await replay.start()
    store = PgStore(url)
    for ext in (1101, 1102):
        for kind in KINDS:
            store.add_subscription(ext, kind, f"http://127.0.0.1:{receiver.server.port}/{ext}-{kind}", "POST")
    store.close()
    configs = [config_text(tmp_path, "pbx", ami_port, url, [1101, 1102]) for _ in range(2)]
    logs = [open(tmp_path / f"bridge{i}.log", "ab") for i in range(2)]  # noqa: SIM115 - across restarts

    def start(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(configs[i]),
                                 "--log-format", "json"], cwd=REPO, stderr=logs[i])  # fmt: skip

    rng = random.Random(20261205)
    procs = [start(0), start(1)]
    try:
        await _until(lambda: replay.logins >= 2, 30)  # both logged in (the stream held)
        await asyncio.sleep(0.5)
        replay.go.set()
        began = time.monotonic()
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(2.0, 5.0))
            victim = rng.randrange(2)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait(timeout=10)
            procs[victim] = start(victim)
        await asyncio.sleep(max(0.0, LOAD - (time.monotonic() - began)))
        played = replay.played
        replay.passes = 0  # no more calls
        await asyncio.sleep(1.0)
        # a killed bridge's leases pass after LEASE: everything is sent within a few
        await _until(lambda: pending(url) == 0, 60)
        await asyncio.sleep(1.0)  # (requests answered after their outcome was written)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc in procs]
        for log in logs:
            log.close()
        await replay.close()
        await receiver.server.close()
    assert codes == [0, 0]
    # the subscriptions' leases passed from a killed bridge to the other (not only taken at start)
    taken = [line for i in range(2) for line in (tmp_path / f"bridge{i}.log").read_text().splitlines()
             if '"subscription leases: ' in line and " taken, " in line and "(0 taken" not in line]  # fmt: skip
    assert len(taken) >= 2, taken
    json_lines = (tmp_path / "bridge0.log").read_text().splitlines()
    assert json_lines and all('"server": "pbx"' in line for line in json_lines if line.startswith("{"))

    with psycopg.connect(url) as conn:
        states = dict(conn.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY 1").fetchall())
        keys = {f"{e}-{s}" for e, s in conn.execute("SELECT event_id, subscription_id FROM deliveries")}
        servers = {r[0] for r in conn.execute("SELECT DISTINCT server FROM events")}
    assert set(states) == {"delivered"}, states  # nothing pending, nothing failed
    assert servers == {"pbx"}
    got = receiver.got
    received = Counter(key for _, key, _ in got)
    assert keys == set(received), keys ^ set(received)  # nothing lost, nothing invented
    # one key per event, whichever bridge translated and sent it: (path, component, type) once
    by_event: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for path, key, form in got:
        by_event[(path, form["SubCallID"], form["EventType"])].add(key)
    assert all(len(k) == 1 for k in by_event.values()), [e for e, k in by_event.items() if len(k) > 1][:5]
    # duplicates: only requests in flight (or sent, outcome not yet written) at a kill, same fields
    dups = [k for k, n in received.items() if n > 1]
    assert len(dups) <= KILLS * 8 * 10, len(dups)
    fields = defaultdict(list)
    for _, key, form in got:
        fields[key].append(form)
    assert all(len({tuple(sorted(f.items())) for f in fields[k]}) == 1 for k in dups)
    # in order per subscription: by commit order (the key's event id), and each component's
    # dial before its answer before its hangup
    by_path: dict[str, list[int]] = defaultdict(list)
    for path, key, _ in got:
        by_path[path].append(int(key.split("-")[0]))
    for path, ids in by_path.items():
        first_seen = list(dict.fromkeys(ids))
        assert first_seen == sorted(first_seen), path
    # every call played while a bridge was up is complete: each component's hangup came
    components: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path, _, form in got:
        components[(path.split("-")[0], form["SubCallID"])].add(form["EventType"])
    assert all("hangup" in kinds for kinds in components.values())
    calls = {form["CallID"] for _, _, form in got}
    assert len(calls) >= played * 0.95, (len(calls), played)  # the load ran through the kills
    assert played >= RATE * LOAD * 0.5
    print(f"failover: {played} calls played, {len(keys)} deliveries, {len(got)} requests, "
          f"{len(dups)} sent twice")  # fmt: skip


async def test_two_streams_into_two_bridges_on_one_database(pg: Backend, tmp_path: Path) -> None:
    """Server a (phones 1101, 1102) and server b (the IVR 1400): each API takes subscriptions
    for the other's extensions, lists both, and the events come from the server they live on."""
    url = pg.url()
    receiver = Receiver()
    await receiver.server.start_server()
    streams = {
        "pbx-a": ("internal-answered-caller-hangup", [1101, 1102]),
        "pbx-b": ("ivr-caller-hangup", [1400]),
    }
    replays, configs = {}, {}
    for name, (stem, exts) in streams.items():
        data = (FIXTURES / f"{stem}.ami").read_bytes()
        replays[name] = ReplayServer([(stem, data)], passes=None, rate=5)
        replays[name].go.clear()
        configs[name] = config_text(tmp_path, name, await replays[name].start(), url, exts)
    procs = [subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(configs[n])], cwd=REPO,
                              stderr=open(tmp_path / f"{n}.log", "ab")) for n in streams]  # noqa: SIM115  # fmt: skip
    apis = {n: yaml.safe_load(configs[n].read_text())["api"]["listen"] for n in streams}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(headers=auth) as http:
            listed: list[dict[str, Any]] = []

            async def both_registered() -> bool:
                nonlocal listed
                for api in apis.values():  # each API up and listing both servers' extensions
                    try:
                        async with http.get(f"http://{api}/client/@me/extension/") as r:
                            listed = await r.json() if r.status == 200 else []
                    except aiohttp.ClientError:
                        return False
                    if {e["id"] for e in listed} != {1101, 1102, 1400}:
                        return False
                return True

            await _until_async(both_registered, 30)
            assert {e["id"]: e["server"] for e in listed} == {1101: "pbx-a", 1102: "pbx-a", 1400: "pbx-b"}
            # each extension subscribed through the API of the bridge of the *other* server
            for ext, api in ((1101, apis["pbx-b"]), (1400, apis["pbx-a"])):
                for kind in ("dial-in", "dial-out", "hangup"):
                    body = {"url": f"http://127.0.0.1:{receiver.server.port}/{ext}-{kind}", "method": "POST",
                            "event_type": kind}  # fmt: skip
                    async with http.post(f"http://{api}/extension/{ext}/event/", json=body) as r:
                        assert r.status == 201, await r.text()
            async with http.post(f"http://{apis['pbx-a']}/extension/9999/event/",
                                 json={"url": "http://127.0.0.1:9/", "method": "POST",
                                       "event_type": "hangup"}) as r:  # fmt: skip
                assert r.status == 404  # no server has it
        await asyncio.sleep(1.0)  # (each bridge's store sees the new subscriptions)
        for replay in replays.values():
            replay.go.set()
        await _until(lambda: {p.split("-")[0] for p, _, _ in receiver.got} == {"/1101", "/1400"}, 30)
        await asyncio.sleep(1.0)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc in procs]
        for replay in replays.values():
            await replay.close()
        await receiver.server.close()
    assert codes == [0, 0]
    kinds = {(p.split("-")[0], f["EventType"]) for p, _, f in receiver.got}
    assert {("/1101", "dial-out"), ("/1101", "hangup"), ("/1400", "dial-in"), ("/1400", "hangup")} <= kinds
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT DISTINCT extension_id, server FROM events ORDER BY 1").fetchall()
    assert rows == [(1101, "pbx-a"), (1102, "pbx-a"), (1400, "pbx-b")]


async def _until(done: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def _until_async(done: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)
