"""Recordings and the call history as Telphin's clients fetch them: the events' RecID is a
record_uuid whose storage_url is a signed, expiring link to the file (served from inside
recordings.dirs only), and the call history agrees with the events the bridge sent."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.api import make_app
from bridge.api.common import CLOCK_KEY, CONFIG_KEY
from bridge.config import Config, parse_config
from bridge.replay import replay_bytes
from bridge.store import Store
from bridge.translate import Recording, Translator
from tests.conftest import FIXTURES, Backend

ADMIN = "admin-token-0123456789"
SECRET = "crm-secret-0123456789abcdef"
LAB = (FIXTURES / "lab.yaml").read_text()
#: where the lab's Asterisk writes (as its events say)
SPOOL = "/var/spool/ami-bridge-lab"
AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 40


def config_for(spool: Path) -> Config:
    return parse_config(
        LAB
        + f"""
api:
  tokens: [{{token: {ADMIN}}}]
  clients: [{{client_id: crm, client_secret: {SECRET}, extensions: [1102]}}]
recordings:
  dirs: ["{spool / "monitor"}", "{spool / "voicemail"}"]
  path_map: {{"{SPOOL}": "{spool}"}}
  link_ttl: 600
"""
    )


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def commit(store: Store, config: Config, fixture: str) -> list[tuple[int, dict[str, Any]]]:
    """A recorded call through the translator into the store, as the daemon commits it."""
    t = Translator(config)
    t.keep_recordings = True
    events = list(replay_bytes(t, [(FIXTURES / f"{fixture}.ami").read_bytes()]))
    records, done = t.take_recordings()
    store.enqueue_many(events, None, records, done)
    return events


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    root = tmp_path / "spool"
    (root / "monitor").mkdir(parents=True)
    (root / "monitor" / "lab-1795730503.13.wav").write_bytes(AUDIO)
    box = root / "voicemail" / "default" / "102" / "INBOX"
    box.mkdir(parents=True)
    (box / "msg0000.wav").write_bytes(AUDIO[::-1])
    return root


@pytest.fixture
async def api(
    store_backend: Backend, spool: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], Store, Clock]]:
    config = config_for(spool)
    store = store_backend.open("b.db")
    app = make_app(config, store)
    clock = Clock()
    app[CLOCK_KEY] = clock
    async with TestClient(TestServer(app)) as client:
        yield client, store, clock
    store.close()


AUTH = {"Authorization": f"Bearer {ADMIN}"}


def rec_id(events: list[tuple[int, dict[str, Any]]], ext: int) -> str:
    return next(str(e["RecID"]) for x, e in events if x == ext and "RecID" in e)


async def link(client: TestClient[Any, Any], path: str) -> str:
    resp = await client.get(path, headers=AUTH)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["expires_in"] == 600
    return str(body["record_url"])


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_a_recorded_call_downloads_byte_for_byte(
    api: tuple[TestClient[Any, Any], Store, Clock],
) -> None:
    """The hangup's RecID (<extension id>-<32 hex>) gives a storage_url; the link needs no
    token and serves the MixMonitor file whole, named, typed, and in ranges."""
    client, store, _ = api
    events = commit(store, _config(client), "inbound-did-recorded")
    uuid = rec_id(events, 1101)
    assert uuid.startswith("1101-") and len(uuid) == 5 + 32
    for path in (f"/api/ver1.0/extension/1101/record/{uuid}/storage_url/",
                 f"/api/ver1.0/client/@me/record/{uuid}/storage_url/"):  # fmt: skip
        url = await link(client, path)
        assert url.startswith(str(client.make_url("/records/"))) and "lab-1795730503.13.wav" in url
        resp = await client.get(local(url))
        assert resp.status == 200 and await resp.read() == AUDIO
        assert resp.headers["Content-Type"] == "audio/wav"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="lab-1795730503.13.wav"'
    part = await client.get(local(url), headers={"Range": "bytes=4-11"})
    assert part.status == 206 and await part.read() == AUDIO[4:12]
    direct = await client.get(f"/api/ver1.0/extension/1101/record/{uuid}", headers=AUTH)
    assert direct.status == 200 and await direct.read() == AUDIO


def _config(client: TestClient[Any, Any]) -> Config:
    return client.app[CONFIG_KEY]  # type: ignore[index]


async def test_a_link_expires_and_cannot_be_forged(api: tuple[TestClient[Any, Any], Store, Clock]) -> None:
    """Past link_ttl the link answers 403 link_expired; another signature or a changed
    expiry 403 invalid_signature."""
    client, store, clock = api
    uuid = rec_id(commit(store, _config(client), "inbound-did-recorded"), 1101)
    url = local(await link(client, f"/api/ver1.0/extension/1101/record/{uuid}/storage_url/"))
    forged = url.replace("signature=", "signature=0")
    assert (await (await client.get(forged)).json())["status"] == "invalid_signature"
    stretched = url.replace("expires=", "expires=9")
    assert (await (await client.get(stretched)).json())["status"] == "invalid_signature"
    clock.now += 601
    resp = await client.get(url)
    assert resp.status == 403 and (await resp.json())["status"] == "link_expired"


async def test_a_voicemail_message_is_served_too(api: tuple[TestClient[Any, Any], Store, Clock]) -> None:
    """The voicemail event's RecID names the message: its file (the spool path plus the
    format's extension) is served."""
    client, store, _ = api
    uuid = rec_id(commit(store, _config(client), "voicemail"), 1102)
    url = await link(client, f"/api/ver1.0/extension/1102/record/{uuid}/storage_url/")
    resp = await client.get(local(url))
    assert resp.status == 200 and await resp.read() == AUDIO[::-1]
    listed = await (await client.get("/api/ver1.0/extension/1102/record/", headers=AUTH)).json()
    assert [(r["record_uuid"], r["kind"], r["file_name"]) for r in listed] == [
        (uuid, "voicemail", "msg0000.wav")
    ]


