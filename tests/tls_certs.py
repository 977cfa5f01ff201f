"""Test certificates made with the openssl command: a CA, a server and a client it signed,
and a second CA that signed nothing the tests connect to."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> None:
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)  # fmt: skip


def _signed(d: Path, name: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext + "\n")
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
         f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)  # fmt: skip


def make_certs(d: Path) -> Certs:
    """Write the test PKI into ``d``: the server's certificate is for 127.0.0.1 and
    ami.example.test."""
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "other-ca")
    _signed(d, "server", "subjectAltName=IP:127.0.0.1,DNS:ami.example.test\nextendedKeyUsage=serverAuth")
    _signed(d, "client", "extendedKeyUsage=clientAuth")
    return Certs(d / "ca.pem", d / "other-ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
                 d / "client.key")  # fmt: skip
