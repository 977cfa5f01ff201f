"""`kill -9` of the daemon at random moments while calls keep coming: every event that was
committed is delivered, in order per subscription; a duplicate is only the request that
was in flight, sent again with the same idempotency key and the same fields."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.demo import ReplayServer
from bridge.store import Store
from tests.conftest import FIXTURES, REPO, free_port

KILLS = 3


async def test_kill_9_at_random_moments_loses_no_committed_event(tmp_path: Path) -> None:
    """Three kill -9 under a steady load of real calls; afterwards the store and the receiver agree."""
    got: list[tuple[str, str, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(
            (
                request.path,
                request.headers["Idempotency-Key"],
                dict(parse_qsl((await request.read()).decode())),
            )
        )
        await asyncio.sleep(0.01)
        return web.Response()

    app = web.Application()
    app.router.add_post("/{sub}", hook)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    fixture = FIXTURES / "internal-answered-caller-hangup.ami"
    replay = ReplayServer([(fixture.stem, fixture.read_bytes())], passes=None, rate=15)
    ami_port = await replay.start()
    db = tmp_path / "bridge.db"
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
ami: {{host: 127.0.0.1, port: {ami_port}, username: x, secret: x, reconnect_min: 0.1, reconnect_max: 0.2}}
extensions:
  - {{id: 1101, name: "000*101@pbx.example", type: phone, endpoint: "101"}}
  - {{id: 1102, name: "000*102@pbx.example", type: phone, endpoint: "102"}}
api: {{listen: "127.0.0.1:{free_port()}"}}
management: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{db}"}}
delivery: {{allow_networks: ["127.0.0.0/8"], backoff_initial: 0.1, backoff_max: 0.2}}
""")
    store = Store(db)
    for ext in (1101, 1102):
        for kind in ("dial-in", "dial-out", "answer", "hangup"):
            store.add_subscription(ext, kind, f"http://127.0.0.1:{receiver.port}/{ext}-{kind}", "POST")
    store.close()
    rng = random.Random(20261126)
    log = open(tmp_path / "daemon.log", "ab")  # noqa: SIM115 - kept open across restarts

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)], cwd=REPO,
                                stderr=log)  # fmt: skip

    proc = start()
    try:
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.8, 1.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc = start()
        await asyncio.sleep(1.0)
        replay.passes = 0  # no more calls
        await asyncio.sleep(2.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        log.close()
        await replay.close()
        await receiver.close()

    check = Store(db)
    delivered = check.deliveries("delivered")
    assert check.deliveries("pending") == [] and check.deliveries("failed") == []
    check.close()
    keys = {f"{d['event_id']}-{d['subscription_id']}" for d in delivered}
    received = Counter(key for _, key, _ in got)
    assert keys and keys == set(received), keys ^ set(received)  # nothing lost, nothing invented
    dups = [k for k, n in received.items() if n > 1]
    assert len(dups) <= KILLS * 8  # at most what was in flight at each kill
    fields = defaultdict(list)
    for _, key, form in got:
        fields[key].append(form)
    assert all(len({tuple(sorted(f.items())) for f in fields[k]}) == 1 for k in dups)
    by_path = defaultdict(list)
    for path, key, _ in got:
        by_path[path].append(int(key.split("-")[0]))
    for path, ids in by_path.items():
        first_seen = list(dict.fromkeys(ids))
        assert first_seen == sorted(first_seen), path  # in order per subscription
    assert len(keys) >= 6 * 10  # the load really ran through the kills
