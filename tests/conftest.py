"""Shared test helpers: where the fixtures live."""

from __future__ import annotations

import functools
from pathlib import Path

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
