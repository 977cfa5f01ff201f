"""Secrets out of the configuration file: ``*_file`` keys (and systemd credentials through
``${CREDENTIALS_DIRECTORY}``), never shown in reprs or error messages, and check-config's
warnings about the ones left in clear."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bridge.config import ConfigError, parse_config
from tests.conftest import REPO

AMI_SECRET = "ami-secret-from-a-file-93c1"
TOKEN = "api-token-from-a-file-0123456789"


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_every_secret_can_come_from_a_file(tmp_path: Path, ending: str) -> None:
    """secret_file, token_file, client_secret_file, delivery.secret_file and mqtt.password_file
    fill the secret with the file's line, its newline dropped."""
    files = {name: write(tmp_path / name, f"{name}-value-0123456789{ending}") for name in
             ("ami", "token", "client", "delivery", "mqtt")}  # fmt: skip
    config = parse_config(f"""
ami: {{username: bridge, secret_file: {files["ami"]}}}
api:
  tokens: [{{token_file: {files["token"]}}}]
  clients: [{{client_id: crm, client_secret_file: {files["client"]}}}]
delivery: {{secret_file: {files["delivery"]}}}
mqtt: {{password_file: {files["mqtt"]}}}
""")
    assert config.ami.secret == "ami-value-0123456789"
    assert config.api.tokens[0].token == "token-value-0123456789"
    assert config.api.clients[0].client_secret == "client-value-0123456789"
    assert config.delivery.secret == "delivery-value-0123456789"
    assert config.mqtt is not None and config.mqtt.password == "mqtt-value-0123456789"


def test_systemd_credentials_directory_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """${CREDENTIALS_DIRECTORY} in a *_file path is the folder systemd's LoadCredential= fills."""
    write(tmp_path / "ami-secret", AMI_SECRET + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = parse_config('ami: {username: bridge, secret_file: "${CREDENTIALS_DIRECTORY}/ami-secret"}\n')
    assert config.ami.secret == AMI_SECRET


@pytest.mark.parametrize(
    ("ami", "expected"),
    [
        ("secret: s, secret_file: @DIR@/ami", "ami: give 'secret' or 'secret_file', not both"),
        (
            "secret_file: @DIR@/nothing",
            "ami: secret_file: cannot read '@DIR@/nothing' (No such file or directory)",
        ),
        ("secret_file: @DIR@", "ami: secret_file: cannot read '@DIR@' (Is a directory)"),
        ("secret_file: @DIR@/empty", "ami: secret_file: '@DIR@/empty' is empty"),
        ("secret_file: @DIR@/two", "ami: secret_file: '@DIR@/two' has more than one line"),
        ("secret_file: [a]", "ami: secret_file must be a file's path"),
        (
            'secret_file: "${CREDENTIALS_DIRECTORY}/ami"',
            "uses ${CREDENTIALS_DIRECTORY}, which is not set: systemd sets it",
        ),
    ],
)
def test_secret_file_mistakes_name_the_key_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ami: str, expected: str
) -> None:
    """Both forms, a missing, unreadable, empty or multi-line file, or no credentials
    directory: a config error naming the key, the file and the reason."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    write(tmp_path / "ami", AMI_SECRET)
    write(tmp_path / "empty", "\n")
    write(tmp_path / "two", f"{AMI_SECRET}\nsecond line\n")
    with pytest.raises(ConfigError) as err:
        parse_config("ami: {username: bridge, " + ami.replace("@DIR@", str(tmp_path)) + "}\n")
    assert expected.replace("@DIR@", str(tmp_path)) in str(err.value)
    assert AMI_SECRET not in str(err.value) and "second line" not in str(err.value)


def test_an_unreadable_secret_file_says_permission_denied(tmp_path: Path) -> None:
    """A file the bridge's user may not read: the error names it and the errno text. Root
    reads every file, so as root the check runs as the unprivileged user nobody."""
    path = write(tmp_path / "ami", AMI_SECRET, mode=0)
    expected = rf"ami: secret_file: cannot read '{path}' \(Permission denied\)"
    if os.geteuid() != 0:
        with pytest.raises(ConfigError, match=expected):
            parse_config(f"ami: {{username: bridge, secret_file: {path}}}\n")
        return
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:  # pytest's own folders are root's alone
        if parent == Path(tempfile.gettempdir()):
            break
        parent.chmod(parent.stat().st_mode | 0o111)
    # a forked child (the modules already loaded) drops to nobody and loads the config
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                parse_config(f"ami: {{username: bridge, secret_file: {path}}}\n")
                message = "no error"
            except ConfigError as err:
                message = str(err)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    assert re.search(expected, message), message
    assert AMI_SECRET not in message


def test_both_forms_for_api_secrets_are_refused(tmp_path: Path) -> None:
    """token with token_file, client_secret with client_secret_file: one or the other."""
    path = write(tmp_path / "s", TOKEN)
    with pytest.raises(ConfigError) as err:
        parse_config(f"ami: {{username: b, secret: s}}\napi: {{tokens: [{{token: {TOKEN}, token_file: {path}}}], "
                     f"clients: [{{client_id: c, client_secret: {TOKEN}, client_secret_file: {path}}}]}}\n")  # fmt: skip
    text = str(err.value)
    assert "api.tokens[0]: give 'token' or 'token_file', not both" in text
    assert "api.clients[0]: give 'client_secret' or 'client_secret_file', not both" in text
    assert TOKEN not in text


def test_a_file_secret_is_checked_like_one_in_clear(tmp_path: Path) -> None:
    """A token from a file obeys the same rules (16 characters at least), and the error
    does not show it."""
    path = write(tmp_path / "t", "short-tok\n")
    with pytest.raises(ConfigError) as err:
        parse_config(f"ami: {{username: b, secret: s}}\napi: {{tokens: [{{token_file: {path}}}]}}\n")
    assert "api.tokens[0].token: String should have at least 16 characters" in str(err.value)
    assert "short-tok" not in str(err.value)


def test_secrets_are_not_in_reprs(tmp_path: Path) -> None:
    """Printing or logging the config (or a part of it) shows no secret, only where it came from."""
    path = write(tmp_path / "ami", AMI_SECRET)
    config = parse_config(f"""
