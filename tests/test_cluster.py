"""A cluster's parts on a real PostgreSQL (tests/pg.py): the same event committed by two
bridges is one row with one delivery per subscription; a subscription's lease is held by
one bridge and passes to another once expired or released; an extension id belongs to one
server; a call not seen whole is named by the translator (issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bridge.ami.message import parse, split_stream
from bridge.config import ConfigError, parse_config
from bridge.store import ExtensionConflict
from bridge.store_pg import PgStore, event_key
from bridge.translate import Translator
from tests.conftest import FIXTURES, Backend, config_for


@pytest.fixture
def pg(pg_server: Any, tmp_path: Path) -> Backend:
    return Backend("postgresql", tmp_path, pg_server.url)


def _event(call: str, sub: int, kind: str, at: int) -> dict[str, Any]:
    return {"EventType": kind, "CallID": call, "SubCallID": f"{call}-{sub}", "EventTime": at}


def test_the_same_event_from_two_bridges_is_one_row_with_one_delivery_per_subscription(pg: Backend) -> None:
    url = pg.url()
    one, two = PgStore(url), PgStore(url)
    one.server = two.server = "pbx-a"
    subs = [one.add_subscription(101, "dial-in", f"http://127.0.0.1:9/{i}", "POST") for i in range(2)]
    first = [(101, _event("c1", 1, "dial-in", 10)), (101, _event("c1", 1, "hangup", 20))]
    made = one.enqueue_many(first)
    assert [(d.subscription_id, d.event["EventType"]) for d in made] == [(subs[0].id, "dial-in"),
                                                                         (subs[1].id, "dial-in")]  # fmt: skip
    # the second bridge's copy of both, and one event the first has not committed yet
    again = two.enqueue_many([*first, (101, _event("c1", 2, "dial-in", 30))])
    assert [d.event["SubCallID"] for d in again] == ["c1-2", "c1-2"]  # only the new one's deliveries
    assert again[0].id > made[-1].id  # ids follow commit order
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT event_type, server FROM events ORDER BY id").fetchall()
        assert rows == [("dial-in", "pbx-a"), ("hangup", "pbx-a"), ("dial-in", "pbx-a")]
        assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (4,)
    # the Idempotency-Key is the same whichever bridge sends: one event row, one key
    pending = {d.idempotency_key for sub in subs for d in two.pending(sub.id, 10)}
    assert pending == {d.idempotency_key for d in [*made, *again]}
    # another server's event of the same ids is another event
    two.server = "pbx-b"
    assert len(two.enqueue_many(first[:1])) == 2
    assert event_key("pbx-a", 101, first[0][1]) != event_key("pbx-b", 101, first[0][1])
    assert event_key("pbx-a", 101, first[0][1]) != event_key("pbx-a", 102, first[0][1])
    one.close()
    two.close()


def test_a_lease_is_held_by_one_bridge_and_passes_on_expiry_or_release(pg: Backend) -> None:
    url = pg.url()
    a, b = PgStore(url), PgStore(url)
    s1 = a.add_subscription(101, "hangup", "http://127.0.0.1:9/", "POST").id
    s2 = a.add_subscription(102, "hangup", "http://127.0.0.1:9/", "POST").id
    assert a.take_leases("a", 1.0) == {s1, s2}
    assert b.take_leases("b", 1.0) == set()  # held by a
    assert a.take_leases("a", 1.0) == {s1, s2}  # renewed
    time.sleep(1.2)  # a stopped renewing (dead)
    assert b.take_leases("b", 30.0) == {s1, s2}
    assert a.take_leases("a", 30.0) == set()  # a, back, gets none
    s3 = a.add_subscription(103, "hangup", "http://127.0.0.1:9/", "POST").id
    assert a.take_leases("a", 30.0) == {s3}  # a new subscription: whoever asks first
    b.release_leases("b")  # a clean stop
    assert a.take_leases("a", 30.0) == {s1, s2, s3}
    a.close()
    b.close()


def test_an_extension_id_belongs_to_one_server(pg: Backend) -> None:
    url = pg.url()
    a, b = PgStore(url), PgStore(url)
    a.register_extensions("pbx-a", {1101: {"id": 1101, "name": "000*101"}, 1102: {"id": 1102, "name": "x"}})
    b.register_extensions("pbx-b", {2101: {"id": 2101, "name": "000*201"}})
    with pytest.raises(ExtensionConflict) as err:
        b.register_extensions("pbx-b", {2101: {"id": 2101}, 1102: {"id": 1102}})
    message = str(err.value)
    assert "1102 (on 'pbx-a')" in message and "ami.name 'pbx-b'" in message
    assert "one config per server" in message
    assert sorted(b.registered_extensions()) == [1101, 1102, 2101]  # nothing written
    a.register_extensions("pbx-a", {1101: {"id": 1101, "name": "000*101"}})  # 1102 removed from a's config
    b.register_extensions("pbx-b", {2101: {"id": 2101}, 1102: {"id": 1102}})  # so b may take it
    assert {i: s for i, (s, _) in a.registered_extensions().items()} == {1101: "pbx-a", 1102: "pbx-b",
                                                                         2101: "pbx-b"}  # fmt: skip
    a.close()
    b.close()


def test_a_server_name_is_a_short_identifier() -> None:
    base = "ami: {username: u, secret: s, name: %s}\nextensions: []\n"
    assert parse_config(base % "pbx-1", "t.yaml").ami.name == "pbx-1"
    assert parse_config("ami: {username: u, secret: s}\nextensions: []\n", "t.yaml").ami.name == "asterisk"
    for bad in ("PBX", "-a", "a b", "x" * 33, '""'):
        with pytest.raises(ConfigError, match=r"ami\.name.*not a server name.*a-z"):
            parse_config(base % bad, "t.yaml")


def test_a_call_whose_first_channel_came_before_the_stream_is_partial() -> None:
    path = FIXTURES / "internal-answered-caller-hangup.ami"
    blocks, _ = split_stream(path.read_bytes())
    messages = [parse(b) for b in blocks]
    whole = Translator(config_for(path))
    events = [e for m in messages for e in whole.feed(m)] + whole.flush()
    assert events and not whole.partial  # seen from its first channel on
    first = next(i for i, m in enumerate(messages) if m.event == "Newchannel")
    late = Translator(config_for(path))  # connected just after the first channel was made
    out = [e for m in messages[first + 1 :] for e in late.feed(m)] + late.flush()
    assert {e["CallID"] for _, e in out} <= late.partial
    assert late.partial  # (the callee's channel was seen: its call is named)
    late.forget_partial()  # the call ended: forgotten
    assert not late.partial
    # an outage: every call in progress is no longer whole
    again = Translator(config_for(path))
    for m in messages[: first + 3]:
        again.feed(m)
    again.mark_partial()
    assert again.partial == {c.call_id for c in again.calls.values()} != set()


def test_the_leases_of_a_dead_bridge_of_this_host_are_released_at_start(pg: Backend) -> None:
    """A restarted bridge (systemd after a kill -9) takes over at once, not after the lease."""
    url = pg.url()
    store = PgStore(url)
    sub = store.add_subscription(101, "hangup", "http://127.0.0.1:9/", "POST").id
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for owner in (f"pbx@host-a:{dead.pid}:aa", f"pbx@host-a:{os.getpid()}:bb", f"pbx@host-b:{dead.pid}:cc"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM subscription_leases")
        assert store.take_leases(owner, 60.0) == {sub}
        freed = store.release_dead_leases("host-a")
        assert freed == ([owner] if owner.endswith("aa") else [])  # alive, or another host's: kept
        assert store.take_leases("other", 60.0) == ({sub} if freed else set())
    store.close()
