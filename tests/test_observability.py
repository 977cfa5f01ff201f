"""/health and /metrics of a running daemon (real process; AMI unreachable here, so not ready)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp

from bridge.config import AmiConfig, Config, load_config, parse_config
from bridge.observability import identity
from tests.conftest import REPO, Backend, free_port

#: ``ami.name`` comes with issue 19's part 2 (a default name then: /health reports it)
HAS_AMI_NAME = "name" in AmiConfig.model_fields


async def test_health_and_metrics_without_ami(tmp_path: Path, store_backend: Backend) -> None:
    """Without AMI /health is 503 naming it; /metrics exposes the pipeline's gauges and counters;
    both say which process, AMI server and store kind this is (on either store)."""
    store = store_backend.open()
    store.add_subscription(175, "hangup", "http://127.0.0.1:9/dead", "POST")
    store.enqueue(175, {"EventType": "hangup", "CallID": "c1", "EventTime": 1})
    store.close()
    port, api_port = free_port(), free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
ami: {{host: 127.0.0.1, port: {free_port()}, username: bridge, secret: x, reconnect_max: 1}}
extensions: [{{id: 175, name: "000*099@pbx.example", type: phone, endpoint: "099"}}]
api: {{listen: "127.0.0.1:{api_port}", tokens: [{{token: token-0123456789abcdef}}]}}
management: {{listen: "127.0.0.1:{port}"}}
{store_backend.yaml()}
delivery: {{backoff_initial: 30, allow_networks: ["127.0.0.0/8"]}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)], cwd=REPO,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    ami_port = config.read_text().split("port: ")[1].split(",")[0]
    server = load_config(config).ami.name if HAS_AMI_NAME else f"127.0.0.1:{ami_port}"
    who = {"instance": f"{socket.gethostname()}:{port}", "server": server, "store": store_backend.name}
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                try:
                    async with s.get(f"http://127.0.0.1:{port}/health") as r:
                        status, body = r.status, await r.json()
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            assert status == 503
            assert body == {"ready": False, "problems": ["AMI not logged in"], **who}
            for path in ("/health", "/metrics", "/dashboard/state"):  # the management listener's only
                async with s.get(f"http://127.0.0.1:{api_port}{path}") as r:
                    assert r.status in (401, 404), (path, r.status)
            await asyncio.sleep(0.5)  # the dead receiver's first attempt fails -> retry
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
                assert r.headers["Content-Type"].startswith("text/plain")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    lines = {line.split(" ")[0]: line.split(" ")[1] for line in text.splitlines() if line and line[0] != "#"}
    assert lines["ami_bridge_ami_connected"] == "0.0"
    info = 'ami_bridge_info{{instance="{instance}",server="{server}",store="{store}"}}'.format(**who)
    assert lines[info] == "1.0"
    assert lines["ami_bridge_deliveries_pending"] == "1.0"
    assert lines['ami_bridge_deliveries_total{outcome="retry"}'] == "1.0"
    assert lines["ami_bridge_active_calls"] == "0.0"
    assert "ami_bridge_delivery_latency_seconds_count" in lines
    # the daemon's retention thread ran at start: the event (of 1970) stays, its delivery pending
    assert float(lines["ami_bridge_store_bytes"]) > 0
    assert lines['ami_bridge_store_pruned_total{kind="events"}'] == "0.0"
    assert float(lines["ami_bridge_store_last_prune_timestamp_seconds"]) > 0


def _config(store: str) -> Config:
    return parse_config(f"""
ami: {{host: pbx1.example, port: 5038, username: bridge, secret: x}}
extensions: [{{id: 175, name: "000*099@pbx.example", type: phone, endpoint: "099"}}]
management: {{listen: "127.0.0.1:9181"}}
{store}
""")


def test_identity_names_instance_server_and_store_kind_never_the_url() -> None:
    """instance = host name + management port; server = ami.name if the config has one, else
    AMI host:port; store = its kind, the URL (which may hold a password) nowhere."""
    sqlite = _config("store: {path: /tmp/x.db}")
    # without ami.name (before issue 19's part 2) the server is AMI's host:port; with it, its default
    unnamed = sqlite.ami.name if HAS_AMI_NAME else "pbx1.example:5038"
    assert identity(sqlite, "box") == {"instance": "box:9181", "server": unnamed, "store": "sqlite"}
    pg = _config("store: {url: 'postgresql://bridge:s3cret@db:5432/bridge'}")
    about = identity(pg, "box")
    assert about == {"instance": "box:9181", "server": unnamed, "store": "postgresql"}
    assert "s3cret" not in repr(about)
    # (ami.name comes with issue 19's part 2; until then a stand-in config carries it)
    named = cast(
        Any, SimpleNamespace(**{**dict(pg), "ami": SimpleNamespace(**{**dict(pg.ami), "name": "pbx1"})})
    )
    assert identity(cast(Config, named), "box")["server"] == "pbx1"


async def test_tokens_and_secrets_never_reach_the_logs(tmp_path: Path) -> None:
    """Requests with good and bad tokens, at debug level: neither token nor AMI secret is logged."""
    port = free_port()
    secret, token, wrong = "ami-secret-XyZ123", "token-SeCrEt-0123456789", "wrong-token-0123456789"
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
ami: {{host: 127.0.0.1, port: {free_port()}, username: bridge, secret: {secret}, reconnect_max: 1}}
extensions: [{{id: 175, name: "000*099@pbx.example", type: phone, endpoint: "099"}}]
api: {{listen: "127.0.0.1:{port}", tokens: [{{token: {token}}}]}}
management: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{tmp_path / "b.db"}"}}
""")
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config), "--log-level",
                                 "debug"], cwd=REPO, stderr=out)  # fmt: skip
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                try:
                    async with s.get(f"http://127.0.0.1:{port}/health"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            for tok in (token, wrong):
                async with s.post(f"http://127.0.0.1:{port}/extension/175/event/", json={"url": "x"},
                                  headers={"Authorization": f"Bearer {tok}"}) as r:  # fmt: skip
                    assert r.status in (400, 401)
        await asyncio.sleep(1.5)  # an AMI reconnect attempt or two get logged too
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    text = log.read_text()
    assert text  # it did log
    for s in (secret, token, wrong):
        assert s not in text
