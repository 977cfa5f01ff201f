"""AMI over TLS against the lab's real Asterisk (manager.conf tlsbindaddr 127.0.0.1:15039,
a certificate lab.sh makes at start): the source verifies it with the lab's CA and logs in;
with another CA it says the certificate is not signed by it.

A lab started before its manager.conf had TLS does not listen there: the tests then skip,
saying to restart the lab."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from bridge.ami.source import AmiSource, SourceItem
from bridge.config import AmiConfig, load_config
from tests.conftest import FIXTURES
from tests.lab.helpers import LAB_CACHE
from tests.tls_certs import make_certs

pytestmark = pytest.mark.lab

TLS_PORT = 15039
LAB_CA = LAB_CACHE / "chroot" / "etc" / "ami-bridge-lab" / "keys" / "ca.pem"


def tls_listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def lab_tls(lab: None) -> Path:
    """The lab's CA, once its Asterisk serves AMI over TLS (else the test skips)."""
    if not tls_listening(TLS_PORT) or not LAB_CA.is_file():
        pytest.skip(f"the running lab has no AMI over TLS on 127.0.0.1:{TLS_PORT} (or no {LAB_CA}): it was "
                    "started before lab/asterisk/manager.conf enabled TLS; restart it "
                    "(lab/lab.sh down && lab/lab.sh up)")  # fmt: skip
    return LAB_CA


def tls_config(port: int, ca: Path) -> AmiConfig:
    """The lab's AMI user, over TLS on ``port``, verifying Asterisk with ``ca``."""
    ami = load_config(FIXTURES / "lab.yaml").ami.model_dump()
    return AmiConfig.model_validate({**ami, "port": port, "reconnect_min": 30.0, "tls": {"ca_file": str(ca)}})


async def first_change(source: AmiSource, timeout: float = 10) -> SourceItem:
    source.start()
    async with asyncio.timeout(timeout):
        while True:
            item = await source.get()
            if item.kind != "message":
                return item


async def login_over_tls(port: int, ca: Path) -> dict[str, str]:
    """Log in over TLS, verifying Asterisk with ``ca``; the answer to a Ping."""
    source = AmiSource(tls_config(port, ca))
    try:
        item = await first_change(source)
        assert item.kind == "connected", item
        return await source.action({"Action": "Ping"})
    finally:
        source.close()


async def refused_with_other_ca(port: int, other_ca: Path) -> SourceItem:
    source = AmiSource(tls_config(port, other_ca))
    try:
        return await first_change(source)
    finally:
        source.close()


async def test_logs_in_to_asterisk_over_tls(lab_tls: Path) -> None:
    """Verified with the lab's CA, the bridge's user logs in over TLS and AMI answers."""
    answer = await login_over_tls(TLS_PORT, lab_tls)
    assert answer["Response"] == "Success" and answer.get("Ping") == "Pong"


async def test_another_ca_is_refused_with_the_reason(lab_tls: Path, tmp_path: Path) -> None:
    """A CA that did not sign Asterisk's certificate: a tls-failed item naming ami.tls.ca_file."""
    item = await refused_with_other_ca(TLS_PORT, make_certs(tmp_path).other_ca)
    assert item.kind == "tls-failed"
    assert "certificate verify failed" in item.detail and "ami.tls.ca_file" in item.detail
