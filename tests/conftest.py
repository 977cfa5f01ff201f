"""Shared test helpers: where the fixtures live."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fixture_paths() -> list[Path]:
    """Every recorded AMI stream, sorted by name."""
    return sorted(FIXTURES.glob("*.ami"))


def config_path(path: Path) -> Path:
    """The bridge config of the lab profile a fixture was recorded in: fixtures/freepbx.yaml
    for the FreePBX-style profile's (freepbx-*), fixtures/lab.yaml for the others."""
    return FIXTURES / ("freepbx.yaml" if path.name.startswith("freepbx-") else "lab.yaml")


def config_for(path: Path) -> Config:
    """The loaded :func:`config_path` of a fixture."""
    return _load(config_path(path))


@functools.cache
def _load(path: Path) -> Config:
    return load_config(path)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-golden",
        action="store_true",
        help="rewrite fixtures/*.expected.jsonl from the current translator (review the diff!)",
    )


# ---- the store's two backends (issue 19): SQLite and a real PostgreSQL (tests/pg.py) -------


class Backend:
    """Where a test's stores live: SQLite files in its ``tmp`` folder, or schemas of the
    session's PostgreSQL (a new one per test and name: nothing to clean between tests)."""

    _made = 0

    def __init__(self, name: str, tmp: Path, server_url: str | None) -> None:
        self.name = name
        self.tmp = tmp
        self.server_url = server_url
        Backend._made += 1
        self._prefix = f"t{Backend._made}"

    def url(self, name: str = "bridge.db") -> str:
        """The PostgreSQL URL of the store called ``name`` (its own schema)."""
        import psycopg

        assert self.server_url is not None
        schema = f"{self._prefix}_{''.join(c if c.isalnum() else '_' for c in name)}".lower()
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        return f"{self.server_url}?options=-csearch_path%3D{schema}"

    def open(self, name: str = "bridge.db") -> Any:
        """The store called ``name`` (the same one each time)."""
        from bridge.store import Store
        from bridge.store_pg import PgStore

        return Store(self.tmp / name) if self.server_url is None else PgStore(self.url(name))

    def yaml(self, name: str = "bridge.db") -> str:
        """The config's ``store:`` line for it."""
        if self.server_url is None:
            return f'store: {{path: "{self.tmp / name}"}}'
        return f'store: {{url: "{self.url(name)}"}}'


@pytest.fixture(scope="session")
def pg_server() -> Any:
    """One PostgreSQL for the session (Debian's, on loopback; stopped at the end)."""
    from tests import pg

    server = pg.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each test that takes it runs against both stores."""
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path, None)
    return Backend("postgresql", tmp_path, request.getfixturevalue("pg_server").url)
