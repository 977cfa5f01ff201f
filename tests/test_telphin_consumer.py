"""A Telphin integration reads our webhooks right: every phone hangup of every fixture,
sent by the real daemon (``python -m bridge run``) over the real AMI client path, is
attributed to the right extension and the right other party by a consumer written the
way public Telphin consumers are (tests/telphin_consumer.py).

EXPECTED is written by hand from each scenario's description (fixtures/NAME.md), one row
per phone hangup: (extension id, the other party as the CRM should file it, CallStatus).
The live tier (tests/lab/test_consumer_live.py) checks the same rows against the lab.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.config import load_config
from bridge.demo import ReplayServer
from tests.conftest import FIXTURES, REPO, config_path, fixture_paths, free_port
from tests.telphin_consumer import Consumer, Hangup

CONFIG = load_config(FIXTURES / "lab.yaml")
PHONES = [e for e in CONFIG.extensions if e.type == "phone"]
A, B, C, D, E = "000*101", "000*102", "000*103", "000*104", "000*106"
OUTSIDE, MOBILE, CALLBACK_DST = "+74957654321", "+79161234567", "+79817654321"
INTERNAL_OK = [(1101, B, "ANSWER"), (1102, A, "ANSWER")]

#: fixture -> its phone hangups: (extension id, other party, CallStatus)
EXPECTED: dict[str, list[tuple[int, str, str]]] = {
    # 101 talks to 102, consults 103 (a call of its own) and leaves: 103 was called by 101
    "attended-transfer": [(1101, B, "ANSWER"), (1101, C, "ANSWER"), (1102, A, "ANSWER"), (1103, A, "ANSWER")],
    # 101 leaves before 103 answers: its consultation was not answered
    "attended-transfer-blonde": [
        (1101, B, "ANSWER"),
        (1101, C, "CANCEL"),
        (1102, A, "ANSWER"),
        (1103, A, "ANSWER"),
    ],
    # the consultation dials what Atxfer was given, without the +
    "attended-transfer-external": [(1101, B, "ANSWER"), (1101, "79161234567", "ANSWER"), (1102, A, "ANSWER")],
    # 103 rings 102 while 102 talks to 101, and gives up
    "call-waiting": [(1101, B, "ANSWER"), (1102, A, "ANSWER"), (1102, C, "CANCEL"), (1103, B, "CANCEL")],
    "callback-destination-busy": [(1101, CALLBACK_DST, "BUSY")],
    "callback-destination-unreachable": [(1101, CALLBACK_DST, "CHANUNAVAIL")],
    # each phone dialed the room
    "conference": [(1101, "800", "ANSWER"), (1102, "800", "ANSWER"), (1103, "800", "ANSWER")],
    # 104's phone rang (the mobile answered first) and its follow-me called the mobile
    "followme-external": [(1101, D, "ANSWER"), (1104, A, "CANCEL"), (1104, MOBILE, "ANSWER")],
    # 103 took the parked call from slot 701
    "park-retrieve": [(1101, B, "ANSWER"), (1102, A, "ANSWER"), (1103, "701", "ANSWER")],
    # nobody took it: it came back to 102, which answered
    "park-timeout": [(1101, B, "ANSWER"), (1102, A, "ANSWER"), (1102, A, "ANSWER")],
    # 103 picked up 101's call ringing at 102
    "pickup-directed": [(1101, B, "ANSWER"), (1102, A, "CANCEL"), (1103, A, "ANSWER")],
    "pickup-group": [(1101, B, "ANSWER"), (1102, A, "CANCEL"), (1103, A, "ANSWER")],
    # ring groups are no configured extension: their number as dialed
    "ring-group-answered": [(1101, "600", "ANSWER"), (1102, A, "CANCEL"), (1103, A, "ANSWER")],
    "ring-group-from-did": [(1102, OUTSIDE, "ANSWER"), (1103, OUTSIDE, "CANCEL")],
    "ring-group-local": [(1101, "601", "ANSWER"), (1104, A, "CANCEL"), (1105, A, "ANSWER")],
    "ring-group-noanswer": [(1101, "600", "NOANSWER"), (1102, A, "NOANSWER"), (1103, A, "NOANSWER")],
    # 102 answers the DID call and blind-transfers it to 104/105 (called on its behalf);
    # 104 consults 102 (a call of its own) and completes the transfer
    "transfer-chain": [
        (1102, OUTSIDE, "ANSWER"),
        (1103, OUTSIDE, "CANCEL"),
        (1104, B, "ANSWER"),
        (1105, B, "CANCEL"),
        (1104, B, "ANSWER"),
        (1102, D, "ANSWER"),
    ],
    "voicemail-busy": [(1101, B, "BUSY"), (1102, A, "BUSY")],
    "voicemail-unregistered": [(1101, E, "CHANUNAVAIL")],
    # 101 transfers 102 to 103: 103 is called on behalf of 101 (RemoteNumber 102)
    "blind-transfer-ami": [(1101, B, "ANSWER"), (1102, A, "ANSWER"), (1103, A, "ANSWER")],
    "blind-transfer-refer": [(1101, B, "ANSWER"), (1102, A, "ANSWER"), (1103, A, "ANSWER")],
    "callback-answered": [(1101, CALLBACK_DST, "ANSWER")],
    "callback-failed": [(1106, CALLBACK_DST, "CHANUNAVAIL")],
    "callback-unanswered": [(1101, CALLBACK_DST, "NOANSWER")],
    "forward-external-from-trunk": [(1104, MOBILE, "ANSWER")],
    "forward-external-internal": [(1101, D, "ANSWER"), (1104, MOBILE, "ANSWER")],
    "inbound-busy": [(1102, OUTSIDE, "BUSY")],
    "inbound-did-recorded": [(1101, OUTSIDE, "ANSWER")],
    "internal-answered-callee-hangup": INTERNAL_OK,
    "internal-answered-caller-hangup": INTERNAL_OK,
    "internal-busy": [(1101, B, "BUSY"), (1102, A, "BUSY")],
    "internal-cancel": [(1101, B, "CANCEL"), (1102, A, "CANCEL")],
    "internal-chanunavail": [(1101, E, "CHANUNAVAIL")],
    "internal-congestion": [(1101, B, "CONGESTION"), (1102, A, "CONGESTION")],
    "internal-noanswer": [(1101, B, "NOANSWER"), (1102, A, "NOANSWER")],
    "ivr-caller-hangup": [],
    "ivr-to-phone": [(1102, OUTSIDE, "ANSWER")],
    "outbound-external": [(1101, MOBILE, "ANSWER")],
    "overlapping-calls": [*INTERNAL_OK, (1103, D, "ANSWER"), (1104, C, "ANSWER")],
    # agents are called by 101 through the queue (CallerExtension = the queue)
    "queue-abandoned": [(1101, "000*300", "CANCEL"), (1102, A, "CANCEL"), (1103, A, "CANCEL")],
    "queue-answered-second-member": [(1101, "000*300", "ANSWER"), (1102, A, "CANCEL"), (1103, A, "ANSWER")],
    "queue-local-members": [(1101, "000*301", "ANSWER"), (1104, A, "CANCEL"), (1105, A, "ANSWER")],
    "sip-message": [],
    # nobody answered 102; the voicemail that took the message is not a person
    "voicemail": [(1101, B, "NOANSWER"), (1102, A, "NOANSWER")],
    # the FreePBX-style profile (fixtures/freepbx.yaml: phones 201-205, queue 310)
    "freepbx-internal": [(1201, "000*202", "ANSWER"), (1202, "000*201", "ANSWER")],
    "freepbx-did-recorded": [(1201, OUTSIDE, "ANSWER")],
    "freepbx-ring-group": [(1202, OUTSIDE, "CANCEL"), (1203, OUTSIDE, "ANSWER")],
    "freepbx-queue": [(1201, "000*310", "ANSWER"), (1202, "000*201", "ANSWER"), (1203, "000*201", "CANCEL")],
    "freepbx-followme": [(1201, "000*204", "ANSWER"), (1204, "000*201", "CANCEL"), (1204, MOBILE, "ANSWER")],
    "freepbx-cf-external": [(1205, MOBILE, "ANSWER")],
}
# the Local-wrapped profile: what the plain recordings give
EXPECTED.update({p.stem: EXPECTED[p.stem.removeprefix("wrapped-")] for p in fixture_paths()
                 if p.stem.startswith("wrapped-")})  # fmt: skip
#: the lab's profiles: their configuration and their fixtures
PROFILES = {"lab": FIXTURES / "lab.yaml", "freepbx": FIXTURES / "freepbx.yaml"}


def consumer() -> Consumer:
    """The CRM's view of the client's extensions (both profiles'): short number -> id."""
    return Consumer({e.short: e.id for path in PROFILES.values() for e in load_config(path).extensions})


def filed(hangups: list[Hangup]) -> Counter[tuple[int, str, str]]:
    return Counter((h.extension_id, h.other, h.status) for h in hangups)


def test_every_fixture_has_its_expected_hangups() -> None:
    """The table covers every recorded scenario (a new fixture needs its rows)."""
    assert sorted(EXPECTED) == sorted(p.stem for p in fixture_paths())


@pytest.fixture
async def crm() -> AsyncIterator[tuple[Consumer, str, list[dict[str, Any]]]]:
    """The CRM's webhook endpoint on loopback: one path per extension, GET or POST."""
    crm, raw = consumer(), []

    async def hook(request: web.Request) -> web.Response:
        fields = dict(request.query) | dict(parse_qsl((await request.read()).decode()))
        fields.pop("myid", None)  # the CRM's own parameter in the subscribed URL
        raw.append({"ext": int(request.match_info["ext"]), **fields})
        crm.receive(fields)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/telphin/{ext}", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield crm, f"http://127.0.0.1:{server.port}", raw
    await server.close()


def daemon_config(profile: Path, ami_port: int, tmp_path: Path) -> str:
    """A profile's bridge configuration for a daemon on loopback."""
    base = load_config(profile)
    return f"""
ami: {{host: 127.0.0.1, port: {ami_port}, username: crm, secret: crm}}
extensions:
{"".join(f"  - {e.model_dump_json(exclude_none=True)}{chr(10)}" for e in base.extensions)}
trunks: {json.dumps(base.trunks)}
variables: {base.variables.model_dump_json()}
api: {{listen: "127.0.0.1:{free_port()}", tokens: []}}
management: {{listen: "127.0.0.1:{free_port()}"}}
store: {{path: "{tmp_path / "bridge.db"}"}}
delivery: {{backoff_initial: 0.2, backoff_max: 1, allow_networks: ["127.0.0.0/8"]}}
"""


@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_every_phone_hangup_of_every_fixture_is_filed_right(
    crm: tuple[Consumer, str, list[dict[str, Any]]], tmp_path: Path, profile: str
) -> None:
    """All fixtures of a lab profile replayed over AMI to the daemon process; every phone
    subscribed to dial-in, dial-out and hangup (half of them by GET, half by POST, with
    the CRM's own query parameter): the consumer files exactly the expected hangups, drops
    none, and each is filed under the extension whose subscription received it."""
    consumer_, url, raw = crm
    paths = [p for p in fixture_paths() if config_path(p) == PROFILES[profile]]
    replay = ReplayServer([(p.stem, p.read_bytes()) for p in paths], speed=50, max_gap=0.05,
                          fresh_ids=False)  # fmt: skip
    replay.go.clear()
    ami_port = await replay.start()
    config = tmp_path / "bridge.yaml"
    config.write_text(daemon_config(PROFILES[profile], ami_port, tmp_path))
    from bridge.store import Store

    store = Store(str(tmp_path / "bridge.db"))
    phones = [e for e in load_config(PROFILES[profile]).extensions if e.type == "phone"]
    for i, ext in enumerate(phones):
        method = "GET" if i % 2 else "POST"
        for kind in ("dial-in", "dial-out", "hangup"):
            store.add_subscription(ext.id, kind, f"{url}/telphin/{ext.id}?myid={ext.id}", method)
    store.close()
    expected = sum((Counter(EXPECTED[p.stem]) for p in paths), Counter[tuple[int, str, str]]())
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)],
                                cwd=REPO, stderr=log)  # fmt: skip
    try:
        await asyncio.wait_for(replay.logged_in.wait(), 20)
        replay.go.set()
        await asyncio.wait_for(replay.finished.wait(), 120)
        for _ in range(200):
            if len(consumer_.hangups) + len(consumer_.dropped) >= expected.total():
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # and nothing more comes
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
            await replay.close()
            if os.environ.get("SHOW_DAEMON_LOG"):
                print((tmp_path / "daemon.log").read_text())
    assert consumer_.dropped == []
    assert filed(consumer_.hangups) == expected
    hangups = [r for r in raw if r["EventType"] == "hangup"]
    assert len(hangups) == expected.total()
    for r in hangups:  # filed under the extension whose subscription got it
        assert (
            consumer_.extension_of(r["CallerIDNum" if r["CallFlow"] == "out" else "CalledNumber"]) == r["ext"]
        )
