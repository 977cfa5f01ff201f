"""AMI over TLS end to end: a loopback AMI server speaking TLS with test certificates; the
source connects with verification on, logs in and reads events, and says clearly why a
handshake fails (wrong CA, wrong name, a plain port), in the source and in the doctor."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.ami.source import AmiSource, SourceItem
from bridge.config import AmiConfig, parse_config
from bridge.demo import action_id
from bridge.doctor import diagnose
from tests.tls_certs import Certs, make_certs

SECRET = "tls-test-secret-5fd0"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("pki"))


class TlsAmi:
    """Sends the banner, accepts any Login (keeping what it was sent), then one event;
    answers Ping."""

    def __init__(self) -> None:
        self.logins: list[bytes] = []
        self.peers: list[Any] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        self.peers.append(ssl_object.getpeercert() if ssl_object else None)
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            login = await reader.readuntil(b"\r\n\r\n")
            self.logins.append(login)
            writer.write(b"Response: Success\r\nActionID: " + action_id(login) +
                         b"\r\nMessage: Authentication accepted\r\n\r\n"
                         b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")  # fmt: skip
            while True:
                action = await reader.readuntil(b"\r\n\r\n")
                if re.search(rb"Action: Ping", action):
                    writer.write(
                        b"Response: Success\r\nActionID: " + action_id(action) + b"\r\nPing: Pong\r\n\r\n"
                    )
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return


async def serve(ami: TlsAmi, context: ssl.SSLContext | None) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(ami.serve, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


def server_context(certs: Certs) -> ssl.SSLContext:
    """Asterisk's side: its certificate, and a client certificate required from our CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def ami_config(port: int, certs: Certs, **tls: Any) -> AmiConfig:
    fields = {
        "ca_file": str(certs.ca),
        "cert_file": str(certs.client_cert),
        "key_file": str(certs.client_key),
    }
    return AmiConfig(host="127.0.0.1", port=port, username="bridge", secret=SECRET, reconnect_min=5,
                     tls={**fields, **tls})  # fmt: skip


async def until_change(source: AmiSource, timeout: float = 10) -> list[SourceItem]:
    """What the source gives up to its first connection change (connected, tls-failed...)."""
    out: list[SourceItem] = []
    source.start()
    try:
        async with asyncio.timeout(timeout):
            async for item in source:
                out.append(item)
                if item.kind != "message":
                    break
    finally:
        source.close()
    return out


@pytest.fixture
async def tls_server(certs: Certs) -> AsyncIterator[tuple[TlsAmi, int]]:
    ami = TlsAmi()
    server, port = await serve(ami, server_context(certs))
    yield ami, port
    server.close()


async def test_source_logs_in_over_tls_with_verification(
    tls_server: tuple[TlsAmi, int], certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """With ami.tls (CA, client certificate) the source verifies Asterisk, logs in over TLS and
    reads events; the secret goes only to Asterisk, never into a log record."""
    caplog.set_level(logging.DEBUG)
    ami, port = tls_server
    items = await until_change(AmiSource(ami_config(port, certs)))
    assert items[-1].kind == "connected"
    assert "FullyBooted" in [i.msg.event for i in items if i.msg is not None]
    assert f"Secret: {SECRET}".encode() in ami.logins[0]
    assert ami.peers[0] is not None and ("commonName", "client") in ami.peers[0]["subject"][0]
    assert caplog.records and all(SECRET not in r.getMessage() for r in caplog.records)


async def test_server_hostname_names_the_certificate(tls_server: tuple[TlsAmi, int], certs: Certs) -> None:
    """server_hostname is what the certificate is checked against (a DNS name in it works)."""
    _ami, port = tls_server
    items = await until_change(AmiSource(ami_config(port, certs, server_hostname="ami.example.test")))
    assert items[-1].kind == "connected"


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        ({"ca_file": "other"}, "certificate verify failed: .*set ami.tls.ca_file to the CA"),
        ({"server_hostname": "pbx.example.test"}, "not for 'pbx.example.test'.*ami.tls.server_hostname"),
    ],
)
async def test_a_failed_handshake_says_why_and_what_to_fix(
    tls_server: tuple[TlsAmi, int], certs: Certs, tls: dict[str, str], expected: str
) -> None:
    """A certificate from another CA, or for another name, is a tls-failed item saying which
    key to fix; nothing is sent to the server (no login)."""
    ami, port = tls_server
    if tls.get("ca_file") == "other":
        tls = {"ca_file": str(certs.other_ca)}
    items = await until_change(AmiSource(ami_config(port, certs, **tls)))
    assert [i.kind for i in items] == ["tls-failed"]
    assert re.search(expected, items[-1].detail), items[-1].detail
    assert ami.logins == []