async def test_records_are_listed_and_deleted(
    api: tuple[TestClient[Any, Any], Store, Clock], spool: Path
) -> None:
    """The list shows each recording with its call, times, parties and file; DELETE
    answers 204, removes the file (no other recording names it), and the id is gone."""
    client, store, _ = api
    events = commit(store, _config(client), "inbound-did-recorded")
    uuid = rec_id(events, 1101)
    hangup = next(e for x, e in events if e.get("RecID") == uuid)
    listed = await (await client.get("/api/ver1.0/client/@me/record/", headers=AUTH)).json()
    assert len(listed) == 1
    one = listed[0]
    assert one["record_uuid"] == uuid and one["call_uuid"] == hangup["CallID"]
    assert one["duration"] == round(hangup["Duration"] / 1e6) and one["result"] == "answered"
    assert one["from_username"] == "+74957654321" and one["to_username"] == "000*101"
    assert one["record_file_size"] == len(AUDIO) and one["flow"] == "in"
    resp = await client.delete(f"/api/ver1.0/extension/1101/record/{uuid}", headers=AUTH)
    assert resp.status == 204
    assert not (spool / "monitor" / "lab-1795730503.13.wav").exists()
    again = await client.get(f"/api/ver1.0/extension/1101/record/{uuid}/storage_url/", headers=AUTH)
    assert again.status == 404


async def test_a_recording_still_being_made_is_not_offered(
    api: tuple[TestClient[Any, Any], Store, Clock],
) -> None:
    """While its MixMonitor channel is up: not listed, and storage_url answers 409
    record_not_ready; once the channel hangs up, it is."""
    client, store, _ = api
    event = {"EventType": "hangup", "CallID": "c1", "SubCallID": "c1-1", "CallStatus": "ANSWER", "EventTime": 5,
             "RecID": "1101-" + "a" * 32}  # fmt: skip
    path = f"{SPOOL}/monitor/lab-1795730503.13.wav"
    store.enqueue_many(
        [(1101, event)], None, [Recording(event["RecID"], 1101, event, "call", "x", path, "chan-1")]
    )
    assert await (await client.get("/api/ver1.0/extension/1101/record/", headers=AUTH)).json() == []
    resp = await client.get(f"/api/ver1.0/extension/1101/record/{event['RecID']}/storage_url/", headers=AUTH)
    assert resp.status == 409 and (await resp.json())["status"] == "record_not_ready"
    store.enqueue_many([], None, [], ["chan-1"])
    resp = await client.get(f"/api/ver1.0/extension/1101/record/{event['RecID']}/storage_url/", headers=AUTH)
    assert resp.status == 200


@pytest.mark.parametrize("raw", ["..%2F..%2Fetc%2Fpasswd", "1101-zz", "1101-" + "a" * 31, "x" * 200])
async def test_ids_that_are_no_record_ids_are_404(
    api: tuple[TestClient[Any, Any], Store, Clock], raw: str
) -> None:
    """Anything but <digits>-<32 hex> names no record: 404, never a path."""
    client, _, _ = api
    resp = await client.get(f"/api/ver1.0/extension/1101/record/{raw}/storage_url/", headers=AUTH)
    assert resp.status == 404


async def test_files_outside_the_directories_are_never_served(
    api: tuple[TestClient[Any, Any], Store, Clock], spool: Path, tmp_path: Path
) -> None:
    """A path from AMI that climbs out of the directories, or a symlink inside them that
    points outside: 404 record_file_not_found, the outside file untouched."""
    client, store, _ = api
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"not yours")
    os.symlink(secret, spool / "monitor" / "link.wav")
    cases = {"1101-" + "b" * 32: f"{SPOOL}/monitor/../../secret.wav", "1101-" + "c" * 32: f"{SPOOL}/monitor/link.wav",
             "1101-" + "d" * 32: str(secret)}  # fmt: skip
    for n, (uuid, path) in enumerate(cases.items()):
        event = {
            "EventType": "hangup",
            "CallID": f"c{n}",
            "SubCallID": f"c{n}-1",
            "EventTime": 1,
            "RecID": uuid,
        }
        store.enqueue_many([(1101, event)], None, [Recording(uuid, 1101, event, "call", "x", path, None)])
        resp = await client.get(f"/api/ver1.0/extension/1101/record/{uuid}/storage_url/", headers=AUTH)
        assert resp.status == 404 and (await resp.json())["status"] == "record_file_not_found", path
        deleted = await client.delete(f"/api/ver1.0/extension/1101/record/{uuid}", headers=AUTH)
        assert deleted.status == 204
    assert secret.read_bytes() == b"not yours"


