"""TLS to AMI: the client's SSLContext from ``ami.tls``, and handshake failures in plain words.

Asterisk serves AMI over TLS on its own port (manager.conf ``tlsenable = yes``,
``tlsbindaddr``, ``tlscertfile``, ``tlsprivatekey``). The bridge speaks TLS 1.2 or newer,
checks Asterisk's certificate against ``ca_file`` (or the system's CAs) and its name
against ``server_hostname`` (or ``ami.host``), and may show a client certificate.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.config import AmiTls


def _readable(key: str, path: str) -> None:
    try:
        with Path(path).open("rb"):
            pass
    except OSError as err:
        raise ValueError(f"{key}: cannot read {path!r} ({err.strerror}): correct the path, or make the "
                         "file readable by the bridge's user") from err  # fmt: skip


def client_context(tls: AmiTls) -> ssl.SSLContext:
    """An SSLContext for the AMI connection; ValueError naming the key of a bad file."""
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, key)
        if path is not None:
            _readable(key, path)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=tls.ca_file)
        except ssl.SSLError as err:
            raise ValueError(f"ca_file: {tls.ca_file!r} holds no PEM CA certificate ({err.reason or err}): "
                             "give the CA that signed Asterisk's tlscertfile, in PEM") from err  # fmt: skip
    if tls.cert_file is not None:
        try:
            # an encrypted key fails here instead of asking for its passphrase on a terminal
            ctx.load_cert_chain(tls.cert_file, tls.key_file, password="")
        except ssl.SSLError as err:
            where = f"{tls.cert_file!r}" + (f" and key_file {tls.key_file!r}" if tls.key_file else "")
            raise ValueError(f"cert_file: {where} are no PEM certificate and matching private key "
                             f"({err.reason or err}): give the client certificate and its key "
                             "(unencrypted) in PEM") from err  # fmt: skip
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def describe_failure(err: BaseException, tls: AmiTls, host: str, port: int) -> str:
    """What a failed TLS connection to AMI means and how to fix it (never a secret in it)."""
    if isinstance(err, ssl.SSLCertVerificationError):
        why = err.verify_message or str(err)
        if err.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
            name = tls.server_hostname or host
            return (
                f"certificate verify failed: Asterisk's certificate is not for {name!r} ({why}). Fix: "
                "set ami.tls.server_hostname to a name the certificate holds (its CN or subjectAltName)"
            )
        ca = f"the CA in ami.tls.ca_file ({tls.ca_file})" if tls.ca_file else "the system's CAs"
        return (
            f"certificate verify failed: {why}; Asterisk's certificate is not signed by {ca}. Fix: "
            "set ami.tls.ca_file to the CA (PEM) that signed manager.conf's tlscertfile"
        )
    reason = getattr(err, "reason", None) or str(err) or type(err).__name__
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE") or "wrong version number" in str(err):
        return (f"TLS handshake failed ({reason}): {host}:{port} does not speak TLS; is it AMI's plain "
                "port? Fix: ami.port = the port of manager.conf's tlsbindaddr (tlsenable = yes), or "
                "remove ami.tls")  # fmt: skip
    if "CERTIFICATE_REQUIRED" in reason.upper() or "HANDSHAKE_FAILURE" in reason.upper():
        return (f"TLS handshake failed ({reason}): Asterisk refused this client. Fix: a client "
                "certificate it accepts in ami.tls.cert_file/key_file")  # fmt: skip
    if isinstance(err, ssl.SSLEOFError) or "EOF" in reason.upper():
        return (f"TLS handshake failed ({reason}): Asterisk closed the connection. Fix: check Asterisk's "
                "log; it may want a client certificate (ami.tls.cert_file/key_file)")  # fmt: skip
    return f"TLS handshake with {host}:{port} failed ({reason})"
