"""The PostgreSQL store's own behaviour: its migrations, several stores (processes) on one
database, a server gone, the configuration of it (a real PostgreSQL: tests/pg.py)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from pydantic import ValidationError

from bridge.config import StoreConfig
from bridge.doctor import Report, check_database
from bridge.store import StoreError, open_store
from bridge.store_pg import SCHEMA_VERSION, PgStore, masked, translate
from tests.conftest import REPO, Backend, free_port


def read_only(url: str) -> str:
    """A test's URL whose sessions are read-only (as on a standby server)."""
    return url.replace("options=-c", "options=-cdefault_transaction_read_only%3Don%20-c")


@pytest.fixture
def pg(pg_server: Any, tmp_path: Path) -> Backend:
    return Backend("postgresql", tmp_path, pg_server.url)


def test_an_empty_database_is_migrated_and_opening_again_changes_nothing(pg: Backend) -> None:
    url = pg.url()
    store = PgStore(url)
    assert store.schema_version() == SCHEMA_VERSION == 6
    sub = store.add_subscription(101, "dial-in", "http://127.0.0.1:9/", "POST")
    store.close()
    again = PgStore(url)  # version 6 already: no migration runs, nothing is lost
    assert again.schema_version() == 6
    assert again.all_subscriptions() == [sub]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
    again.close()


def test_a_database_from_a_newer_bridge_is_refused_with_the_fix(pg: Backend) -> None:
    url = pg.url()
    PgStore(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99, newer than this ami-bridge's 6: upgrade"):
        PgStore(url)


def test_two_stores_on_one_database_see_each_other_s_subscriptions(pg: Backend) -> None:
    """As two processes on one SQLite file: the in-memory subscriptions are read again when
    the other one wrote one (checked once per enqueue_many), and its deliveries show."""
    one, two = pg.open(), pg.open()
    first = one.add_subscription(101, "dial-in", "http://127.0.0.1:9/a", "POST")
    assert [d.subscription_id for d in one.enqueue(101, {"EventType": "dial-in", "CallID": "c1"})] == [
        first.id
    ]
    second = two.add_subscription(101, "dial-in", "http://127.0.0.1:9/b", "POST")
    got = one.enqueue(101, {"EventType": "dial-in", "CallID": "c2"})
    assert [d.subscription_id for d in got] == [first.id, second.id]
    assert two.delete_subscription(101, first.id)
    assert [d.subscription_id for d in one.enqueue(101, {"EventType": "dial-in", "CallID": "c3"})] == [
        second.id
    ]
    # ids never collide between the two (sequences), and the other's deliveries are there
    mine = two.enqueue(101, {"EventType": "dial-in", "CallID": "c4"})
    assert len({d.id for d in [*got, *mine]}) == 3
    assert sorted(r["id"] for r in one.deliveries("pending")) == sorted(
        r["id"] for r in two.deliveries("pending")
    )
    one.close()
    two.close()


def test_a_delivery_put_back_by_another_process_changes_the_data_version(pg: Backend) -> None:
    """What the dispatcher watches (PRAGMA data_version's part): the CLI's --retry elsewhere."""
    one, cli = pg.open(), pg.open()
    sub = one.add_subscription(101, "hangup", "http://127.0.0.1:9/", "POST")
    [d] = one.enqueue(101, {"EventType": "hangup", "CallID": "c1"})
    one.mark(d.id, "failed", 3)
    before = one.data_version()
    one.mark_many([("failed", 3, 0.0, 500, "x", d.id)])  # the pipeline's own writes: no wake-up
    assert one.data_version() == before
    assert cli.retry_failed() == 1
    assert one.data_version() != before
    assert one.pending_subscriptions() == [sub.id]
    one.close()
    cli.close()


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    url = f"postgresql://bridge:s3cret-pw@127.0.0.1:{free_port()}/bridge?connect_timeout=2"
    with pytest.raises(StoreError) as err:
        open_store(StoreConfig(url=url))
    assert "cannot open the store postgresql://bridge:***@127.0.0.1" in str(err.value)
    assert "s3cret-pw" not in str(err.value)


def test_a_dropped_connection_is_not_writable_then_made_again(pg: Backend) -> None:
    store = pg.open()
    store.add_subscription(101, "hangup", "http://127.0.0.1:9/", "POST")
    pid = store.db.conn.info.backend_pid
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreError, match="cannot commit the event to postgresql://bridge@"):
        store.enqueue(101, {"EventType": "hangup", "CallID": "c1"})
    assert store.writable() is None  # connected again
    assert len(store.enqueue(101, {"EventType": "hangup", "CallID": "c2"})) == 1
    store.close()


def test_a_read_only_server_is_not_writable(pg: Backend) -> None:
    url = pg.url()
    PgStore(url).close()
    store = PgStore(read_only(url))
    why = store.writable()
    assert why is not None and "read-only transaction" in why
    store.close()


