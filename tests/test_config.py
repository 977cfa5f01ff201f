"""Configuration loading: valid files load, every mistake is named with its key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config, parse_config
from tests.conftest import FIXTURES, REPO

GOOD_AMI = "ami: {username: bridge, secret: s}\n"


def test_example_config_is_valid_and_documents_every_key() -> None:
    """config.example.yaml loads, and names every key the models accept."""
    config = load_config(REPO / "config.example.yaml")
    text = (REPO / "config.example.yaml").read_text()
    models = (config, config.ami, config.variables, config.extensions[0], config.api, config.api.tokens[0],
              config.store, config.delivery, config.callback,
              config.voicemail)  # fmt: skip
    from bridge.config import AmiTls, ApiClient, MqttConfig, MqttTls

    for cls in [type(m) for m in models] + [MqttConfig, MqttTls, AmiTls, ApiClient]:
        for key in cls.model_fields:
            assert f"{key}:" in text, key


def test_lab_config_is_valid() -> None:
    """The lab's config (used by replay and the tests) loads."""
    assert len(load_config(FIXTURES / "lab.yaml").extensions) == 9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD_AMI + "extensions: [{id: 1, name: a, type: phone, endpont: '1'}]", "extensions[0].endpont: unknown key"),
        ("ami: {username: bridge}\n", "ami.secret: required key is missing"),
        (GOOD_AMI + "extensions: [{id: 1, name: a, type: queue}]", "extensions[0]: an extension of type 'queue' needs 'queue'"),
        (GOOD_AMI + "extensions: [{id: 1, name: a, type: fax, endpoint: x}]", "extensions[0].type"),
        (GOOD_AMI + "variabels: {}", "variabels: unknown key"),
        (GOOD_AMI + "variables: {tagg: X}", "variables.tagg: unknown key"),
        ("ami: {username: b, secret: s, port: 99999}", "ami.port"),
        (
            GOOD_AMI + "extensions: [{id: 1, name: a, type: phone, endpoint: '1'}, {id: 1, name: b, type: phone, endpoint: '2'}]",
            "extensions[1] has the same id '1' as extensions[0]",
        ),
        (GOOD_AMI + "extensions: [{id: 1, name: a, type: phone, endpoint: trunk}]\ntrunks: [trunk]", "both as phones and as trunks"),
        ("ami: [1", "not valid YAML at line 1"),
        ("- just a list", "top level must be a mapping"),
        (GOOD_AMI + "api: {tokens: [{extensions: [1]}]}", "api.tokens[0]: give exactly one of 'token' or 'sha256'"),
        (GOOD_AMI + "api: {tokens: [{sha256: abc}]}", "api.tokens[0].sha256"),
        (GOOD_AMI + "api: {tokens: [{token: short}]}", "api.tokens[0].token"),
        (GOOD_AMI + "api: {listen: nowhere}", "api: listen must be 'host:port'"),
        (GOOD_AMI + "api: {listen: '127.0.0.1:²'}", "api: listen must be 'host:port'"),
        (GOOD_AMI + "extensions: [{id: 1, name: a, type: phone, endpoint: 'SIP/'}]", "extensions[0]: 'SIP/' must be 'name' (a PJSIP endpoint) or 'TECH/name'"),
        (GOOD_AMI + "extensions: [{id: 1, name: a, type: phone, endpoint: 'SIP/a/b'}]", "extensions[0]: 'SIP/a/b' must be 'name'"),
        (GOOD_AMI + "extensions: [{id: 1, name: a, type: phone, endpoint: '1 0'}]", "extensions[0]: '1 0' must be a device name without spaces"),
        (GOOD_AMI + "extensions: [{id: 1, name: a, type: phone, endpoint: 'Local/101@from-internal'}]", "a Local channel is no device"),
        (GOOD_AMI + "trunks: ['SIP/']", "trunks[0]: 'SIP/' must be 'name'"),
        (
            GOOD_AMI + "extensions: [{id: 1, name: a, type: phone, endpoint: '101'}, {id: 2, name: b, type: phone, endpoint: 'pjsip/101'}]",
            "extensions[1] has the same endpoint 'PJSIP/101' as extensions[0]",
        ),
        (GOOD_AMI + "extensions: [{id: 1, name: a, type: phone, endpoint: 'SIP/gw'}]\ntrunks: [sip/gw]", "['SIP/gw'] are listed both as phones and as trunks"),
    ],
)  # fmt: skip
def test_mistakes_are_reported_with_their_key_path(text: str, expected: str) -> None:
    """Each mistake raises ConfigError whose message names where it is."""
    with pytest.raises(ConfigError) as err:
        parse_config(text, "test.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("test.yaml")


@pytest.mark.parametrize(
    ("endpoint", "device"),
    [("101", "PJSIP/101"), ("PJSIP/101", "PJSIP/101"), ("sip/150010001", "SIP/150010001"),
     ("SIP/voip-gw-1", "SIP/voip-gw-1"), ("iax2/office", "IAX2/office"), ("DAHDI/i1", "DAHDI/i1")],
)  # fmt: skip
def test_endpoints_name_their_technology(endpoint: str, device: str) -> None:
    """A bare endpoint is PJSIP (old configs keep working); a TECH/ prefix names another
    technology, spelt as Asterisk spells it in channel names."""
    config = parse_config(GOOD_AMI + f"extensions: [{{id: 1, name: a, type: phone, endpoint: '{endpoint}'}}]\n"
                          f"trunks: ['{endpoint}-trunk']")  # fmt: skip
    assert config.extensions[0].device == device
    assert config.trunk_devices == [device + "-trunk"]


@pytest.mark.parametrize(
    ("text", "did", "recording", "forwarded", "tag"),
    [
        ("variables: freepbx", "FROM_DID", "CALLFILENAME", "EXTTOCALL", "TAG"),
        ("variables: {preset: freepbx, tag: CRM_TAG}", "FROM_DID", "CALLFILENAME", "EXTTOCALL", "CRM_TAG"),
        ("variables: default", "DID", "RECID", "FORWARDED_FROM", "TAG"),
        ("variables: {did: MYDID}", "MYDID", "RECID", "FORWARDED_FROM", "TAG"),
    ],
)  # fmt: skip
def test_variable_presets_name_a_dialplan_in_one_line(text: str, did: str, recording: str, forwarded: str,
                                                      tag: str) -> None:  # fmt: skip
    """``variables: freepbx`` maps FreePBX's own variables; a preset can be adjusted per key."""
    v = parse_config(GOOD_AMI + text).variables
    assert (v.did, v.recording_id, v.forwarded_from, v.tag) == (did, recording, forwarded, tag)


def test_an_unknown_preset_is_named_with_the_known_ones() -> None:
    """A misspelt preset is an error that lists the presets."""
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD_AMI + "variables: freepbxx", "t.yaml")
    assert "variables: unknown preset 'freepbxx': use one of default, freepbx" in str(err.value)


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    """`ami-bridge check-config` exits 0 on a good file and 1 with the problem on a bad one."""
    ok = subprocess.run([sys.executable, "-m", "bridge", "check-config", str(REPO / "config.example.yaml")],
                        capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD_AMI + "trunkz: [x]\n")
    res = subprocess.run([sys.executable, "-m", "bridge", "check-config", str(bad)],
                         capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert res.returncode == 1
    assert "trunkz: unknown key" in res.stderr
    missing = subprocess.run([sys.executable, "-m", "bridge", "check-config", str(tmp_path / "nope.yaml")],
                             capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_example_mqtt_section_is_valid_when_uncommented() -> None:
    """The commented-out mqtt: example turns into a valid section."""
    text = (REPO / "config.example.yaml").read_text()
    block = text[text.index("# mqtt:") :]
    uncommented = "\n".join(line[2:] if line.startswith("# ") else line for line in block.splitlines())
    config = parse_config(text[: text.index("# mqtt:")] + uncommented)
    assert config.mqtt is not None and config.mqtt.host_port_tls == ("127.0.0.1", 1883, False)


def test_world_readable_config_is_warned_about(tmp_path: Path) -> None:
    """A config with secrets readable by everyone gets a warning naming the chmod fix."""
    import os

    from bridge.config import permission_warning

    path = tmp_path / "c.yaml"
    path.write_text(GOOD_AMI)
    os.chmod(path, 0o644)
    assert "chmod 0640" in (permission_warning(path) or "")
    os.chmod(path, 0o640)
    assert permission_warning(path) is None
    os.chmod(path, 0o644)
    res = subprocess.run([sys.executable, "-m", "bridge", "check-config", str(path)],
                         capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert res.returncode == 0 and "warning:" in res.stderr and "every user can read it" in res.stderr