async def test_a_client_reaches_only_its_extensions_records(
    api: tuple[TestClient[Any, Any], Store, Clock],
) -> None:
    """A client limited to 1102: 1101's recording is 403, and 404 through 1102's path."""
    client, store, _ = api
    uuid = rec_id(commit(store, _config(client), "inbound-did-recorded"), 1101)
    token = await client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "crm",
                                                    "client_secret": SECRET})  # fmt: skip
    crm = {"Authorization": f"Bearer {(await token.json())['access_token']}"}
    resp = await client.get(f"/api/ver1.0/client/@me/record/{uuid}/storage_url/", headers=crm)
    assert resp.status == 403
    resp = await client.get(f"/api/ver1.0/extension/1102/record/{uuid}/storage_url/", headers=crm)
    assert resp.status == 404
    assert await (await client.get("/api/ver1.0/client/@me/record/", headers=crm)).json() == []


async def test_the_call_history_agrees_with_the_events(
    api: tuple[TestClient[Any, Any], Store, Clock],
) -> None:
    """A call's history record: its CallID, times and durations from the events (seconds,
    GMT), the parties, and one cdr entry per component with its RecID."""
    client, store, _ = api
    events = commit(store, _config(client), "inbound-did-recorded")
    hangup = next(e for _, e in events if e["EventType"] == "hangup")
    call_id = hangup["CallID"]
    resp = await client.get(f"/api/ver1.0/client/@me/call_history/{call_id}", headers=AUTH)
    assert resp.status == 200
    call = await resp.json()
    assert call["call_uuid"] == call_id and call["flow"] == "in" and call["result"] == "answered"
    assert call["bridged_duration"] == round(hangup["Duration"] / 1e6)
    first = min(e["EventTime"] for _, e in events)
    assert call["duration"] == round((hangup["EventTime"] - first) / 1e6)
    assert call["from_username"] == "+74957654321" and call["to_username"] == "000*101"
    assert call["did_number"] == "74951230001" and call["extension_id"] == 1101
    assert [c["record_uuid"] for c in call["cdr"]] == [hangup["RecID"]]
    assert call["cdr"][0]["result"] == "answered" and call["cdr"][0]["sub_call_id"] == hangup["SubCallID"]
    init = datetime.fromtimestamp(first // 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert call["init_time_gmt"] == init


async def test_the_history_lists_calls_by_time(api: tuple[TestClient[Any, Any], Store, Clock]) -> None:
    """The list takes start_datetime/end_datetime (GMT), order and paging; a client sees
    the calls that reached its extensions only."""
    client, store, _ = api
    config = _config(client)
    for name in ("internal-answered-caller-hangup", "internal-busy", "inbound-did-recorded"):
        commit(store, config, name)
    everything = await (
        await client.get("/api/ver1.0/client/@me/call_history/?order=asc", headers=AUTH)
    ).json()
    assert len(everything["call_history"]) == 3 and everything["order"] == "asc"
    times = [c["init_time_gmt"] for c in everything["call_history"]]
    assert times == sorted(times)
    newest = await (await client.get("/api/ver1.0/client/@me/call_history/?per_page=1", headers=AUTH)).json()
    assert newest["call_history"][0]["call_uuid"] == everything["call_history"][-1]["call_uuid"]
    start = everything["call_history"][1]["init_time_gmt"]
    later = await client.get("/api/ver1.0/client/@me/call_history/", headers=AUTH,
                             params={"start_datetime": start, "order": "asc"})  # fmt: skip
    assert [c["call_uuid"] for c in (await later.json())["call_history"]] == [
        c["call_uuid"] for c in everything["call_history"][1:]
    ]
    token = await client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "crm",
                                                    "client_secret": SECRET})  # fmt: skip
    crm = {"Authorization": f"Bearer {(await token.json())['access_token']}"}
    mine = await (await client.get("/api/ver1.0/client/@me/call_history/", headers=crm)).json()
    assert len(mine["call_history"]) == 2  # the two internal calls rang 102
    assert all({c["extension_id"] for c in call["cdr"]} == {1102} for call in mine["call_history"])
    bad = await client.get("/api/ver1.0/client/@me/call_history/?start_datetime=yesterday", headers=AUTH)
    assert bad.status == 400 and (await bad.json())["field"] == "start_datetime"
    missing = await client.get("/api/ver1.0/client/@me/call_history/nope", headers=AUTH)
    assert missing.status == 404