async def test_the_daemon_s_health_says_the_store_is_not_writable(pg: Backend, tmp_path: Path) -> None:
    """A running daemon whose server went read-only: /health is 503, naming the store."""
    url = pg.url()
    PgStore(url).close()
    port = free_port()
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
ami: {{host: 127.0.0.1, port: {free_port()}, username: bridge, secret: x, reconnect_max: 1}}
extensions: [{{id: 175, name: "000*099@pbx.example", type: phone, endpoint: "099"}}]
api: {{listen: "127.0.0.1:{free_port()}", tokens: [{{token: token-0123456789abcdef}}]}}
management: {{listen: "127.0.0.1:{port}"}}
store: {{url: "{read_only(url)}"}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)], cwd=REPO,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    status, body = 0, {}
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(150):
                try:
                    async with s.get(f"http://127.0.0.1:{port}/health") as r:
                        status, body = r.status, await r.json()
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert status == 503
    assert any(
        p.startswith("store not writable: cannot execute UPDATE in a read-only") for p in body["problems"]
    )


def test_the_config_takes_path_or_url_and_the_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw-from-file\n")
    config = StoreConfig(url="postgresql://bridge@db:5432/bridge", password_file=str(secret))
    assert config.password == "pw-from-file"
    assert "pw-from-file" not in repr(config)
    for bad, says in (
        ({"url": "postgresql://bridge@db/bridge", "path": "/tmp/b.db"}, "give 'path' (SQLite) or 'url'"),
        ({"url": "mysql://db/bridge"}, "url must be a PostgreSQL URI"),
        ({"password": "x"}, "'password' (or 'password_file') is for a PostgreSQL store"),
        ({"url": "postgresql://db/b", "password": "x", "password_file": str(secret)}, "not both"),
        ({"url": "postgresql://db/b", "synchronous": "full"}, "'synchronous' is SQLite's"),
    ):
        with pytest.raises(ValidationError, match=re.escape(says)):
            StoreConfig(**bad)


def test_the_sqlite_dialect_is_translated() -> None:
    assert (
        translate("SELECT a FROM t WHERE b = ? AND c LIKE 'x%'")
        == "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%'"
    )
    assert translate("INSERT OR IGNORE INTO calls (call_id, init_time) VALUES (?, ?)") == (
        "INSERT INTO calls (call_id, init_time) VALUES (%s, %s) ON CONFLICT DO NOTHING"
    )
    assert translate("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)") == (
        "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    )
    assert masked("postgresql://u:p@h/d") == "postgresql://u:***@h/d"
    assert masked("postgresql://u@h/d") == "postgresql://u@h/d"


def test_the_doctor_checks_the_database(pg: Backend) -> None:
    """Connected, the schema version (an empty database is migrated at the start), a write
    rolled back; a server it cannot reach and a read-only one are FAILs saying the fix."""
    url = pg.url()

    def check(store: StoreConfig) -> list[tuple[str, str]]:
        rep = Report()
        check_database(store, rep)
        return rep.lines

    empty = check(StoreConfig(url=url))
    assert [level for level, _ in empty] == ["OK", "OK", "OK"]
    assert "schema version none (an empty database); the bridge migrates it to 6" in empty[1][1]
    assert "writable" in empty[2][1]
    PgStore(url).close()
    assert check(StoreConfig(url=url))[1] == ("OK", "store: schema version 6")
    with psycopg.connect(url) as conn:  # the doctor's table was rolled back
        assert conn.execute("SELECT to_regclass('ami_bridge_doctor')").fetchone() == (None,)
    [(level, text)] = check(StoreConfig(url=f"postgresql://bridge:pw@127.0.0.1:{free_port()}/bridge"))
    assert level == "FAIL" and "cannot connect to postgresql://bridge:***@" in text and "pg_hba.conf" in text
    lines = check(StoreConfig(url=read_only(url)))
    assert lines[-1][0] == "FAIL" and "read-only transaction" in lines[-1][1] and "standby" in lines[-1][1]


def test_a_nul_in_an_ami_field_or_a_path_is_stored_and_looked_up_on_both_stores(
    store_backend: Backend,
) -> None:
    """PostgreSQL's text takes no NUL (SQLite's does): such a CallID is still stored (a bad
    AMI message never stops the daemon) and found by itself; an unknown one is no call."""
    store = store_backend.open()
    store.add_subscription(101, "hangup", "http://127.0.0.1:9/", "POST")
    event = {"EventType": "hangup", "CallID": "a\x00b", "EventTime": 1}
    [delivery] = store.enqueue(101, event)
    assert delivery.event == event
    assert store.call_reached("a\x00b") == {101}
    assert store.call_events("a\x00b") == [(101, event)]  # the payload keeps the NUL (JSON escapes it)
    assert store.call_reached("x\x00y") is None and store.record("x\x00y") is None
    store.close()


def test_the_cli_lists_and_retries_deliveries_in_the_database(pg: Backend, tmp_path: Path) -> None:
    """``ami-bridge deliveries --config`` opens the store the config names (store.url)."""
    store = pg.open()
    store.add_subscription(175, "hangup", "http://127.0.0.1:9/", "POST")
    [d] = store.enqueue(175, {"EventType": "hangup", "CallID": "c1", "EventTime": 1})
    store.mark(d.id, "failed", 3, status=500, error="HTTP 500")
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
ami: {{host: 127.0.0.1, username: bridge, secret: x}}
extensions: [{{id: 175, name: "000*099@pbx.example", type: phone, endpoint: "099"}}]
{pg.yaml()}
""")

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bridge", "deliveries", "--config", str(config), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        return done.stdout

    assert f'"id": {d.id}' in cli() and "HTTP 500" in cli()
    assert cli("--retry") == "1 failed deliveries put back in the queue\n"
    assert [r["id"] for r in store.deliveries("pending")] == [d.id]
    store.close()