async def test_tls_to_a_plain_ami_port_is_named(certs: Certs) -> None:
    """ami.tls against AMI's plain port: the failure says the port does not speak TLS."""
    ami = TlsAmi()
    server, port = await serve(ami, None)
    try:
        items = await until_change(AmiSource(ami_config(port, certs)))
    finally:
        server.close()
    assert [i.kind for i in items] == ["tls-failed"]
    assert "does not speak TLS" in items[-1].detail and "tlsbindaddr" in items[-1].detail


async def test_without_verify_any_certificate_is_accepted(
    tls_server: tuple[TlsAmi, int], certs: Certs
) -> None:
    """verify: false accepts a certificate no configured CA signed (for trying things out)."""
    _ami, port = tls_server
    items = await until_change(AmiSource(ami_config(port, certs, ca_file=str(certs.other_ca), verify=False)))
    assert items[-1].kind == "connected"


async def test_doctor_reports_a_certificate_it_cannot_verify(
    tls_server: tuple[TlsAmi, int], certs: Certs, tmp_path: Path
) -> None:
    """The doctor's first line is a FAIL naming the verify failure and the CA key to set."""
    _ami, port = tls_server
    config = parse_config(f"ami: {{host: 127.0.0.1, port: {port}, username: bridge, secret: {SECRET}, "
                          f"tls: {{ca_file: '{certs.other_ca}', cert_file: '{certs.client_cert}', "
                          f"key_file: '{certs.client_key}'}}}}\n")  # fmt: skip
    report = await diagnose(config, timeout=5)
    assert report.failed
    level, text = report.lines[0]
    assert level == "FAIL" and "over TLS: certificate verify failed" in text and "ami.tls.ca_file" in text


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        (
            "{ca_file: /nonexistent/ca.pem}",
            "ami.tls: ca_file: cannot read '/nonexistent/ca.pem' (No such file or directory)",
        ),
        ("{ca_file: @BAD@}", "ami.tls: ca_file: '@BAD@' holds no PEM CA certificate"),
        ("{cert_file: @CA@}", "ami.tls: cert_file: '@CA@' are no PEM certificate and matching private key"),
        ("{key_file: @KEY@}", "ami.tls: key_file needs cert_file"),
        ("{verify: maybe}", "ami.tls.verify"),
    ],
)
def test_bad_tls_files_are_config_errors_naming_the_key(certs: Certs, tls: str, expected: str) -> None:
    """Missing, unreadable or wrong TLS files fail at config load, naming key and file."""
    from bridge.config import ConfigError

    bad = certs.ca.parent / "not-a-cert.pem"
    bad.write_text("hello\n")
    paths = {"@BAD@": str(bad), "@CA@": str(certs.ca), "@KEY@": str(certs.client_key)}
    for mark, path in paths.items():
        tls, expected = tls.replace(mark, path), expected.replace(mark, path)
    with pytest.raises(ConfigError) as err:
        parse_config(f"ami: {{username: b, secret: s, tls: {tls}}}\n")
    assert expected in str(err.value)