ami: {{username: bridge, secret_file: {path}}}
api: {{tokens: [{{token: {TOKEN}}}], clients: [{{client_id: crm, client_secret: {TOKEN}x}}]}}
delivery: {{secret: delivery-signing-key}}
mqtt: {{password: mqtt-password-42}}
""")
    shown = repr(config) + str(config) + repr(config.ami) + str(config.api.tokens) + str(config.api.clients)
    for secret in (AMI_SECRET, TOKEN, "delivery-signing-key", "mqtt-password-42"):
        assert secret not in shown
    assert str(path) in shown


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", "check-config", str(path)], capture_output=True,
                          text=True, timeout=60, cwd=REPO)  # fmt: skip


def test_check_config_warns_about_each_secret_in_clear(tmp_path: Path) -> None:
    """Each secret written in the YAML is a warning naming its key and the safer form to use;
    warnings keep the exit code 0."""
    path = write(
        tmp_path / "c.yaml",
        f"""
ami: {{username: bridge, secret: ami-in-clear}}
api:
  tokens: [{{token: {TOKEN}}}]
  clients: [{{client_id: crm, client_secret: {TOKEN}}}]
delivery: {{secret: delivery-in-clear}}
mqtt: {{password: mqtt-in-clear}}
""",
    )
    proc = check_config(path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    expected = [
        "warning: ami.secret is written in clear in the configuration: give ami.secret_file,",
        "warning: api.tokens[0].token is written in clear in the configuration: give api.tokens[0].sha256 "
        "(ami-bridge hash-token prints it) or api.tokens[0].token_file,",
        "warning: api.clients[0].client_secret is written in clear in the configuration: give "
        "api.clients[0].client_secret_sha256 (ami-bridge hash-token prints it) or "
        "api.clients[0].client_secret_file,",
        "warning: delivery.secret is written in clear in the configuration: give delivery.secret_file,",
        "warning: mqtt.password is written in clear in the configuration: give mqtt.password_file,",
    ]
    assert len(warnings) == len(expected), proc.stderr
    for line, start in zip(warnings, expected, strict=True):
        assert line.startswith(start), line
        assert "${CREDENTIALS_DIRECTORY}" in line
    for secret in ("ami-in-clear", TOKEN, "delivery-in-clear", "mqtt-in-clear"):
        assert secret not in proc.stdout + proc.stderr


def test_check_config_is_quiet_about_files_and_hashes(tmp_path: Path) -> None:
    """Secrets in private files or as hashes give no warning; a secret file every user can
    read does (like a world-readable config)."""
    private = write(tmp_path / "ami", AMI_SECRET)
    config = write(tmp_path / "c.yaml", f"ami: {{username: bridge, secret_file: {private}}}\n"
                                        f"api: {{tokens: [{{sha256: '{'ab' * 32}'}}]}}\n")  # fmt: skip
    proc = check_config(config)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    private.chmod(0o644)
    proc = check_config(config)
    assert proc.returncode == 0
    assert proc.stderr.startswith(
        f"warning: ami.secret_file: {private} can be read by every user: chmod 0600"
    )


def test_check_config_still_fails_on_a_bad_secret_file(tmp_path: Path) -> None:
    """A missing secret file is an error (exit 1) naming the key."""
    config = write(tmp_path / "c.yaml", f"ami: {{username: bridge, secret_file: {tmp_path}/none}}\n")
    proc = check_config(config)
    assert proc.returncode == 1
    assert f"ami: secret_file: cannot read '{tmp_path}/none' (No such file or directory)" in proc.stderr


async def test_a_refused_login_logs_no_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With the AMI secret from a file, a refused login is logged (user, reason) without it,
    even at debug level."""
    import asyncio
    import logging

    from bridge.ami.source import AmiSource
    from bridge.demo import action_id

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        login = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"Response: Error\r\nActionID: " + action_id(login) +
                     b"\r\nMessage: Authentication failed\r\n\r\n")  # fmt: skip
        await writer.drain()

    caplog.set_level(logging.DEBUG)
    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = write(tmp_path / "ami", AMI_SECRET + "\n")
    config = parse_config(
        f"ami: {{port: {port}, username: bridge, secret_file: {path}, reconnect_min: 30}}\n"
    )
    source = AmiSource(config.ami)
    source.start()
    try:
        async with asyncio.timeout(10):
            while (item := await source.get()).kind == "message":
                pass
    finally:
        source.close()
        server.close()
    assert item.kind == "login-failed" and item.detail == "Authentication failed"
    assert any("AMI login refused for user 'bridge'" in r.getMessage() for r in caplog.records)
    assert all(AMI_SECRET not in r.getMessage() and AMI_SECRET not in str(r.args) for r in caplog.records)
