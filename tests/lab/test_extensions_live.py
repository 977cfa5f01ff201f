"""`ami-bridge extensions` against the lab's real Asterisk (read-only AMI): the block it
prints covers the lab's phones and queues, skips its trunks, and loads as a config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import load_config
from tests.conftest import FIXTURES, REPO

pytestmark = pytest.mark.lab


def extensions(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", "extensions", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip


def with_block(tmp_path: Path, head: str, block: str) -> Path:
    path = tmp_path / "pasted.yaml"
    path.write_text(head + block)
    path.chmod(0o600)
    return path


AMI = "ami: {host: 127.0.0.1, port: 15038, username: bridge, secret: lab-secret}\n"


@pytest.mark.usefixtures("lab")
def test_a_config_without_extensions_gets_every_phone_and_queue(tmp_path: Path) -> None:
    """From nothing: phones 101-106 and 201-205 with their caller id names and mailboxes,
    ids 1000 + short; queues; the two trunks skipped (a contact without a user part)."""
    bare = with_block(tmp_path, AMI, "")
    proc = extensions(bare, "--client", "000", "--domain", "pbx.example")
    assert proc.returncode == 0, proc.stderr
    config = load_config(with_block(tmp_path, AMI + "trunks: [trunk, fpbx-trunk]\n", proc.stdout))
    phones = {e.endpoint: e for e in config.extensions if e.type == "phone"}
    assert sorted(phones) == [str(n) for n in (*range(101, 107), *range(201, 206))]
    anna = phones["101"]
    assert (anna.id, anna.name, anna.mailbox, anna.label) == (
        1101,
        "000*101@pbx.example",
        "101@default",
        "Anna",
    )
    assert (phones["106"].id, phones["106"].label, phones["106"].mailbox) == (1106, "Fedor", "106@default")
    assert phones["201"].id == 1201 and phones["201"].mailbox is None
    assert sorted(e.queue or "" for e in config.extensions if e.type == "queue") == [
        "fpbx",
        "sales",
        "support",
    ]
    assert (
        "# skipped PJSIP/trunk: a trunk (a static contact without a user part (sip:127.0.0.2:15070)"
        in proc.stdout
    )
    assert "add them to trunks: [fpbx-trunk, trunk]" in proc.stdout
    assert "chan_sip is not loaded" in proc.stderr  # Asterisk 22


@pytest.mark.usefixtures("lab")
def test_the_lab_config_keeps_its_ids_and_gets_the_rest(tmp_path: Path) -> None:
    """fixtures/lab.yaml: its extensions come back unchanged (the IVR too), the FreePBX
    profile's phones and queue are added, and re-running on the result adds nothing."""
    lab = load_config(FIXTURES / "lab.yaml")
    proc = extensions(FIXTURES / "lab.yaml")
    assert proc.returncode == 0, proc.stderr
    head = (FIXTURES / "lab.yaml").read_text().split("extensions:\n")[0]
    rest = (FIXTURES / "lab.yaml").read_text().split("trunks:", 1)[1]
    pasted = with_block(tmp_path, head, proc.stdout + "trunks:" + rest)
    config = load_config(pasted)
    assert config.extensions[: len(lab.extensions)] == lab.extensions
    new = {e.endpoint or e.queue: e.id for e in config.extensions[len(lab.extensions) :]}
    assert new == {"201": 1201, "202": 1202, "203": 1203, "204": 1204, "205": 1205, "fpbx": 1401}
    assert "# skipped PJSIP/trunk: a trunk (listed in trunks:)" in proc.stdout
    again = extensions(pasted)
    assert again.returncode == 0 and "# ---- new: found on the PBX (0)" in again.stdout
